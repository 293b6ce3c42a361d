"""Density-ratio scoring of the same pairs: w2s-trl (batched, length-sorted, padded) versus a naive loop (one example
at a time, each model called separately, full logits).

    python bench/score_throughput.py [--spec reward/dr_personas_smollm2.yaml] [--pairs 256] [--repeat 2]

Both run in fp32 on the same pairs from testbed:hh; prints pairs/s for both, the ratio, and the largest absolute
score difference.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
REPO = Path(__file__).resolve().parent.parent


def naive_logp(model, tok, prompt, completion) -> tuple[float, int]:
    """One sequence, no batching, full-vocabulary logits at every position."""
    import torch

    from w2s_trl.scoring import render

    prompt_ids = tok(render(tok, prompt, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
    ids = tok(render(tok, prompt + completion), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids], device=model.device)).logits[0].float(), -1)
    return sum(logp[t - 1, ids[t]].item() for t in range(len(prompt_ids), len(ids))), len(ids) - len(prompt_ids)


def naive_scores(source, prompts, completions) -> list[float]:
    from w2s_trl.rewards.density_ratio import density_ratio

    out = []
    for p, c in zip(prompts, completions):
        sides = {}
        for side in ("strong", "weak"):
            model, tok = (source.strong, source.strong_tok) if side == "strong" else (source.weak, source.weak_tok)
            (ctx,) = source.contexts([p], side)
            with source.side_context[side]():
                sides[side] = naive_logp(model, tok, ctx, c)
        (s, ns), (w, nw) = sides["strong"], sides["weak"]
        out += density_ratio([s], [ns], [w], [nw], source.spec.normalize)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--spec", default=str(REPO / "reward" / "dr_personas_smollm2.yaml"))
    p.add_argument("--pairs", type=int, default=256)
    p.add_argument("--repeat", type=int, default=1, help="runs of each side, alternating; the best counts")
    p.add_argument("--batch-size", type=int, help="rows per batch (default: the spec's score_batch_size)")
    a = p.parse_args()

    import torch

    from w2s_trl.data import SPLITS, load_source, split_rows
    from w2s_trl.recipe import SplitFractions, load_reward_spec
    from w2s_trl.rewards import DensityRatioSource

    spec = load_reward_spec(a.spec)
    spec.precision = "float32"
    spec.score_batch_size = a.batch_size or spec.score_batch_size
    source = DensityRatioSource(spec)
    rows = split_rows(load_source("testbed:hh", 2000, 0, ["helpful", "harmless"]).rows, SplitFractions().model_dump(),
                      {s: None for s in SPLITS})["test"][: a.pairs]  # fmt: skip
    prompts = [r["prompt"] for r in rows] * 2
    completions = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device}; spec {Path(a.spec).name}; {len(rows)} pairs "
          f"({len(completions)} responses), batch {spec.score_batch_size}")  # fmt: skip

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    source(prompts[:8], completions[:8])  # warm-up (kernels, allocator) for both paths
    naive_scores(source, prompts[:2], completions[:2])

    def timed(score):
        sync()
        start = time.perf_counter()
        out = score(prompts, completions)
        sync()
        return time.perf_counter() - start, out

    times = {"batched": [], "naive": []}
    for _ in range(a.repeat):  # the two sides alternate, so a slow spell of the machine hits both
        t, batched = timed(source)
        times["batched"].append(t)
        t, naive = timed(lambda p, c: naive_scores(source, p, c))
        times["naive"].append(t)

    diff = max(abs(x - y) for x, y in zip(batched, naive))
    print()
    t_batched, t_naive = min(times["batched"]), min(times["naive"])
    best = f" (best of {a.repeat})" if a.repeat > 1 else ""
    for label, side, t in (("w2s-trl batched", "batched", t_batched), ("naive loop     ", "naive", t_naive)):
        runs = ", ".join(f"{x:.1f}" for x in times[side])
        print(f"{label}: {t:8.1f} s = {len(rows) / t:6.2f} pairs/s{best}  runs: {runs} s")
    print(f"speed-up = {t_naive / t_batched:.2f}x   largest |score difference| = {diff:.2e} (fp32)")

if __name__ == "__main__":
    main()
