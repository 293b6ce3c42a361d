"""Can testbed:hh be solved from surface tells? Shortcut baselines next to the weak reward model, per objective and
stratum, on the recipe's own splits (trained on weak_train, scored on test, like the weak RM).

    python bench/testbed_shortcuts.py recipes/dpo_weak_rm.yaml [key.path=value ...]

Baselines (pairwise: a pair is right when the model scores chosen above rejected; ties count as wrong):
  response-only BoW   logistic regression on unigram + bigram counts of the final response alone
  longer wins         the longer response is chosen
  smaller number      the response with the smaller first number is chosen (helpful rows with numbers)
  prompt x response   logistic regression on hashed (prompt word, response word) pairs plus response words: a
                      bag-of-words model that CAN read the prompt (linear BoW on prompt + response cannot: prompt
                      features cancel in a pair)
  weak RM             the recipe's weak reward model (runs the data and weak stages, cached in runs/<name>/)
Every stratum meant to need the prompt (testbed.PROMPT_STRATA) must sit at chance for the response-only rules; the
script exits 1 when one does not (its 95% interval lies above 0.5; below 0.5 means ties, which count as wrong:
equal-length answers, numbers never seen in training). Run by hand.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def prompt_text(row: dict) -> str:
    return " ".join(m["content"] for m in row["prompt"])


def response(row: dict, side: str) -> str:
    return row[side][-1]["content"]


def response_features(text: str) -> list[str]:
    ws = words(text)
    return [f"r:{w}" for w in ws] + [f"r2:{a}_{b}" for a, b in zip(ws, ws[1:])]


def cross_features(prompt: str, text: str) -> list[str]:
    ps, rs = set(words(prompt)), set(words(text))
    return [f"x:{p}|{r}" for p in ps for r in rs] + response_features(text)


def pairwise_logreg(train: list[dict], test: list[dict], featurize) -> np.ndarray:
    """Fit w on phi(chosen) - phi(rejected) (both orders), score test pairs by the sign of w . (phi(c) - phi(r))."""
    from sklearn.feature_extraction import FeatureHasher
    from sklearn.linear_model import LogisticRegression

    hasher = FeatureHasher(n_features=2**18, input_type="string", alternate_sign=False)

    def diffs(rows):
        return hasher.transform(featurize(r, "chosen") for r in rows) - hasher.transform(featurize(r, "rejected") for r in rows)

    x = diffs(train)
    model = LogisticRegression(C=1.0, max_iter=5000, fit_intercept=False)
    from scipy.sparse import vstack

    model.fit(vstack([x, -x]), np.r_[np.ones(x.shape[0]), np.zeros(x.shape[0])])
    return model.decision_function(diffs(test))


def first_number(text: str) -> float | None:
    m = re.search(r"-?\d+(?:\.\d+)?", text)
    return float(m.group()) if m else None


def main(argv: list[str]) -> int:
    from w2s_trl.data import read_jsonl
    from w2s_trl.metrics import bootstrap_indices, interval, pair_correct, resampled_mean
    from w2s_trl.pipeline import run_pipeline
    from w2s_trl.recipe import load_recipe
    from w2s_trl.report import fmt_interval
    from w2s_trl.rewards import SourceContext, build_reward_source
    from w2s_trl.rundir import RunDir
    from w2s_trl.testbed import PROMPT_STRATA

    recipe = load_recipe(argv[0] if argv else "recipes/dpo_weak_rm.yaml", [*argv[1:], "tracking.report_to=[]"])
    root = run_pipeline(recipe, stop_after="weak")
    train, test = (read_jsonl(root / "data" / f"{s}.jsonl") for s in ("weak_train", "test"))
    margins = {
        "response-only BoW": pairwise_logreg(train, test, lambda r, side: response_features(response(r, side))),
        "longer wins": np.array([len(response(r, "chosen")) - len(response(r, "rejected")) for r in test], float),
    }
    small = []
    for r in test:
        a, b = first_number(response(r, "chosen")), first_number(response(r, "rejected"))
        small.append(np.nan if a is None or b is None or a == b else float(b - a))
    margins["smaller number"] = np.array(small)
    margins["prompt x response BoW"] = pairwise_logreg(
        train, test, lambda r, side: cross_features(prompt_text(r), response(r, side)))
    max_length = RunDir(root).record("data")["max_length"].get("weak")
    chosen, rejected = build_reward_source(recipe.weak.reward, SourceContext({"weak": str(root / "weak" / "model")}, {"weak": max_length})).score_pairs(test)
    margins["weak RM"] = np.array([c - x for c, x in zip(chosen, rejected)])

    idx = bootstrap_indices(len(test), recipe.evaluate.bootstrap, recipe.evaluate.bootstrap_seed)
    keys = sorted({(r["objective"], r["subtlety"]) for r in test})
    names = list(margins)
    print(f"\nGround-truth pair accuracy on test ({len(test)} pairs), trained on weak_train ({len(train)} pairs); "
          "95% paired bootstrap intervals. '—': the rule does not apply (no numbers).\n")  # fmt: skip
    print("| objective | stratum | n | " + " | ".join(names) + " |")
    print("|:---|:---|---:|" + "---:|" * len(names))
    failures = []
    for objective, stratum in keys + [(o, "all") for o in sorted({k[0] for k in keys})]:
        mask = np.array([r["objective"] == objective and (stratum == "all" or r["subtlety"] == stratum) for r in test])
        cells = []
        for name in names:
            m = margins[name]
            applies = mask & ~np.isnan(m)
            if applies.sum() == 0:
                cells.append("—")
                continue
            correct = pair_correct(np.nan_to_num(m, nan=0.0))
            stat = interval(float(correct[applies].mean()), resampled_mean(correct, idx, applies))
            cells.append(fmt_interval(stat) + ("" if applies.sum() == mask.sum() else f" (n={applies.sum()})"))
            response_only = name in ("response-only BoW", "longer wins", "smaller number")
            # a shortcut scores ABOVE chance; below it means ties (equal lengths, unseen numbers), counted wrong
            if response_only and stratum in PROMPT_STRATA and stat["ci"] and stat["ci"][0] > 0.5:
                failures.append(f"{objective}/{stratum}: {name} {fmt_interval(stat)}")
        print(f"| {objective} | {stratum} | {mask.sum()} | " + " | ".join(cells) + " |")
    if failures:
        print("\nNOT AT CHANCE on strata meant to need the prompt:\n  " + "\n  ".join(failures))
        return 1
    print("\nEvery stratum meant to need the prompt sits at chance for the response-only rules.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
