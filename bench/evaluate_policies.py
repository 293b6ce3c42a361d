"""The evaluate stage's policy scoring: adapters kept unmerged (PEFT, one active at a time) versus merged into the
base for scoring (the project's), and bf16 autocast against fp32, on a finished run's adapters and `test` pairs.

    python bench/evaluate_policies.py [--run runs/dpo_weak_rm] [--pairs 150] [--repeat 2]

Sides, each scoring chosen and rejected of every pair with the base and each adapter (student, ceiling):
(a) unmerged: `PeftModel` with the adapters loaded side by side, `set_adapter` per policy: every linear layer runs
    its LoRA branch beside the base weight (what the stage did before).
(b) merged: `w2s_trl.evaluation.policy_logprobs` (fp32): each adapter merged into the base weights for its pass,
    the base restored exactly after it.
(c) b under bf16 autocast (`evaluate.precision: bfloat16`).
Reports seconds per side (median [min, max]), max |log-prob difference| of b and c against a, and how many DPO
implicit-reward margins (the primary rule: policy minus base) change sign under c. b must agree with a within
LOGP_TOLERANCE (exit 1 otherwise): merging changes the order of float additions, not the maths.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
REPO = Path(__file__).resolve().parent.parent
LOGP_TOLERANCE = 1e-3  # nats per sequence; fp32 merged vs unmerged measured ~1e-4


def unmerged(recipe, rows, adapters, max_length):
    """(a): the former stage code, adapters side by side."""
    from peft import PeftModel

    from w2s_trl.align import load_strong_base
    from w2s_trl.scoring import response_logprobs

    base, tok = load_strong_base(recipe)
    prompts, responses = [r["prompt"] for r in rows] * 2, [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    partners = responses[len(rows) :] + responses[: len(rows)]
    score = lambda m, name: response_logprobs(m, tok, prompts, responses, recipe.evaluate.batch_size, desc=name,  # noqa: E731
                                              max_length=max_length, partners=partners)[0]  # fmt: skip
    out, model = {"base": score(base, "base")}, None
    for i, (name, path) in enumerate(adapters.items()):
        if model is None:
            model = PeftModel.from_pretrained(base, str(path), adapter_name=f"adapter_{i}")
        else:
            model.load_adapter(str(path), adapter_name=f"adapter_{i}")
        model.set_adapter(f"adapter_{i}")
        out[name] = score(model, name)
    return out


def merged(recipe, rows, adapters, max_length, precision: str):
    """(b) / (c): the stage's own function."""
    from w2s_trl.evaluation import policy_logprobs

    r = recipe.model_copy(deep=True)
    r.evaluate.precision = precision
    logps = policy_logprobs(r, rows, adapters, True, max_length)
    return {name: lp["chosen"][0] + lp["rejected"][0] for name, lp in logps.items()}


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}, {max(values):.1f}]"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default=str(REPO / "runs" / "dpo_weak_rm"), help="a finished run of a DPO recipe")
    p.add_argument("--pairs", type=int, default=150)
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()

    import torch

    from w2s_trl.recipe import load_recipe

    run = Path(a.run)
    recipe = load_recipe(run / "recipe.resolved.yaml", ["tracking.report_to=[]"])
    rows = [json.loads(line) for line in (run / "data" / "test.jsonl").open()][: a.pairs]
    adapters = {name: run / name / "adapter" for name in ("student", "ceiling") if (run / name / "adapter").is_dir()}
    max_length = json.loads((run / "data" / "stage.json").read_text())["max_length"]["strong"]  # as the stage cuts
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device}; {len(rows)} test pairs of {run}; base + {', '.join(adapters)}; max_length {max_length}; "
          f"{a.repeat} runs per side, alternating", flush=True)  # fmt: skip
    sides = {"a: unmerged, fp32": lambda: unmerged(recipe, rows, adapters, max_length),
             "b: merged, fp32": lambda: merged(recipe, rows, adapters, max_length, "float32"),
             "c: merged, bf16": lambda: merged(recipe, rows, adapters, max_length, "bfloat16")}
    times: dict[str, list[float]] = {name: [] for name in sides}
    logps: dict[str, dict] = {}
    for i in range(a.repeat):
        for name, side in sides.items():
            start = time.perf_counter()
            logps[name] = side()
            times[name].append(time.perf_counter() - start)
            print(f"  run {i + 1} {name}: {times[name][-1]:.1f} s", flush=True)
    ref = logps["a: unmerged, fp32"]
    n = len(rows)

    def implicit(lp, name):  # (pi_c - base_c) - (pi_r - base_r) per pair
        return [(lp[name][j] - lp["base"][j]) - (lp[name][n + j] - lp["base"][n + j]) for j in range(n)]

    print(f"\n{'side':<20} {'seconds':>20} {'vs a':>7} {'max |dlogp| vs a':>18} {'implicit margins flipped vs a':>31}")
    for name in sides:
        diff = max(abs(x - y) for m in ref for x, y in zip(logps[name][m], ref[m]))
        flips = sum(sum((x > 0) != (y > 0) for x, y in zip(implicit(logps[name], m), implicit(ref, m))) for m in adapters)
        ratio = statistics.median(times["a: unmerged, fp32"]) / statistics.median(times[name])
        print(f"{name:<20} {spread(times[name]):>20} {ratio:>6.2f}x {diff:>18.2e} {f'{flips} / {n * len(adapters)}':>31}")
    diff_b = max(abs(x - y) for m in ref for x, y in zip(logps["b: merged, fp32"][m], ref[m]))
    print(f"\nsame maths: max |logp(b) - logp(a)| = {diff_b:.2e} (tolerance {LOGP_TOLERANCE:g})")
    return 0 if diff_b <= LOGP_TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
