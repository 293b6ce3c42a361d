"""Pilot that calibrates testbed:hh strata: per objective and stratum, the weak ceiling (MiniLM reward model trained on
weak_train ground truth), the strong model before alignment (base) and the strong ceiling (SmolLM2 + LoRA, DPO on
w2s_train ground truth), with paired bootstrap 95% intervals and the weak-strong difference per stratum.

    python bench/testbed_pilot.py recipes/dpo_weak_rm.yaml [key.path=value ...]

Runs the recipe's data and weak stages (cached in runs/<name>/), then trains only the ceiling (no student) and
scores test. A stratum meant to separate weak and strong should show the weak near 0.5 and the ceiling clearly above.
Run by hand; takes as long as the recipe's weak + ceiling + evaluate stages.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str]) -> int:
    from w2s_trl.align import adapter_dir, train_policy
    from w2s_trl.data import read_jsonl
    from w2s_trl.evaluation import policy_logprobs, policy_margins, summarize, trainer_beta
    from w2s_trl.pipeline import run_pipeline
    from w2s_trl.recipe import load_recipe
    from w2s_trl.report import fmt_interval
    from w2s_trl.rewards import SourceContext, build_reward_source
    from w2s_trl.rundir import RunDir

    recipe = load_recipe(argv[0], [*argv[1:], "tracking.report_to=[]", "evaluate.region_reference=base"])
    root = run_pipeline(recipe, stop_after="weak")
    rd = RunDir(root)
    max_length = rd.record("data")["max_length"]
    data = lambda s: read_jsonl(root / "data" / f"{s}.jsonl")  # noqa: E731
    t0 = time.perf_counter()
    ceiling = rd.run("pilot_ceiling", {"data": rd.record("data")["fingerprint"], "strong": recipe.strong.model_dump(),
                                       "align": recipe.align.model_dump(), "seed": recipe.run.seed},
                     lambda work: train_policy(recipe, data("w2s_train"), work, "pilot/ceiling", max_length["strong"],
                                               "ceiling"))  # fmt: skip
    t_ceiling = time.perf_counter() - t0
    test = data("test")
    t0 = time.perf_counter()
    context = SourceContext({"weak": str(root / "weak" / "model")}, {"weak": max_length["weak"]})
    chosen, rejected = build_reward_source(recipe.weak.reward, context).score_pairs(test)
    logps = policy_logprobs(recipe, test, {"ceiling": adapter_dir(ceiling)}, True, max_length["strong"])
    margins = policy_margins(recipe.align.trainer, trainer_beta(recipe), logps, True)
    for rule in margins.values():
        rule["weak"] = [c - x for c, x in zip(chosen, rejected)]
    metrics, _ = summarize(test, margins, "base", recipe.evaluate.bootstrap, recipe.evaluate.bootstrap_seed)
    t_eval = time.perf_counter() - t0
    (root / "pilot.json").write_text(json.dumps(metrics, indent=2))

    # per stratum: weak vs ceiling (the trainer's rule) and base (reference-free), and the paired difference
    import numpy as np

    from w2s_trl.metrics import bootstrap_indices, interval, pair_correct, resampled_mean

    idx = bootstrap_indices(len(test), recipe.evaluate.bootstrap, recipe.evaluate.bootstrap_seed)
    weak_c = pair_correct(margins["primary"]["weak"])
    ceil_c = pair_correct(margins["primary"]["ceiling"])
    ceil_free = pair_correct(margins["reference_free"]["ceiling"])
    base_c = pair_correct(margins["reference_free"]["base"])
    print(f"\n{'objective/stratum':<28} {'n':>4}  {'weak':>21}  {'base (ref-free)':>21}  {'ceiling':>21}  "
          f"{'ceiling ref-free':>21}  {'ceiling - weak':>24}")  # fmt: skip
    groups = [(f"{r['objective']}/{r['subtlety']}") for r in test]
    keys = sorted(set(groups)) + [f"{o}/all" for o in sorted({r["objective"] for r in test})]
    for key in keys:
        obj, stratum = key.split("/")
        mask = np.array([g == key or (stratum == "all" and g.startswith(obj + "/")) for g in groups])
        cells = [interval(float(c[mask].mean()), resampled_mean(c, idx, mask)) for c in (weak_c, base_c, ceil_c,
                                                                                           ceil_free)]  # fmt: skip
        diff = interval(float(ceil_c[mask].mean() - weak_c[mask].mean()),
                        resampled_mean(ceil_c, idx, mask) - resampled_mean(weak_c, idx, mask))  # fmt: skip
        print(f"{key:<28} {mask.sum():>4}  " + "  ".join(f"{fmt_interval(c):>21}" for c in cells)
              + f"  {fmt_interval(diff, signed=True):>24}")  # fmt: skip
    harmless = np.array([r["objective"] == "harmless" for r in test])
    cell = harmless & ~weak_c & ceil_c
    print(f"\nharmless test pairs in U_w & K_s (weak wrong, ceiling right): {int(cell.sum())} of {int(harmless.sum())}")
    print(f"time: ceiling training {t_ceiling:.0f} s, evaluation {t_eval:.0f} s; max_length {max_length}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
