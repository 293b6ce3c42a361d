"""Stage `evaluate`: ground-truth accuracy on `test` of the reward source ("weak"), the student, the ceiling and
optionally the base policy; PGR and the knowledge-region cells (SCIENCE.md 1, 2, 6).

Policies are scored by their trainer's implicit reward, correct = margin > 0 (ties wrong):
  dpo  : beta * ((logp_pi(y+) - logp_ref(y+)) - (logp_pi(y-) - logp_ref(y-))), the reference = base, adapter off;
  simpo: beta * (mean_logp_pi(y+) - mean_logp_pi(y-)) (reference-free; gamma shifts every margin alike, so it is left
         out of the ordering).
The base policy (before alignment) gets the same reference-free score: beta * (logp(y+) - logp(y-)) for dpo, the
per-token mean for simpo.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from w2s_trl.metrics import knowledge_regions, pair_accuracy, pair_correct, pgr
from w2s_trl.recipe import Recipe, trl_config_class


def implicit_margins(beta: float, pi_c, pi_r, ref_c, ref_r) -> list[float]:
    return [beta * ((pc - rc) - (pr - rr)) for pc, pr, rc, rr in zip(pi_c, pi_r, ref_c, ref_r)]


def mean_margins(beta: float, sum_c, n_c, sum_r, n_r) -> list[float]:
    return [beta * (sc / nc - sr / nr) for sc, nc, sr, nr in zip(sum_c, n_c, sum_r, n_r)]


def trainer_beta(recipe: Recipe) -> float:
    args = recipe.align.trl_args()
    if "beta" in args:
        return float(args["beta"])
    fields = {f.name: f.default for f in dataclasses.fields(trl_config_class(recipe.align.trainer))}
    return float(fields["beta"])


def policy_margins(recipe: Recipe, rows: list[dict], adapters: dict[str, Path], include_base: bool = False
                   ) -> dict[str, list[float]]:  # fmt: skip
    """Margins on `rows` for each named adapter (and the base), sharing one base model and one base pass."""
    from peft import PeftModel

    from w2s_trl.align import load_strong_base
    from w2s_trl.scoring import response_logprobs

    base, tok = load_strong_base(recipe)
    bs = recipe.evaluate.batch_size
    prompts, ids = [r["prompt"] for r in rows], [r["id"] for r in rows]

    responses = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]

    def logps(model, label):  # chosen and rejected in one call: each prompt context runs once for both
        sums, counts = response_logprobs(model, tok, prompts + prompts, responses, bs, ids + ids, label)
        n = len(rows)
        return (sums[:n], counts[:n]), (sums[n:], counts[n:])

    beta, simpo = trainer_beta(recipe), recipe.align.trainer == "simpo"
    out: dict[str, list[float]] = {}
    ref = logps(base, "base") if include_base or not simpo else None
    if include_base:
        (sc, nc), (sr, nr) = ref
        out["base"] = mean_margins(beta, sc, nc, sr, nr) if simpo else [beta * (c - x) for c, x in zip(sc, sr)]
    model = None
    for name, path in adapters.items():
        if model is None:
            model = PeftModel.from_pretrained(base, str(path), adapter_name=name)
        else:
            model.load_adapter(str(path), adapter_name=name)
        model.set_adapter(name)
        (sc, nc), (sr, nr) = logps(model, name)
        out[name] = mean_margins(beta, sc, nc, sr, nr) if simpo else implicit_margins(beta, sc, sr, ref[0][0], ref[1][0])
    return out


def summarize(rows: list[dict], margins: dict[str, list[float]], reference: str) -> tuple[dict, list[dict]]:
    """metrics (accuracies, PGR, regions) and per-example predictions from per-model margins on `test`."""
    correct = {name: pair_correct(m) for name, m in margins.items()}
    accuracy = {name: pair_accuracy(m) for name, m in margins.items()}
    accuracy.setdefault("ceiling", None)
    value, note = pgr(accuracy["student"], accuracy["weak"], accuracy["ceiling"])
    regions = knowledge_regions(correct["weak"], correct[reference], correct)
    metrics = {
        "accuracy": accuracy,
        "pgr": value,
        "pgr_note": note,
        "regions": regions,
        "region_reference": reference,
        "n_test": len(rows),
        "accuracy_by_objective": _by_key(rows, correct, "objective"),
        "accuracy_by_subtlety": _by_key(rows, correct, "subtlety"),
    }
    predictions = [
        {
            "id": row["id"], "objective": row["objective"], "category": row["category"], "subtlety": row["subtlety"],
            **{f"{name}_margin": margins[name][i] for name in margins},
            **{f"{name}_correct": bool(correct[name][i]) for name in margins},
        }  # fmt: skip
        for i, row in enumerate(rows)
    ]
    return metrics, predictions


def _by_key(rows: list[dict], correct: dict, key: str) -> dict[str, dict]:
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(str(row[key]), []).append(i)
    return {
        g: {"n": len(idx), **{name: float(c[idx].mean()) for name, c in correct.items()}} for g, idx in sorted(groups.items())
    }
