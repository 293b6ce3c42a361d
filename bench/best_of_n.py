"""Best-of-N sampling throughput: w2s-trl's batched generation versus one prompt at a time.

    python bench/best_of_n.py [--model embedded:smollm2-135m-instruct] [--prompts 32] [--repeat 3] [--check-greedy]
    python bench/best_of_n.py --model tiny:causal-lm --prompts 4 --repeat 1 --check-greedy     # quick check

Run it on an otherwise idle machine: with another process busy on the same 2 cores, torch's 2 OpenMP threads wait on
each other at every op and a SmolLM2 decode step went from 83 ms (1 thread) to 548 ms (2 threads), measured; small
batches suffer most, which distorts the ratio (`--threads 1` when the machine cannot be had alone).

(a) batched: `w2s_trl.annotate.sample`, the function `best_of_n` (label.method: best_of_n) calls, on
`prompts_per_batch` prompts per generate call (left padding), seeded per batch as `best_of_n` seeds it: each prompt
is read once and its KV cache repeated n times. (a0) the same batches through one plain
`model.generate(..., num_return_sequences=n)` call each (every prompt read n times; what `sample` did before):
separates the two gains. (b) one prompt at a time, the careful user's loop: for each prompt one
`model.generate(..., num_return_sequences=n)` call (no padding), seeded per prompt. Same model, same w2s_train
prompts of testbed:hh (w2s_trl.data.load_source), same n, max_new_tokens, temperature and top_p (defaults:
BestOfNSection). After one uncounted warm-up of each, the sides alternate (a, a0, b, a, a0, b, ...) `--repeat`
times; prints samples/s of each and the ratios a/b and a/a0 per repeat, with median and min-max.

Same computation? Under sampling the two sides cannot give identical samples: the random stream is consumed over a
different batch shape. So the check is greedy (`--check-greedy`: do_sample=False, one sequence per prompt, the same
generate call as `sample` otherwise): the share of prompts whose batched (left-padded) text equals the unbatched
one. Padding changes the numerics slightly (masked positions still enter the matrix products), so a few texts may
drift after a near-tie; the share is reported as measured, not assumed to be 1. The check also compares (a) with
(a0) under sampling (same batches, same seeds): the repeated prompt cache must give the same samples.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
REPO = Path(__file__).resolve().parent.parent


def generate(model, tok, prompts, n: int, max_new_tokens: int, temperature: float, top_p: float, seed: int,
             do_sample: bool = True) -> list[list[str]]:  # fmt: skip
    """The generate call of w2s_trl.annotate.sample (left padding, n sequences per prompt), with do_sample a choice;
    with one prompt there is no padding: the unbatched baseline."""
    import torch

    from w2s_trl.scoring import render

    tok.padding_side = "left"
    texts = [render(tok, p, add_generation_prompt=True) for p in prompts]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    torch.manual_seed(seed)
    sampling = {"temperature": temperature, "top_p": top_p} if do_sample else {}
    with torch.no_grad():
        out = model.generate(**enc, do_sample=do_sample, num_return_sequences=n, max_new_tokens=max_new_tokens,
                             pad_token_id=tok.pad_token_id, **sampling)  # fmt: skip
    decoded = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return [[d.strip() for d in decoded[i * n : (i + 1) * n]] for i in range(len(prompts))]


def in_batches(fn, model, tok, rows, cfg, seed: int) -> list[list[str]]:
    """`fn` (annotate.sample or this script's plain generate call) over `prompts_per_batch` prompts at a time,
    seeded per batch as `best_of_n` seeds it."""
    from w2s_trl.annotate import prompt_seed

    out = []
    for start in range(0, len(rows), cfg.prompts_per_batch):
        batch = rows[start : start + cfg.prompts_per_batch]
        out += fn(model, tok, [r["prompt"] for r in batch], cfg.n, cfg.max_new_tokens, cfg.temperature, cfg.top_p,
                  prompt_seed(seed, batch[0]["id"]))  # fmt: skip
    return out


def run_batched(model, tok, rows, cfg, seed: int) -> list[list[str]]:
    from w2s_trl.annotate import sample

    return in_batches(sample, model, tok, rows, cfg, seed)


def run_plain_batched(model, tok, rows, cfg, seed: int) -> list[list[str]]:
    return in_batches(generate, model, tok, rows, cfg, seed)


def run_single(model, tok, rows, cfg, seed: int) -> list[list[str]]:
    from w2s_trl.annotate import prompt_seed

    return [generate(model, tok, [r["prompt"]], cfg.n, cfg.max_new_tokens, cfg.temperature, cfg.top_p,
                     prompt_seed(seed, r["id"]))[0] for r in rows]  # fmt: skip


def timed(fn, *args) -> tuple[float, list[list[str]]]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return (f"median {fmt.format(statistics.median(values))}  (min {fmt.format(min(values))}, max "
            f"{fmt.format(max(values))}; runs: {', '.join(fmt.format(v) for v in values)})")  # fmt: skip


def mean_tokens(tok, samples: list[list[str]]) -> float:
    """Mean length of the decoded samples, re-tokenized (a check that both sides generate alike, not a count of the
    generate steps: a batch runs until its longest sequence ends)."""
    flat = [s for group in samples for s in group]
    return statistics.mean(len(tok(s, add_special_tokens=False)["input_ids"]) for s in flat)


def check_greedy(model, tok, rows, cfg) -> None:
    shared, plain = run_batched(model, tok, rows, cfg, 0), run_plain_batched(model, tok, rows, cfg, 0)
    same = sum(a == b for a, b in zip(shared, plain))
    print(f"\nsampling, same batches and seeds: (a) with the repeated prompt cache gives the samples of (a0) for "
          f"{same}/{len(rows)} prompts")  # fmt: skip

    batched = []
    for start in range(0, len(rows), cfg.prompts_per_batch):
        chunk = rows[start : start + cfg.prompts_per_batch]
        batched += [g[0] for g in generate(model, tok, [r["prompt"] for r in chunk], 1, cfg.max_new_tokens, 1.0, 1.0,
                                           0, do_sample=False)]  # fmt: skip
    single = [generate(model, tok, [r["prompt"]], 1, cfg.max_new_tokens, 1.0, 1.0, 0, do_sample=False)[0][0]
              for r in rows]  # fmt: skip
    same = [b == s for b, s in zip(batched, single)]
    print(f"greedy (do_sample=False), batched left-padded vs one prompt at a time: {sum(same)}/{len(same)} prompts "
          f"give identical texts ({sum(same) / len(same):.0%})")  # fmt: skip
    for i, (b, s) in enumerate(zip(batched, single)):
        if b != s:
            k = next((j for j in range(min(len(b), len(s))) if b[j] != s[j]), min(len(b), len(s)))
            print(f"  prompt {i}: texts agree on the first {k} characters, then differ: batched "
                  f"{b[k : k + 40]!r} / single {s[k : k + 40]!r}")  # fmt: skip
    print("under sampling (the timed runs) identical samples are not expected: the same seed is consumed over "
          "different batch shapes, so the two sides draw different (equally distributed) samples")


def main() -> None:
    from w2s_trl.recipe import BestOfNSection

    d = BestOfNSection()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="embedded:smollm2-135m-instruct", help="model spec (tiny:causal-lm: quick)")
    p.add_argument("--prompts", type=int, default=32, help="w2s_train prompts of testbed:hh")
    p.add_argument("--n", type=int, default=d.n)
    p.add_argument("--prompts-per-batch", type=int, default=d.prompts_per_batch)
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3, help="timed runs of each side, alternating")
    p.add_argument("--check-greedy", action="store_true", help="also compare greedy texts of both sides")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's own, one per core)")
    a = p.parse_args()

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)

    from w2s_trl.data import SPLITS, load_source, split_rows
    from w2s_trl.models import load_causal_lm, load_tokenizer
    from w2s_trl.recipe import SplitFractions
    from w2s_trl.scoring import render

    cfg = BestOfNSection(n=a.n, prompts_per_batch=a.prompts_per_batch, max_new_tokens=a.max_new_tokens,
                         temperature=a.temperature, top_p=a.top_p)  # fmt: skip
    rows = split_rows(load_source("testbed:hh", max(200, 4 * a.prompts), 0).rows, SplitFractions().model_dump(),
                      {s: None for s in SPLITS})["w2s_train"][: a.prompts]  # fmt: skip
    model, tok = load_causal_lm(a.model), load_tokenizer(a.model)
    model.eval()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    lengths = [len(tok(render(tok, r["prompt"], add_generation_prompt=True), add_special_tokens=False)["input_ids"])
               for r in rows]  # fmt: skip
    print(f"device: {device}; torch {torch.__version__}; model {a.model} ({next(model.parameters()).dtype}); "
          f"{len(rows)} prompts (prompt tokens {min(lengths)}-{max(lengths)}) x n={cfg.n}; max_new_tokens "
          f"{cfg.max_new_tokens}, temperature {cfg.temperature}, top_p {cfg.top_p}; batched: {cfg.prompts_per_batch} "
          f"prompts x {cfg.n} = {cfg.prompts_per_batch * cfg.n} sequences per generate call")  # fmt: skip

    warm = rows[: min(len(rows), cfg.prompts_per_batch)]
    run_batched(model, tok, warm, cfg, a.seed)  # warm-up, uncounted (allocator, kernels)
    run_plain_batched(model, tok, warm, cfg, a.seed)
    run_single(model, tok, warm[:2], cfg, a.seed)
    samples = len(rows) * cfg.n
    batched, plain, single, ratio, ratio_plain = [], [], [], [], []
    for _ in range(a.repeat):
        tb, out_b = timed(run_batched, model, tok, rows, cfg, a.seed)
        tp, _ = timed(run_plain_batched, model, tok, rows, cfg, a.seed)
        ts, out_s = timed(run_single, model, tok, rows, cfg, a.seed)
        batched.append(samples / tb)
        plain.append(samples / tp)
        single.append(samples / ts)
        ratio.append(ts / tb)
        ratio_plain.append(tp / tb)
    print(f"\n(a) batched, w2s-trl        : samples/s {spread(batched)}")
    print(f"(a0) batched, plain generate: samples/s {spread(plain)}")
    print(f"(b) one prompt per call     : samples/s {spread(single)}")
    print(f"ratio a/b (same repeat)     : {spread(ratio, '{:.2f}x')}   (issue target: >= 4x)")
    print(f"ratio a/a0 (same repeat)    : {spread(ratio_plain, '{:.2f}x')}   (the prompt read once, not n times)")
    print(f"mean sample length (tokens, last repeat): batched {mean_tokens(tok, out_b):.1f}, "
          f"single {mean_tokens(tok, out_s):.1f}")  # fmt: skip
    if a.check_greedy:
        check_greedy(model, tok, rows, cfg)
    else:
        print("\n(not checked: --check-greedy compares greedy texts of both sides; sampled texts cannot match)")


if __name__ == "__main__":
    main()
