"""Stage `evaluate`: ground-truth accuracy on `test` of the weak RM, the student and the ceiling, PGR and the
knowledge-region cells (SCIENCE.md 1, 2, 6).

Policies are scored by their DPO implicit reward against the reference (base model, adapter disabled):
  margin = beta * ((logp_pi(y+) - logp_ref(y+)) - (logp_pi(y-) - logp_ref(y-))), correct = margin > 0.
"""

from __future__ import annotations

from pathlib import Path

from w2s_trl.metrics import knowledge_regions, pair_accuracy, pair_correct, pgr
from w2s_trl.recipe import Recipe


def implicit_margins(beta: float, pi_c, pi_r, ref_c, ref_r) -> list[float]:
    return [beta * ((pc - rc) - (pr - rr)) for pc, pr, rc, rr in zip(pi_c, pi_r, ref_c, ref_r)]


def policy_margins(recipe: Recipe, rows: list[dict], adapters: dict[str, Path]) -> dict[str, list[float]]:
    """Implicit-reward margins on `rows` for each named adapter, sharing one base model and one reference pass."""
    from peft import PeftModel

    from w2s_trl.align import load_strong_base
    from w2s_trl.scoring import response_logprobs

    base, tok = load_strong_base(recipe)
    bs = recipe.evaluate.batch_size
    prompts, ids = [r["prompt"] for r in rows], [r["id"] for r in rows]

    def logps(model, label):
        c, _ = response_logprobs(model, tok, prompts, [r["chosen"] for r in rows], bs, ids, f"{label} chosen")
        r, _ = response_logprobs(model, tok, prompts, [r["rejected"] for r in rows], bs, ids, f"{label} rejected")
        return c, r

    ref_c, ref_r = logps(base, "reference")
    beta = float(recipe.align.args.get("beta", 0.1))
    out, model = {}, None
    for name, path in adapters.items():
        if model is None:
            model = PeftModel.from_pretrained(base, str(path), adapter_name=name)
        else:
            model.load_adapter(str(path), adapter_name=name)
        model.set_adapter(name)
        pi_c, pi_r = logps(model, name)
        out[name] = implicit_margins(beta, pi_c, pi_r, ref_c, ref_r)
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
