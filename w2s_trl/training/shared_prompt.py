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

SimPO (TRL's CPO trainer) asks for logits: `pack_common_prefix` runs the tokens a pair's two rows share from the
start once (no repeat is needed: a logit belongs to a position, not to a label). TRL's CPO projects every position of
both rows through the LM head and log-softmaxes them all; here the head runs only at the positions whose logits
predict a response token (`head_at`, through a hook on the head's input, so the head's own post-processing still
applies), and the log-probs and NLL come from those. CPO's `logits/chosen` and `logits/rejected` metrics are then
means over the scored positions (TRL's: over every position, prompt and padding included); its losses and log-probs
are TRL's.

Only models whose every layer is full attention can be packed exactly (`packing_blocker`: a sliding window would
see past its window, recurrent or convolution state would carry the chosen tokens into the rejected ones), through
a kernel that takes a custom mask (sdpa, eager). Anything else runs TRL's own forward, said once on the console
and in the `prompt_once/packed` metric (the share of packed calls).

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


def _pack(input_ids, lengths, starts, repeat: bool, label_dtype, additive_mask: bool, mask_dtype
          ) -> PairedRows | None:  # fmt: skip
    """Pair i as `[chosen row | (its token p - 1 again, when repeat) | rejected row from p]`, p = starts[i]; None
    when the mask would exceed MAX_MASK_ELEMENTS. With `repeat` (the fused head: one label per position) the repeat
    predicts the first rejected token and the rejected tokens see the shared tokens before it; without, they see all
    p shared tokens."""
    rows, width = input_ids.shape
    pairs, device, extra = rows // 2, input_ids.device, int(repeat)
    packed_width = max(lengths[i] + extra + lengths[pairs + i] - p for i, p in enumerate(starts))
    if pairs * packed_width**2 > MAX_MASK_ELEMENTS:
        return None
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


# Decoder families whose layers are all attention (no recurrent or convolution state that would carry the chosen
# tokens into the rejected ones); a sliding window or chunked attention is checked on the config as well.
FULL_ATTENTION_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "olmo", "olmo2", "granite", "stablelm",
                        "starcoder2", "smollm3", "cohere", "glm", "helium"}  # fmt: skip
MAX_MASK_ELEMENTS = 2**28  # [B, 1, M, M]: 256 MiB as booleans; larger batches run unpacked


def _config(model):
    return getattr(getattr(model, "module", model), "config", None)  # DDP keeps the model in .module


def packing_blocker(model) -> str | None:
    """Why `model` cannot run packed pairs exactly (None: it can): every token must see exactly its own row's
    tokens, which a custom mask gives only to plain full attention."""
    config = _config(model)
    kind, kernel = getattr(config, "model_type", None), getattr(config, "_attn_implementation", None)
    if kind not in FULL_ATTENTION_TYPES:
        return f"model type {kind!r} is not among the full-attention families packing is checked for"
    if kernel not in PromptOnceForward.KERNELS:
        return f"attention implementation {kernel!r} takes no custom mask (sdpa and eager do)"
    window = getattr(config, "sliding_window", None)
    if window is not None and getattr(config, "use_sliding_window", True):
        return f"sliding-window attention ({window} tokens) would see past its window in a packed row"
    layers = set(getattr(config, "layer_types", None) or ["full_attention"])
    if getattr(config, "attention_chunk_size", None) or layers != {"full_attention"}:
        return f"layers other than full attention ({', '.join(sorted(layers - {'full_attention'})) or 'chunked'})"
    return None


class PromptOnceForward:
    """Stands in for the policy in TRL's DPO loss (called as TRL calls it: `input_ids`, `attention_mask`, `labels`,
    `fused_lm_head=True`, `use_cache`) or CPO's concatenated forward (`input_ids`, `attention_mask`, `use_cache`):
    it runs the packed pairs and returns the outputs in TRL's layout (also kept as `output`). Anything else (extra
    inputs, a layout it does not know, a model `packing_blocker` refuses (checked here unless the caller passes its
    verdict), a mask over MAX_MASK_ELEMENTS) goes to the model unchanged, and `reason` says why."""

    KERNELS = {"sdpa": False, "eager": True}  # attention implementation -> whether it takes an additive float mask

    def __init__(self, model, blocker: str | None = "unchecked"):
        self.model, self.blocker = model, packing_blocker(model) if blocker == "unchecked" else blocker
        self.output, self.reason = None, None

    @property
    def packed(self) -> bool:
        return self.reason is None

    def __call__(self, input_ids=None, attention_mask=None, labels=None, fused_lm_head=False, keep=None, **kwargs):
        """`keep` (bool, the batch's `[rows, width]`; logits calls only): the LM head runs at those positions alone,
        and `output.logits` is `[keep.sum(), vocab]` in `keep`'s row-major order."""
        self.reason = self.blocker or _call_problem(attention_mask, labels, fused_lm_head, kwargs)
        packed = None
        if self.reason is None:
            additive = self.KERNELS[_config(self.model)._attn_implementation]
            dtype = next(self.model.parameters()).dtype
            mask = (additive, dtype if dtype.is_floating_point else torch.float32)
            packed = (pack_pairs(input_ids, attention_mask, labels, *mask) if fused_lm_head
                      else pack_common_prefix(input_ids, attention_mask, *mask))  # fmt: skip
            if packed is None:
                self.reason = (f"a pair's two rows do not share a prompt in TRL's right-padded layout, or the packed "
                               f"mask would exceed {MAX_MASK_ELEMENTS:,} elements")  # fmt: skip
        if packed is None:
            heads = {"labels": labels} if labels is not None else {}
            heads.update({"fused_lm_head": True} if fused_lm_head else {})
            call = lambda: self.model(input_ids=input_ids, attention_mask=attention_mask, **heads, **kwargs)  # noqa: E731
            self.output = call() if keep is None else head_at(self.model, keep.nonzero(as_tuple=True), call)
            return self.output
        heads = {"shift_labels": packed.shift_labels, "fused_lm_head": True} if fused_lm_head else {}
        call = lambda: self.model(input_ids=packed.input_ids, attention_mask=packed.attention_mask,  # noqa: E731
                                  position_ids=packed.position_ids, use_cache=False, **heads)  # fmt: skip
        if keep is not None:  # TRL's positions in the packed rows (a pair's shared positions are the same rows)
            self.output = head_at(self.model, (packed.src_row[keep], packed.src_col[keep]), call)
            return self.output
        self.output = packed.unpack(call())
        return self.output


def head_at(model, where: tuple[torch.Tensor, torch.Tensor], call):
    """`call()` (a forward of `model` returning logits) with the LM head run only at the positions `where` (row and
    column indices into the forward's hidden states): `output.logits` is `[len(where[0]), vocab]`. The head's input
    is cut by a hook, so whatever the model does to the head's output (softcapping, scaling) still applies. A model
    that does not call its output embeddings as a module, or runs under `nn.DataParallel` (whose replicas each see a
    slice of the rows), gets its full logits cut after the fact: the same values, without the saving."""
    inner = getattr(model, "module", model)  # DDP keeps the model in .module
    head = None if isinstance(model, torch.nn.DataParallel) else inner.get_output_embeddings()
    fired = []

    def cut(module, args):
        fired.append(True)
        if len(fired) > 1:
            raise RuntimeError("the LM head ran twice in one forward: its input cannot be cut to the scored positions")
        return (args[0][where], *args[1:])

    handle = head.register_forward_pre_hook(cut) if isinstance(head, torch.nn.Module) else None
    try:
        output = call()
    finally:
        if handle is not None:
            handle.remove()
    if not fired:
        output.logits = output.logits[where]
    if output.logits.shape[0] != len(where[0]) or output.logits.dim() != 2:
        raise RuntimeError(f"logits of shape {tuple(output.logits.shape)} for {len(where[0])} scored positions")
    return output


def _call_problem(attention_mask, labels, fused_lm_head: bool, kwargs: dict) -> str | None:
    """Why a forward call is not one packing handles: TRL's DPO call (labels, fused head) or CPO's (neither)."""
    if not set(kwargs) <= {"use_cache"}:
        return f"the forward has inputs packing does not handle ({', '.join(sorted(set(kwargs) - {'use_cache'}))})"
    if attention_mask is None or fused_lm_head != (labels is not None):
        return "the call is neither TRL's DPO nor its CPO forward"
    return None


class _SharedPrompt:
    """Trainer mixin: policy forwards through `PromptOnceForward`. The policy's output in TRL's layout is kept as
    `policy_output` (a subclass reads it there: a forward hook sees the packed rows, and under DDP a copy). Each
    training or evaluation forward logs `prompt_once/packed` (1 packed, 0 not: its mean is the packed share), and
    the first fallback is printed with its reason."""

    def _prompt_once(self, model, call, policy: bool = True):
        if "_packing_blocker" not in self.__dict__:
            self._packing_blocker = packing_blocker(self.model)
        forward = PromptOnceForward(model, self._packing_blocker)
        result = call(forward)
        if policy:
            self.policy_output = forward.output
            mode = "train" if self.model.training else "eval"
            if hasattr(self, "store_metrics"):  # CPO keeps TRL's older metric store; eval keys carry their prefix
                self.store_metrics({f"{'eval_' * (mode == 'eval')}prompt_once/packed": float(forward.packed)}, mode)
            elif getattr(self, "_metrics", None) is not None:
                self._metrics[mode]["prompt_once/packed"].append(float(forward.packed))
        if not forward.packed and not self.__dict__.get("_packing_reported"):
            self._packing_reported = True
            print(f"[w2s-trl] share_prompt: running TRL's two rows per pair ({forward.reason})", flush=True)
        return result


class _SharedPromptDPO(_SharedPrompt):
    def _compute_loss(self, model, inputs, return_outputs):
        loss = super(_SharedPromptDPO, self)._compute_loss
        return self._prompt_once(model, lambda m: loss(m, inputs, return_outputs))

    def compute_ref_log_probs(self, model, inputs):
        return self._prompt_once(model, lambda m: super(_SharedPromptDPO, self).compute_ref_log_probs(m, inputs),
                                 policy=False)  # fmt: skip


LOGPS_CHUNK = 1024  # scored positions per log-softmax: bounds its fp32 temporary at 1024 x vocab


class _SharedPromptCPO(_SharedPrompt):
    """CPO/SimPO's concatenated forward with each prompt once and the LM head only at the positions whose logits a
    label reads (TRL's projects every position and log-softmaxes them all): the same log-probs and NLL. The logits it
    returns, which TRL only averages for its `logits/chosen|rejected` metrics, are those of the scored positions."""

    head_at_scored_positions = True  # False: TRL's every-position head (bench/align_step.py's side e)

    def concatenated_forward(self, model, batch):
        if self.is_encoder_decoder or self.aux_loss_enabled or not self.head_at_scored_positions:
            return self._prompt_once(model, lambda m: super(_SharedPromptCPO, self).concatenated_forward(m, batch))
        from trl.trainer.utils import selective_log_softmax

        inputs = self.concatenated_inputs(batch, is_encoder_decoder=False, padding_value=self.pad_token_id,
                                          device=self.accelerator.device)  # fmt: skip
        labels, rows = inputs["concatenated_labels"], batch["chosen_labels"].shape[0]
        keep = torch.zeros_like(labels, dtype=torch.bool)
        keep[:, :-1] = labels[:, 1:] != -100  # position t's logits predict token t + 1
        output = self._prompt_once(model, lambda m: m(inputs["concatenated_input_ids"], use_cache=False, keep=keep,
                                                      attention_mask=inputs["concatenated_attention_mask"]))  # fmt: skip
        targets, logits = labels[:, 1:][keep[:, :-1]], output.logits
        token_logps = torch.cat([selective_log_softmax(logits[None, i : i + LOGPS_CHUNK],  # TRL loops over dim 0
                                                       targets[None, i : i + LOGPS_CHUNK])[0]
                                 for i in range(0, len(targets), LOGPS_CHUNK)] or [logits.new_zeros(0)])  # fmt: skip
        # TRL's sums: per-token log-probs in the batch's layout (0 where unscored), summed per row
        per_token = token_logps.new_zeros(keep[:, :-1].shape).masked_scatter(keep[:, :-1], token_logps)
        logps = per_token.sum(-1)
        if self.loss_type in ("ipo", "simpo"):
            logps = logps / keep.sum(-1)
        n_chosen = int(keep[:rows].sum())  # row-major: the chosen rows' positions come first
        nll = -token_logps[:n_chosen].mean() if self.cpo_alpha != 0 else torch.tensor(0.0, device=logps.device)
        return logps[:rows], logps[rows:], logits[:n_chosen], logits[n_chosen:], nll


def with_shared_prompt(trainer_cls: type) -> type:
    """`trainer_cls` whose policy forwards run each pair's shared tokens once: TRL's DPOTrainer or a subclass (the
    loss, and TRL's precompute pass of the reference log-probs, through the fused head; apply it only with
    `precompute_ref_log_probs`, so that reference and policy are computed alike: a reference inside the loss would
    run unpacked), or TRL's CPOTrainer for SimPO (its concatenated forward, through the logits)."""
    mixin = _SharedPromptCPO if hasattr(trainer_cls, "concatenated_forward") else _SharedPromptDPO
    return type(f"SharedPrompt{trainer_cls.__name__}", (mixin, trainer_cls), {})
