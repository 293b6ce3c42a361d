"""One forward per preference pair in DPO and SimPO: the prompt runs once for both responses.

TRL's DPO batch holds each pair twice, `[prompt | chosen]` in row i and `[prompt | rejected]` in row B + i (right
padded), so every prompt runs through the policy twice. `pack_pairs` lays a pair out as one row,

    [prompt | chosen | last prompt token again | rejected]

with an attention mask in which the chosen tokens see the prompt causally, and the repeated last prompt token and the
rejected tokens see the prompt without its last token, the repeat, and the rejected tokens before them (never the
chosen ones); position ids restart at the prompt's end for the repeat. Every token then sees exactly what it sees in
its own row of TRL's batch, so the per-token log-probs are those of TRL's layout (the repeat carries the prediction of
the first rejected token from the prompt). `PairedRows.unpack` puts the fused LM head's per-token outputs back into
TRL's `[2B, L - 1]` layout, so TRL's loss and metrics run unchanged on them.

SimPO (TRL's CPO trainer) asks for logits, not per-token log-probs: `pack_common_prefix` runs the tokens a pair's
two rows share from the start once (no repeat is needed: a logit belongs to a position, not to a label) and
`unpack` gathers the logits back into TRL's `[2B, L, V]`.

Work saved: the prompt tokens of every pair, minus one token (measured on the testbed's w2s_train: 1.62x fewer
tokens; on long multi-turn rows 1.90x).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


@dataclass
class PairedRows:
    input_ids: torch.Tensor  # [B, M]
    attention_mask: torch.Tensor  # [B, 1, M, M], bool (True: attend) or additive float
    position_ids: torch.Tensor  # [B, M]
    shift_labels: torch.Tensor | None  # [B, M]: the token each position predicts (-100: none); None: logits wanted
    src_row: torch.Tensor  # TRL's layout ([2B, L - 1] per-token values, or [2B, L] logits): packed row and column
    src_col: torch.Tensor
    valid: torch.Tensor  # positions that carry a value (per-token values elsewhere are 0, as TRL's head leaves them)

    def unpack(self, output):
        """`output` in TRL's layout: the fused head's per-token fields, or the logits (padding positions hold a copy
        of another position's logits: every loss masks them); the rest (loss, aux_loss) as they are."""
        if self.shift_labels is None:
            output.logits = output.logits[self.src_row, self.src_col]
            return output
        for name in FIELDS:
            value = getattr(output, name, None)
            if value is not None:
                setattr(output, name, value[self.src_row, self.src_col].masked_fill(~self.valid, 0))
        return output


def _right_padded_lengths(input_ids, attention_mask) -> list[int] | None:
    """Each row's length, or None unless the batch has an even number of rows, each one run of tokens then padding."""
    rows, width = input_ids.shape
    if rows % 2 or width < 2:
        return None
    lengths = [int(n) for n in attention_mask.sum(dim=1)]
    if any((attention_mask[i, :n] != 1).any() for i, n in enumerate(lengths)):
        return None
    return lengths


def pack_pairs(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor, additive_mask: bool,
               mask_dtype=torch.float32) -> PairedRows | None:  # fmt: skip
    """TRL's DPO batch (scored tokens: `labels` != -100) as one row per pair for the fused LM head, or None when the
    batch does not have TRL's text layout (an odd number of rows, a pair whose rows differ before the responses, an
    empty prompt, a response that is not one run at the end of its row): the caller then runs the batch as it is."""
    lengths = _right_padded_lengths(input_ids, attention_mask)
    if lengths is None:
        return None
    pairs, scored = input_ids.shape[0] // 2, labels != -100
    starts = []
    for c, r in ((i, pairs + i) for i in range(pairs)):
        if not (scored[c].any() and scored[r].any()):
            return None
        p = int(scored[c].float().argmax())
        if p < 1 or int(scored[r].float().argmax()) != p or not torch.equal(input_ids[c, :p], input_ids[r, :p]):
            return None
        if int(scored[c].sum()) != lengths[c] - p or int(scored[r].sum()) != lengths[r] - p:
            return None  # scored tokens must be the whole rest of the row
        starts.append(p)
    return _pack(input_ids, lengths, starts, True, labels.dtype, additive_mask, mask_dtype)


def pack_common_prefix(input_ids: torch.Tensor, attention_mask: torch.Tensor, additive_mask: bool,
                       mask_dtype=torch.float32) -> PairedRows | None:  # fmt: skip
    """A batch `[chosen rows; rejected rows]` (TRL's CPO/SimPO layout) as one row per pair for the logits: the
    tokens the two rows share from the start run once. None in another layout or when a pair shares no token."""
    lengths = _right_padded_lengths(input_ids, attention_mask)
    if lengths is None:
        return None
    pairs, starts = input_ids.shape[0] // 2, []
    for c, r in ((i, pairs + i) for i in range(pairs)):
        n = min(lengths[c], lengths[r])
        differ = (input_ids[c, :n] != input_ids[r, :n]).nonzero()
        p = int(differ[0]) if len(differ) else n
        if p < 1:
            return None
        starts.append(p)
    return _pack(input_ids, lengths, starts, False, None, additive_mask, mask_dtype)


def _pack(input_ids, lengths, starts, repeat: bool, label_dtype, additive_mask: bool, mask_dtype) -> PairedRows:
    """Pair i as `[chosen row | (its token p - 1 again, when repeat) | rejected row from p]`, p = starts[i]. With
    `repeat` (the fused head: one label per position) the repeat predicts the first rejected token and the rejected
    tokens see the shared tokens before it; without, they see all p shared tokens."""
    rows, width = input_ids.shape
    pairs, device, extra = rows // 2, input_ids.device, int(repeat)
    packed_width = max(lengths[i] + extra + lengths[pairs + i] - p for i, p in enumerate(starts))
    ids = torch.zeros(pairs, packed_width, dtype=input_ids.dtype, device=device)
    positions = torch.zeros(pairs, packed_width, dtype=torch.long, device=device)
    allowed = torch.zeros(pairs, packed_width, packed_width, dtype=torch.bool, device=device)
    out_width = width - 1 if repeat else width  # per-token values are shifted (position t predicts t + 1); logits not
    src_row = torch.zeros(rows, out_width, dtype=torch.long, device=device)
    src_col = torch.zeros(rows, out_width, dtype=torch.long, device=device)
    valid = torch.zeros(rows, out_width, dtype=torch.bool, device=device)
    shift = torch.full((pairs, packed_width), -100, dtype=label_dtype, device=device) if repeat else None
    causal = torch.ones(packed_width, packed_width, dtype=torch.bool, device=device).tril()
    span = lambda a, b: torch.arange(a, b, device=device)  # noqa: E731
    for i, p in enumerate(starts):
        c, r = i, pairs + i
        n_c, n_r = lengths[c], lengths[r]
        block, end = n_c, n_c + extra + n_r - p  # the rejected block: [block, end)
        ids[i, :n_c] = input_ids[c, :n_c]
        ids[i, block:end] = input_ids[r, p - extra : n_r]
        positions[i, :n_c] = span(0, n_c)
        positions[i, block:end] = span(p - extra, n_r)
        allowed[i, :n_c, :n_c] = causal[:n_c, :n_c]
        allowed[i, block:end, : p - extra] = True
        allowed[i, block:end, block:end] = causal[: end - block, : end - block]
        pad = span(end, packed_width)
        allowed[i, pad, pad] = True  # padding sees itself: finite, unused
        src_row[c], src_row[r] = i, i
        if repeat:
            shift[i, p - 1 : n_c - 1] = ids[i, p:n_c]
            shift[i, block : end - 1] = ids[i, block + 1 : end]
            src_col[c, p - 1 : n_c - 1], valid[c, p - 1 : n_c - 1] = span(p - 1, n_c - 1), True
            src_col[r, p - 1 : n_r - 1], valid[r, p - 1 : n_r - 1] = span(block, end - 1), True
        else:
            src_col[c, :n_c], valid[c, :n_c] = span(0, n_c), True
            src_col[r, :p], src_col[r, p:n_r] = span(0, p), span(block, end)
            valid[r, :n_r] = True
    mask = allowed.unsqueeze(1)
    if additive_mask:
        mask = torch.zeros(mask.shape, dtype=mask_dtype, device=device).masked_fill(~mask, torch.finfo(mask_dtype).min)
    return PairedRows(ids, mask, positions, shift, src_row, src_col, valid)


class PromptOnceForward:
    """Stands in for the policy in TRL's DPO loss: called as TRL calls it (`input_ids`, `attention_mask`, `labels`,
    `fused_lm_head=True`, `use_cache`), it runs the packed pairs and returns the outputs in TRL's layout; anything
    else (extra inputs, a layout it does not know, an attention kernel that takes no custom mask) goes to the model
    unchanged."""

    KERNELS = {"sdpa": False, "eager": True}  # attention implementation -> whether it takes an additive float mask

    def __init__(self, model):
        self.model = model
        self.packed_last = False  # whether the last call ran packed (tests, logs)

    def __call__(self, input_ids=None, attention_mask=None, labels=None, fused_lm_head=False, **kwargs):
        config = getattr(getattr(self.model, "module", self.model), "config", None)  # DDP keeps the model in .module
        kernel = getattr(config, "_attn_implementation", None)
        packed = None
        if set(kwargs) <= {"use_cache"} and kernel in self.KERNELS and attention_mask is not None:
            dtype = next(self.model.parameters()).dtype
            mask = (self.KERNELS[kernel], dtype if dtype.is_floating_point else torch.float32)
            if fused_lm_head and labels is not None:  # DPO: per-token log-probs from TRL's fused head
                packed = pack_pairs(input_ids, attention_mask, labels, *mask)
            elif not fused_lm_head and labels is None:  # CPO / SimPO: the logits
                packed = pack_common_prefix(input_ids, attention_mask, *mask)
        self.packed_last = packed is not None
        if packed is None:
            extra = {"fused_lm_head": True} if fused_lm_head else {}
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              **({"labels": labels} if labels is not None else {}), **extra, **kwargs)  # fmt: skip
        heads = {"shift_labels": packed.shift_labels, "fused_lm_head": True} if fused_lm_head else {}
        output = self.model(input_ids=packed.input_ids, attention_mask=packed.attention_mask,
                            position_ids=packed.position_ids, use_cache=False, **heads)  # fmt: skip
        return packed.unpack(output)


def with_shared_prompt(trainer_cls: type) -> type:
    """`trainer_cls` whose policy forwards run each pair's shared tokens once (`PromptOnceForward`): TRL's DPOTrainer
    or a subclass (the loss and the reference passes, through the fused head), or TRL's CPOTrainer for SimPO (its
    concatenated forward, through the logits). A subclass that reads the policy's output through a forward hook sees
    it in TRL's layout: `unpack` rewrites the recorded output in place."""
    if hasattr(trainer_cls, "concatenated_forward"):  # CPO / SimPO

        class SharedPromptTrainer(trainer_cls):
            def concatenated_forward(self, model, batch):
                return super().concatenated_forward(PromptOnceForward(model), batch)

    else:

        class SharedPromptTrainer(trainer_cls):
            def _compute_loss(self, model, inputs, return_outputs):
                return super()._compute_loss(PromptOnceForward(model), inputs, return_outputs)

            def compute_ref_log_probs(self, model, inputs):
                return super().compute_ref_log_probs(PromptOnceForward(model), inputs)

    SharedPromptTrainer.__name__ = SharedPromptTrainer.__qualname__ = f"SharedPrompt{trainer_cls.__name__}"
    return SharedPromptTrainer
