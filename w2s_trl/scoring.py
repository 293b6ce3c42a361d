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


def response_logprobs(model, tokenizer, prompts: Sequence[Messages], responses: Sequence[Messages],
                      batch_size: int = 16, ids: Sequence[str] | None = None, desc: str = "scoring",
                      progress: bool | None = None) -> tuple[list[float], list[int]]:  # fmt: skip
    """Sum of response-token log-probs and response-token count, per row."""
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
    with torch.no_grad():
        for batch in _batches([len(e[0]) for e in encoded], batch_size):
            width = max(len(encoded[i][0]) for i in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.bool)  # True on response tokens
            for row, i in enumerate(batch):
                ids_i, n_prompt = encoded[i]
                input_ids[row, : len(ids_i)] = torch.tensor(ids_i)
                attention[row, : len(ids_i)] = 1
                mask[row, n_prompt : len(ids_i)] = True
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits.float()
            # position t predicts token t+1: shift so that logp[:, t] = log p(token t | tokens < t)
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            token_logp = logp.gather(-1, input_ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
            response_mask = mask[:, 1:].to(device)
            batch_sums = (token_logp * response_mask).sum(-1).tolist()
            batch_counts = response_mask.sum(-1).tolist()
            for row, i in enumerate(batch):
                sums[i], counts[i] = batch_sums[row], int(batch_counts[row])
            bar.update(len(batch))
    bar.close()
    model.train(was_training)
    return sums, counts


def reward_scores(model, tokenizer, prompts: Sequence[Messages], responses: Sequence[Messages],
                  batch_size: int = 32, max_length: int = 256, desc: str = "reward",
                  progress: bool | None = None) -> list[float]:  # fmt: skip
    """r(x, y) of a sequence-classification reward model for each (prompt, response)."""
    import torch

    texts = [render(tokenizer, p + r) for p, r in zip(prompts, responses)]
    encoded = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    device = next(model.parameters()).device
    out = [0.0] * len(texts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    bar = _progress(len(texts), desc, progress)
    with torch.no_grad():
        for batch in _batches([len(e) for e in encoded], batch_size):
            width = max(len(encoded[i]) for i in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                input_ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                attention[row, : len(encoded[i])] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
            for row, i in enumerate(batch):
                out[i] = float(logits[row, 0])
            bar.update(len(batch))
    bar.close()
    model.train(was_training)
    return out
