"""Best-of-N annotation (SCIENCE.md 4): sample N responses per prompt from a policy, score them with any reward
source, and build preference pairs: chosen = argmax; rejected = argmin (default) or a uniformly random non-max
response (`random_non_best`); a prompt is skipped when max == min or chosen and rejected texts are equal. Every row
keeps all N samples and scores.

Resumable: each finished prompt is appended (and flushed) to a progress file; an interrupted annotation continues
with the prompts not in it, and finished prompts are never regenerated.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Sequence

from w2s_trl.recipe import BestOfNSection


def select_pair(texts: Sequence[str], scores: Sequence[float], rejected: str, rng: random.Random
                ) -> tuple[int, int] | str:  # fmt: skip
    """(chosen index, rejected index), or the reason the prompt is skipped. Pure; tested by value."""
    best = max(range(len(scores)), key=lambda i: scores[i])  # first argmax
    top, bottom = scores[best], min(scores)
    if top == bottom:
        return "tie: every sample has the same score"
    if rejected == "argmin":
        worst = min(range(len(scores)), key=lambda i: scores[i])
    else:  # random_non_best: uniform over the responses whose score is below the max
        worst = rng.choice([i for i, s in enumerate(scores) if s < top])
    if texts[best] == texts[worst]:
        return "identical: chosen and rejected texts are equal"
    return best, worst


def prompt_seed(seed: int, example_id: str) -> int:
    return int(hashlib.sha256(f"{seed}:{example_id}".encode()).hexdigest()[:8], 16)


def read_progress(path: Path) -> dict[str, dict]:
    """Finished prompts by id; a last line cut by a kill is ignored (that prompt is redone)."""
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[record["id"]] = record
    return done


REPEATABLE_LAYERS = {"DynamicLayer", "DynamicSlidingWindowLayer"}  # cache layers that repeat every state they hold


def prompt_cache(policy, ids, mask, n: int):
    """The KV cache of left-padded prompts `ids` without their last token, each row repeated n times; None when the
    model's cache cannot be repeated whole (linear-attention or other recurrent states) or names its own kind."""
    from w2s_trl.scoring import cache_layer_kinds, left_padded_positions, returned_cache

    # generate builds a named cache itself (static, offloaded) and refuses a passed one; it drops "hybrid" first
    own = getattr(getattr(policy, "generation_config", None), "cache_implementation", None)
    if own not in (None, "hybrid") or ids.shape[1] < 2:
        return None
    positions = left_padded_positions(mask)
    cache = returned_cache(policy(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                                  use_cache=True, logits_to_keep=1))  # fmt: skip
    if not cache_layer_kinds(cache) <= REPEATABLE_LAYERS:
        return None
    cache.batch_repeat_interleave(n)
    return cache


def sample(policy, tokenizer, prompts: Sequence[list[dict]], n: int, max_new_tokens: int, temperature: float,
           top_p: float, seed: int, top_k: int | None = None) -> list[list[str]]:  # fmt: skip
    """n sampled completions per prompt, batched (left padding), seeded; `top_k` None keeps the model's default.

    With n > 1 each prompt is read once (`prompt_cache`): `generate` continues from its repeated cache on the
    n x prompts rows. These are the rows and the random stream of `generate(num_return_sequences=n)`, so the samples
    are the same up to floating-point rounding (identical on CPU in fp32, tested), without running every prompt n
    times (bench/best_of_n.py). A model whose cache cannot be repeated generates as before."""
    import torch

    from w2s_trl.scoring import cache_argument, render

    tokenizer.padding_side = "left"
    texts = [render(tokenizer, p, add_generation_prompt=True) for p in prompts]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(policy.device)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    extra = {} if top_k is None else {"top_k": top_k}
    with torch.no_grad():
        cache = prompt_cache(policy, ids, mask, n) if n > 1 else None
        if cache is not None:
            ids, mask = ids.repeat_interleave(n, dim=0), mask.repeat_interleave(n, dim=0)
            extra[cache_argument(policy)] = cache
        else:
            extra["num_return_sequences"] = n
        torch.manual_seed(seed)
        out = policy.generate(input_ids=ids, attention_mask=mask, do_sample=True, max_new_tokens=max_new_tokens,
                              temperature=temperature, top_p=top_p, pad_token_id=tokenizer.pad_token_id,
                              **extra)  # fmt: skip
    decoded = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
    return [[d.strip() for d in decoded[i * n : (i + 1) * n]] for i in range(len(prompts))]


def best_of_n(policy, tokenizer, rows: list[dict], source, cfg: BestOfNSection, seed: int, progress: Path) -> dict:
    """Annotate `rows` (prompts), appending each finished prompt to `progress`; returns counts."""
    from tqdm.auto import tqdm

    done = read_progress(progress)
    if progress.exists():  # drop a line cut by a kill, so appended records start on a fresh line
        tmp = progress.with_name(progress.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in done.values()))
        os.replace(tmp, progress)
    todo = [r for r in rows if r["id"] not in done]
    policy.eval()
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc=f"best-of-{cfg.n}")
    with open(progress, "a") as fh:
        for start in range(0, len(todo), cfg.prompts_per_batch):
            batch = todo[start : start + cfg.prompts_per_batch]
            samples = sample(policy, tokenizer, [r["prompt"] for r in batch], cfg.n, cfg.max_new_tokens,
                             cfg.temperature, cfg.top_p, prompt_seed(seed, batch[0]["id"]))  # fmt: skip
            flat_prompts = [r["prompt"] for r in batch for _ in range(cfg.n)]
            flat = [s for group in samples for s in group]
            scores = source(flat_prompts, flat)
            for i, row in enumerate(batch):
                texts, sc = samples[i], scores[i * cfg.n : (i + 1) * cfg.n]
                picked = select_pair(texts, sc, cfg.rejected, random.Random(prompt_seed(seed, row["id"])))
                record = {k: row[k] for k in ("id", "objective", "category", "subtlety", "prompt")}
                record.update(samples=texts, scores=sc)
                if isinstance(picked, str):
                    record["skipped"] = picked
                else:
                    record["chosen"] = [{"role": "assistant", "content": texts[picked[0]]}]
                    record["rejected"] = [{"role": "assistant", "content": texts[picked[1]]}]
                fh.write(json.dumps(record) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
            bar.update(len(batch))
    bar.close()
    records = read_progress(progress)
    return {"prompts": len(records), "pairs": sum("skipped" not in r for r in records.values()),
            "resumed_with": len(done)}  # fmt: skip


def pairs_from_progress(progress: Path, order: Sequence[str]) -> list[dict]:
    records = read_progress(progress)
    return [records[i] for i in order if i in records and "skipped" not in records[i]]
