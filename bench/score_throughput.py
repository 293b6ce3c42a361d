"""Density-ratio scoring of preference pairs (SCIENCE.md 3: r(x, y) = logp_S(y | c_S(x)) - logp_W(y | c_W(x))),
three ways on the same rows, all fp32, all scoring the identical token sequences:

  naive     a loop as a careful user writes it: one (prompt, response) at a time, each side (S, W) called
            separately. Per example and side: the router picks the domain, `source.contexts` builds c(x) (persona,
            criteria, exemplars), `scoring.fit_prompts` cuts it to the model's limit with the pair's other response
            as partner (exactly as the pipeline does), `scoring.encode_prompt_response` gives the token ids; one
            unpadded forward of the whole sequence (`model(ids)`, logits at every position), `log_softmax` over the
            response positions only, `gather` at the target tokens, `.sum()` on the tensor and one `.item()` per
            sequence. No batching, no padding, no cache, nothing shared.
  unshared  the project's batched scorer with its prefix sharing off: `scoring.response_logprobs(...,
            share_prefix=False)` called per side with the same contexts, truncation (`max_length` = the model's
            limit, `partners`) and batch size as `DensityRatioSource.side_logprobs`. Rows sorted by length, batches
            of `score_batch_size`, left padded, every row runs its full prompt + response (no prompt or context
            computation is shared between rows, responses or batches); only the response positions go through the
            LM head (`logits_to_keep`).
  full      the project's scorer as the pipeline uses it: `DensityRatioSource.score_pairs(rows)` (prefix sharing
            on: a batch's common context runs once as a KV cache, each distinct prompt once, each response once, in
            length chunks; see `scoring._shared_prefix_pass`).

Two row sets: `testbed` (testbed:hh test split, short prompts) and `long` (testbed:hh generated with
`history_turns=(6, 14)`: multi-turn prompts of ~300-800 tokens). For each set the prompt-token p50/p95 (x alone
and the scored context c_S(x)) is printed. The sides alternate within each repeat (the order rotates), so a slow
spell of the machine hits all of them; pairs/s is reported as median and min-max over `--repeat` runs, the ratios
full/naive and full/unshared per repeat (paired) as median and min-max. Every score of every run is compared
between every two sides: largest |difference| printed, exit 1 when any reaches 1e-4.

    python bench/score_throughput.py [--spec reward/dr_personas_smollm2.yaml] [--set testbed|long|both]
                                     [--pairs 256] [--repeat 3] [--batch-size N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
REPO = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-4
SIDES = ("naive", "unshared", "full")
LONG_HISTORY = (6, 14)


# ----------------------------------------------------------------------------------------------------------------------
# The three sides: each takes preference rows and returns r(x, chosen) + r(x, rejected) (one list, 2 * len(rows))


def naive_logp(model, tok, context, response, partner, name) -> tuple[float, int] | tuple[None, None]:
    """logp(response | context) of one unpadded sequence, the context cut as the pipeline cuts it."""
    import torch

    from w2s_trl.models import model_limit
    from w2s_trl.scoring import encode_prompt_response, fit_prompts

    (fitted,), kept = fit_prompts(tok, [context], [response], model_limit(model), [name], None, causal=True,
                                  partners=[partner])  # fmt: skip
    if not kept:
        return None, None
    ids, n_prompt = encode_prompt_response(tok, fitted, response, name)
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=model.device)).logits[0]
        logp = torch.log_softmax(logits[n_prompt - 1 : -1].float(), -1)  # position t-1 predicts token t
        targets = torch.tensor(ids[n_prompt:], device=logp.device)
        total = logp.gather(-1, targets[:, None]).sum().item()
    return total, len(ids) - n_prompt


def naive_scores(source, rows) -> list[float | None]:
    from w2s_trl.rewards.density_ratio import density_ratio

    work = [(r, "chosen", "rejected") for r in rows] + [(r, "rejected", "chosen") for r in rows]
    out = []
    for row, key, other in work:
        (domain,) = source.router.route([row["prompt"]])
        logp = {}
        for side in ("strong", "weak"):
            model, tok = (source.strong, source.strong_tok) if side == "strong" else (source.weak, source.weak_tok)
            with source.side_context[side]():
                (context,) = source.contexts([row["prompt"]], side, [domain])
                logp[side] = naive_logp(model, tok, context, row[key], row[other], f"{row['id']}/{key}")
        (s, ns), (w, nw) = logp["strong"], logp["weak"]
        out += density_ratio([s], [ns], [w], [nw], source.spec.normalize)
    return out


def unshared_scores(source, rows) -> list[float | None]:
    """`DensityRatioSource.score` with `response_logprobs(share_prefix=False)` (everything else as the source)."""
    from w2s_trl.models import model_limit
    from w2s_trl.rewards.density_ratio import density_ratio
    from w2s_trl.scoring import response_logprobs

    prompts = [r["prompt"] for r in rows] * 2
    completions = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    partners = [r["rejected"] for r in rows] + [r["chosen"] for r in rows]
    ids = [f"{r['id']}/chosen" for r in rows] + [f"{r['id']}/rejected" for r in rows]
    domains = source.router.route(prompts)
    logp = {}
    for side in ("strong", "weak"):
        model, tok = (source.strong, source.strong_tok) if side == "strong" else (source.weak, source.weak_tok)
        with source.side_context[side]():
            contexts = source.contexts(prompts, side, domains)
            logp[side] = response_logprobs(model, tok, contexts, completions, source.spec.score_batch_size, ids=ids,
                                           desc=f"unshared ({side})", autocast_dtype=source.autocast,
                                           max_length=model_limit(model), partners=partners,
                                           share_prefix=False)  # fmt: skip
    (s_sum, s_n), (w_sum, w_n) = logp["strong"], logp["weak"]
    return density_ratio(s_sum, s_n, w_sum, w_n, source.spec.normalize)


def full_scores(source, rows) -> list[float | None]:
    chosen, rejected = source.score_pairs(rows)
    return list(chosen) + list(rejected)


SCORERS = {"naive": naive_scores, "unshared": unshared_scores, "full": full_scores}


# ----------------------------------------------------------------------------------------------------------------------
# Rows and lengths


def load_rows(which: str, pairs: int) -> list[dict]:
    from w2s_trl.data import SPLITS, load_source, split_rows
    from w2s_trl.recipe import SplitFractions, TestbedSection

    options = TestbedSection(history_turns=LONG_HISTORY).options() if which == "long" else None
    size = max(2000, 5 * pairs)  # the test split holds ~25% of the rows
    rows = load_source("testbed:hh", size, 0, ["helpful", "harmless"], testbed_options=options).rows
    test = split_rows(rows, SplitFractions().model_dump(), {s: None for s in SPLITS})["test"]
    if len(test) < pairs:
        sys.exit(f"only {len(test)} test pairs in the {which} set, {pairs} asked for")
    return test[:pairs]


def prompt_lengths(source, rows) -> tuple[dict, dict]:
    """Token percentiles (strong side's tokenizer) of the prompt x alone and of the scored context c_S(x)."""
    from w2s_trl.scoring import render
    from w2s_trl.truncation import percentiles

    tok = source.strong_tok

    def n(messages):
        return len(tok(render(tok, messages, add_generation_prompt=True), add_special_tokens=False)["input_ids"])

    prompts = [r["prompt"] for r in rows]
    return percentiles([n(p) for p in prompts]), percentiles([n(c) for c in source.contexts(prompts, "strong")])


# ----------------------------------------------------------------------------------------------------------------------
# One row set


def max_diff(a: list, b: list) -> float:
    """Largest |a - b|; inf when one side dropped a row that the other scored."""
    out = 0.0
    for x, y in zip(a, b, strict=True):
        if (x is None) != (y is None):
            return float("inf")
        if x is not None:
            out = max(out, abs(x - y))
    return out


def spread(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    return f"{med:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})" if len(values) > 1 else f"{med:{fmt}}"


def run_set(source, which: str, pairs: int, repeat: int, sync) -> dict:
    rows = load_rows(which, pairs)
    x, ctx = prompt_lengths(source, rows)
    print(f"\n== {which}: {len(rows)} pairs ({2 * len(rows)} responses x 2 sides); prompt tokens x: p50 {x['p50']}, "
          f"p95 {x['p95']}, max {x['max']}; scored context c_S(x): p50 {ctx['p50']}, p95 {ctx['p95']}",
          flush=True)  # fmt: skip

    for side in SIDES:  # warm-up (kernels, allocator, the tokenizer's caches) for every side, one pair
        SCORERS[side](source, rows[:1])

    times = {s: [] for s in SIDES}
    scores = {s: [] for s in SIDES}
    for r in range(repeat):
        order = SIDES[r % len(SIDES) :] + SIDES[: r % len(SIDES)]  # the sides alternate: each goes first in turn
        for side in order:
            sync()
            start = time.perf_counter()
            out = SCORERS[side](source, rows)
            sync()
            times[side].append(time.perf_counter() - start)
            scores[side].append(out)
            print(f"  run {r + 1}/{repeat} {side:8s} {times[side][-1]:8.1f} s", flush=True)

    diffs = {}
    for i, a in enumerate(SIDES):
        for b in SIDES[i + 1 :]:
            diffs[(a, b)] = max(max_diff(sa, sb) for sa in scores[a] for sb in scores[b])
    rates = {s: [len(rows) / t for t in times[s]] for s in SIDES}
    ratios = {
        "full/naive": [tn / tf for tn, tf in zip(times["naive"], times["full"])],
        "full/unshared": [tu / tf for tu, tf in zip(times["unshared"], times["full"])],
    }
    for side in SIDES:
        print(f"  {side:8s}: {spread(rates[side], '.2f')} pairs/s")
    for name, values in ratios.items():
        print(f"  {name}: {spread(values, '.2f')}x")
    for (a, b), d in diffs.items():
        flag = "" if d < TOLERANCE else f"   EXCEEDS {TOLERANCE:g}"
        print(f"  max |score {a} - {b}| = {d:.2e}{flag}")
    return {"rates": rates, "ratios": ratios, "diff": max(diffs.values()), "x": x, "ctx": ctx}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", default=str(REPO / "reward" / "dr_personas_smollm2.yaml"))
    p.add_argument("--set", default="both", choices=("testbed", "long", "both"), dest="which")
    p.add_argument("--pairs", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3, help="runs of each side, alternating; median and min-max")
    p.add_argument("--batch-size", type=int, help="rows per batch (default: the spec's score_batch_size)")
    a = p.parse_args()

    import torch

    from w2s_trl.recipe import load_reward_spec
    from w2s_trl.rewards import DensityRatioSource

    spec = load_reward_spec(a.spec)
    spec.precision = "float32"
    spec.score_batch_size = a.batch_size or spec.score_batch_size
    source = DensityRatioSource(spec)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device}; spec {Path(a.spec).name} (pair: {spec.pair}, normalize: {spec.normalize}); fp32; "
          f"batch {spec.score_batch_size}; {a.repeat} run(s) of each side")  # fmt: skip
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    sets = ("testbed", "long") if a.which == "both" else (a.which,)
    results = {s: run_set(source, s, a.pairs, a.repeat, sync) for s in sets}

    print(f"\nsummary (pairs/s and ratios: median (min-max) over {a.repeat} run(s); target on long: full/naive >= 5x, "
          "full/unshared >= 2x)")  # fmt: skip
    head = f"{'set':8s} {'prompt p50/p95':>14s} {'naive':>9s} {'unshared':>9s} {'full':>9s}"
    print(head + f" {'full/naive':>18s} {'full/unshared':>18s} {'max|diff|':>9s}")
    for name, r in results.items():
        rate = {s: f"{statistics.median(r['rates'][s]):9.2f}" for s in SIDES}
        print(f"{name:8s} {str(r['x']['p50']) + '/' + str(r['x']['p95']):>14s} {rate['naive']} {rate['unshared']} "
              f"{rate['full']} {spread(r['ratios']['full/naive'], '.2f') + 'x':>18s} "
              f"{spread(r['ratios']['full/unshared'], '.2f') + 'x':>18s} {r['diff']:9.1e}")  # fmt: skip
    worst = max(r["diff"] for r in results.values())
    if not worst < TOLERANCE:
        print(f"FAIL: sides disagree by {worst:.2e} >= {TOLERANCE:g}", file=sys.stderr)
        sys.exit(1)
    print(f"all sides agree: max |difference| {worst:.1e} < {TOLERANCE:g}")


if __name__ == "__main__":
    main()
