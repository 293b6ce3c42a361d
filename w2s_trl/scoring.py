"""Batched, gradient-free scoring shared by labelling, evaluation and reward sources.

- `response_logprobs`: logp_M(y|x) = sum over response tokens of log M(y_t | x, y_<t) (SCIENCE.md notation), with the
  response-token count, for many (prompt messages, response messages) at once. Each model renders the messages with
  its own chat template; the response tokens are those after the rendered prompt, and a prompt whose tokens are not a
  prefix of the full sequence is an error naming the example.
- `reward_scores`: one scalar per (prompt, response) from a sequence-classification reward model.

Rows are sorted by length and padded per batch; a row's score does not depend on its batch (tested).
"""

from __future__ import annotations

from typing import Sequence

from w2s_trl.errors import DataError

Messages = list[dict[str, str]]


def render_plain(messages: Messages) -> str:
    """Text rendering for tokenizers without a chat template (e.g. BERT reward models)."""
    names = {"user": "User", "assistant": "Assistant", "system": "System"}
    return "\n".join(f"{names.get(m['role'], m['role'])}: {m['content']}" for m in messages)


def render(tokenizer, messages: Messages, add_generation_prompt: bool = False) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    text = render_plain(messages)
    return text + "\nAssistant:" if add_generation_prompt else text


def reward_text(tokenizer, messages: Messages) -> str:
    """What a reward model reads: the rendered conversation ending in EOS, as trl.RewardTrainer trains it."""
    text = render(tokenizer, messages)
    eos = tokenizer.eos_token
    return text if not eos or text.endswith(eos) else text + eos


def encode_prompt_response(tokenizer, prompt: Messages, response: Messages, where: str) -> tuple[list[int], int]:
    """Token ids of prompt + response and the number of prompt tokens (response tokens follow them)."""
    prompt_ids = tokenizer(render(tokenizer, prompt, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(render(tokenizer, prompt + response), add_special_tokens=False)["input_ids"]
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise DataError(
            f"{where}: the tokenized prompt is not a prefix of the tokenized prompt + response, so the response tokens "
            "cannot be located; use a chat template that renders the prompt identically in both cases"
        )
    if len(full_ids) == len(prompt_ids):
        raise DataError(f"{where}: the response renders to no tokens")
    return full_ids, len(prompt_ids)


def _batches(lengths: Sequence[int], batch_size: int):
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _progress(total: int, desc: str, show: bool | None):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not show if show is not None else total < 64, leave=False)


def _right_pad(seqs, pad: int):
    """Token ids [B, W] right padded with `pad`, and the attention mask [B, W]."""
    import torch

    width = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, x in enumerate(seqs):
        ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[row, : len(x)] = 1
    return ids, mask


def _common_prefix(seqs: list[list[int]]) -> int:
    first, n = seqs[0], min(len(x) for x in seqs)
    for t in range(n):
        if any(x[t] != first[t] for x in seqs):
            return t
    return n


def response_logprobs(model, tokenizer, prompts: Sequence[Messages], responses: Sequence[Messages],
                      batch_size: int = 16, ids: Sequence[str] | None = None, desc: str = "scoring",
                      progress: bool | None = None, padding_side: str = "left", autocast_dtype=None,
                      share_prefix: bool = True, min_shared: int = 16) -> tuple[list[float], list[int]]:  # fmt: skip
    """Sum of response-token log-probs and response-token count, per row.

    Position ids come from the attention mask, so a row scores the same whatever its padding and batch.
    Two savings, both exact up to float rounding:
    - `share_prefix`: rows are ordered so that those sharing a context (a system prompt, criteria, exemplars, the
      same prompt) sit together; a batch's common token prefix (at least `min_shared` tokens, never a response token)
      runs once, then each distinct prompt context once, and each row runs only its own response (KV caches reused).
    - otherwise, with left padding every response ends at the last column, so only the last `max response length + 1`
      positions go through the LM head and the log-softmax (`logits_to_keep`).
    """
    import torch

    encoded = [
        encode_prompt_response(tokenizer, p, r, f"example {ids[i] if ids else i}")
        for i, (p, r) in enumerate(zip(prompts, responses))
    ]
    device = next(model.parameters()).device
    sums, counts = [0.0] * len(encoded), [0] * len(encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    bar = _progress(len(encoded), desc, progress)
    if share_prefix:  # lexicographic order groups shared contexts; batches are then cut in that order
        order = sorted(range(len(encoded)), key=lambda i: encoded[i][0])
        batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    else:
        batches = list(_batches([len(e[0]) for e in encoded], batch_size))
    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    with torch.no_grad(), autocast:
        for batch in batches:
            seqs = [encoded[i][0] for i in batch]
            n_prompts = [encoded[i][1] for i in batch]
            # the prefix must leave each row its last prompt token: that position predicts the first response token
            shared = min(_common_prefix(seqs), min(n_prompts) - 1) if share_prefix else 0
            if shared >= min_shared:
                token_logp, mask = _shared_prefix_pass(model, seqs, n_prompts, shared, pad, device)
            else:
                token_logp, mask = _padded_pass(model, seqs, n_prompts, pad, device, padding_side)
            batch_sums = (token_logp * mask).sum(-1).tolist()
            batch_counts = mask.sum(-1).tolist()
            for row, i in enumerate(batch):
                sums[i], counts[i] = batch_sums[row], int(batch_counts[row])
            bar.update(len(batch))
    bar.close()
    model.train(was_training)
    return sums, counts


def _padded_pass(model, seqs, n_prompts, pad, device, padding_side):
    """Token log-probs [B, T] and the response mask [B, T] of a padded batch."""
    import torch

    width = max(len(x) for x in seqs)
    input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    response = torch.zeros((len(seqs), width), dtype=torch.bool)  # True on response tokens
    for row, (ids_i, n_prompt) in enumerate(zip(seqs, n_prompts)):
        start = width - len(ids_i) if padding_side == "left" else 0
        input_ids[row, start : start + len(ids_i)] = torch.tensor(ids_i)
        attention[row, start : start + len(ids_i)] = 1
        response[row, start + n_prompt : start + len(ids_i)] = True
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    # logits at column t predict token t+1; the first response token is predicted from the column before it
    first = int(response.float().argmax(-1).min())  # earliest response column in the batch
    keep = width - first + 1
    logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                   position_ids=positions.to(device), logits_to_keep=keep).logits  # fmt: skip
    targets = input_ids[:, width - keep + 1 :].to(device)  # predicted by columns width-keep .. width-2
    return _target_logprobs(logits[:, -keep:][:, :-1], targets), response[:, width - keep + 1 :].to(device)


def _cache_argument(model) -> str:
    """transformers renamed `past_key_values` to `cache` (5.2x; the old name goes in 5.40): use the model's own."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def _returned_cache(output):
    return output.cache if getattr(output, "cache", None) is not None else output.past_key_values


def _shared_prefix_pass(model, seqs, n_prompts, shared, pad, device):
    """A two-level prefix tree, each level run once:
      1. the batch's common prefix (e.g. persona + criteria + exemplars), batch 1;
      2. each distinct prompt context after it (rows scoring several responses to one prompt share it), right padded;
      3. each row's tail: its last prompt token (which predicts the first response token) and its response.
    The KV cache of level 1 is repeated over the distinct contexts, that of level 2 selected per row; padding gaps
    inside the cache are masked, and position ids count only real tokens, so the numbers equal a plain forward."""
    import torch

    kw = _cache_argument(model)
    # 1. the common prefix
    prefix = torch.tensor([seqs[0][:shared]], device=device)
    cache = _returned_cache(model(input_ids=prefix, use_cache=True))
    contexts = [tuple(x[shared : n - 1]) for x, n in zip(seqs, n_prompts)]
    unique = list(dict.fromkeys(contexts))
    row_to_ctx = torch.tensor([unique.index(c) for c in contexts], device=device)
    ctx_ids, ctx_mask = _right_pad(unique, pad)
    # 2. the distinct prompt contexts, on the prefix cache repeated for each
    cache.batch_repeat_interleave(len(unique))
    if ctx_ids.shape[1]:
        attention = torch.cat([torch.ones((len(unique), shared), dtype=torch.long), ctx_mask], 1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, shared:]
        model(input_ids=ctx_ids.to(device), attention_mask=attention.to(device), position_ids=positions.to(device),
              use_cache=True, logits_to_keep=1, **{kw: cache})  # fmt: skip
    # 3. tails, in two length buckets (short and long responses mixed in one batch would mostly compute padding)
    tails = [x[n - 1 :] for x, n in zip(seqs, n_prompts)]
    order = sorted(range(len(seqs)), key=lambda i: len(tails[i]))
    buckets = [order[: len(order) // 2], order[len(order) // 2 :]] if len(order) >= 8 else [order]
    token_logp = torch.zeros((len(seqs), max(len(t) for t in tails) - 1), device=device)
    mask = torch.zeros_like(token_logp, dtype=torch.bool)
    for rows in filter(None, buckets):
        input_ids, tail_mask = _right_pad([tails[i] for i in rows], pad)
        width = input_ids.shape[1]
        ctx_rows = row_to_ctx[rows]
        attention = torch.cat([torch.ones((len(rows), shared), dtype=torch.long), ctx_mask[ctx_rows.cpu()], tail_mask], 1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, -width:]
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                       position_ids=positions.to(device), use_cache=True,
                       **{kw: _select_rows(cache, ctx_rows)}).logits  # fmt: skip
        # tail column j predicts tail token j+1: every one of them is a response token
        lp = _target_logprobs(logits[:, :-1], input_ids[:, 1:].to(device))
        token_logp[rows, : width - 1] = lp
        mask[rows, : width - 1] = tail_mask[:, 1:].bool().to(device)
    return token_logp, mask


def _select_rows(cache, rows):
    """A cache holding `rows` of `cache` (which stays as it is, for the next bucket)."""
    import copy

    selected = copy.copy(cache)
    selected.layers = [copy.copy(layer) for layer in cache.layers]
    selected.batch_select_indices(rows)
    return selected


def _target_logprobs(logits, targets):
    """log softmax(logits)[target] without writing the full [B, T, V] log-softmax: logit - logsumexp."""
    import torch

    logits = logits.float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def reward_scores(model, tokenizer, prompts: Sequence[Messages], responses: Sequence[Messages],
                  batch_size: int = 32, max_length: int = 256, desc: str = "reward",
                  progress: bool | None = None) -> list[float]:  # fmt: skip
    """r(x, y) of a sequence-classification reward model for each (prompt, response)."""
    import torch

    texts = [reward_text(tokenizer, p + r) for p, r in zip(prompts, responses)]
    encoded = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    device = next(model.parameters()).device
    out = [0.0] * len(texts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    bar = _progress(len(texts), desc, progress)
    with torch.no_grad():
        for batch in _batches([len(e) for e in encoded], batch_size):
            input_ids, attention = _right_pad([encoded[i] for i in batch], pad)
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
            for row, i in enumerate(batch):
                out[i] = float(logits[row, 0])
            bar.update(len(batch))
    bar.close()
    model.train(was_training)
    return out
