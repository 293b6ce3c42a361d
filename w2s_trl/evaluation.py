"""Stage `evaluate`: ground-truth pair accuracy on `test` of the reward source ("weak"), the strong model before
alignment ("base"), the student and the ceiling, with paired bootstrap 95% intervals on every number, PGR, the
knowledge-region cells and the flags of SCIENCE.md 1 (ties count as wrong, SCIENCE.md 6).

Two scoring rules for policies, each a margin m on a pair (correct = m > 0):
  trainer's own rule ("primary"):
    dpo  : beta * ((logp_pi(y+) - logp_ref(y+)) - (logp_pi(y-) - logp_ref(y-))), ref = base (adapter off). The base
           is its own reference (every margin 0), so it has no score under this rule;
    simpo: beta * (mean_logp_pi(y+) - mean_logp_pi(y-)) (reference-free; gamma shifts every margin alike).
  reference-free ("reference_free", dpo only; for simpo it is the primary rule):
           beta * (logp_pi(y+) - logp_pi(y-)), the same rule for base, student and ceiling, so the base compares.
Every policy scores a (prompt, response) with its prompt cut from the left to the training `max_length`; a test row
some model cannot score at all (response alone too long) is left out for every model, counted and named.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from w2s_trl.metrics import (
    CELLS,
    bootstrap_indices,
    cell_error_samples,
    interval,
    knowledge_regions,
    pair_correct,
    pgr,
    pgr_samples,
    resampled_mean,
)
from w2s_trl.recipe import Recipe, trl_config_class

MODEL_ORDER = ("weak", "base", "student", "ceiling")
DIFFERENCES = (("student", "weak"), ("ceiling", "weak"), ("ceiling", "student"), ("student", "base"),
               ("ceiling", "base"))  # fmt: skip
SMALL_CELL = 10


def _rowwise(fn, *columns) -> list[float | None]:
    """fn over rows; None where any input of the row is None (a row that could not be scored)."""
    return [None if any(v is None for v in row) else fn(*row) for row in zip(*columns)]


def implicit_margins(beta: float, pi_c, pi_r, ref_c, ref_r) -> list[float | None]:
    return _rowwise(lambda pc, pr, rc, rr: beta * ((pc - rc) - (pr - rr)), pi_c, pi_r, ref_c, ref_r)


def mean_margins(beta: float, sum_c, n_c, sum_r, n_r) -> list[float | None]:
    return _rowwise(lambda sc, nc, sr, nr: beta * (sc / nc - sr / nr), sum_c, n_c, sum_r, n_r)


def sum_margins(beta: float, sum_c, sum_r) -> list[float | None]:
    return _rowwise(lambda c, r: beta * (c - r), sum_c, sum_r)


def trainer_beta(recipe: Recipe) -> float:
    """beta of the trainer's scoring rule. Online RL (grpo, rloo, ppo) is scored like DPO with beta 1: the KL-regularised
    optimum pi ~ pi_ref exp(r / beta) makes log(pi / pi_ref) its implicit reward up to the scale, and accuracy reads
    only the sign of a margin (GRPO's default KL coefficient is 0, which would zero every margin)."""
    if recipe.align.online:
        return 1.0
    args = recipe.align.trl_args()
    if "beta" in args:
        return float(args["beta"])
    fields = {f.name: f.default for f in dataclasses.fields(trl_config_class(recipe.align.trainer))}
    return float(fields["beta"])


def policy_logprobs(recipe: Recipe, rows: list[dict], adapters: dict[str, Path], include_base: bool,
                    max_length: int | None, count=None) -> dict[str, dict]:  # fmt: skip
    """{model: {"chosen": (sums, counts), "rejected": (sums, counts)}} for the base (when asked for, or when it is
    the DPO reference) and each named adapter, sharing one base model. None where a row could not be scored."""
    from peft import PeftModel

    from w2s_trl.align import load_strong_base
    from w2s_trl.scoring import autocast_for, response_logprobs

    base, tok = load_strong_base(recipe)
    bs = recipe.evaluate.batch_size
    autocast = autocast_for(recipe.evaluate.precision)
    prompts, ids = [r["prompt"] for r in rows], [r["id"] for r in rows]
    responses = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    partners = responses[len(rows) :] + responses[: len(rows)]  # both sides of a pair get the same cut prompt

    def logps(model, label, counted=None):  # chosen and rejected in one call: each prompt context runs once for both
        sums, counts = response_logprobs(model, tok, prompts + prompts, responses, bs, ids + ids, label,
                                         autocast_dtype=autocast, max_length=max_length, count=counted,
                                         partners=partners)  # fmt: skip
        n = len(rows)
        return {"chosen": (sums[:n], counts[:n]), "rejected": (sums[n:], counts[n:])}

    out = {}
    counted = None  # every model cuts the same way (one tokenizer, one max_length): count the first pass only
    if include_base or recipe.align.trainer != "simpo":  # the implicit rule's reference
        out["base"], counted = logps(base, "base", count), count
    if not recipe.strong.quantization.quantized:  # merged: no LoRA branch beside each linear layer (~10% of a pass)
        pristine = {k: v.detach().clone() for k, v in base.state_dict().items()}
        for name, path in adapters.items():
            merged = PeftModel.from_pretrained(base, str(path)).merge_and_unload()  # merges into base's own weights
            out[name] = logps(merged, name, None if counted else count)
            counted = count
            base.load_state_dict(pristine)  # exactly the base again for the next adapter (unmerging rounds)
        return out
    model = None  # 4-bit weights cannot take a merge: adapters side by side, one active at a time
    for i, (name, path) in enumerate(adapters.items()):
        slot = f"adapter_{i}"  # PEFT adapter names are module names: no '.' (a variant may be called explicit-0.5)
        if model is None:
            model = PeftModel.from_pretrained(base, str(path), adapter_name=slot)
        else:
            model.load_adapter(str(path), adapter_name=slot)
        model.set_adapter(slot)
        out[name] = logps(model, name, None if counted else count)
        counted = count
    return out


def policy_margins(trainer: str, beta: float, logps: dict[str, dict], include_base: bool) -> dict[str, dict]:
    """{"primary": {model: margins}, "reference_free": {...}} (reference_free for every trainer but simpo, whose own
    rule is reference-free). dpo and the online trainers (grpo, rloo, ppo) share the implicit rule."""
    bc = br = None
    if "base" in logps:
        (bc, _), (br, _) = logps["base"]["chosen"], logps["base"]["rejected"]
    primary, free = {}, {}
    for name, lp in logps.items():
        (sc, nc), (sr, nr) = lp["chosen"], lp["rejected"]
        if trainer == "simpo":
            if name != "base" or include_base:
                primary[name] = mean_margins(beta, sc, nc, sr, nr)
            continue
        if name != "base":
            primary[name] = implicit_margins(beta, sc, sr, bc, br)
        if name != "base" or include_base:
            free[name] = sum_margins(beta, sc, sr)
    return {"primary": primary, **({"reference_free": free} if free else {})}


def scoreable(margins_by_rule: dict[str, dict[str, list]]) -> list[int]:
    """Indices of rows every model could score."""
    lists = [m for rule in margins_by_rule.values() for m in rule.values()]
    return [i for i in range(len(lists[0])) if all(m[i] is not None for m in lists)]


# ----------------------------------------------------------------------------------------------------------------------
# Summaries with intervals (pure: tested by value)


def score_block(rows: list[dict], margins: dict[str, list[float]], idx: np.ndarray,
                reference: tuple[str, str, np.ndarray] | None) -> dict:  # fmt: skip
    """Accuracies, differences, PGR, cells and per-objective / per-stratum accuracies under one scoring rule, each
    with its paired bootstrap interval (`idx`: the resamples, the same for every model). `reference`: (name, rule it
    was scored by, its per-pair correctness), which defines K_s/U_s; it may come from another rule's block (the base
    under DPO is scored reference-free only)."""
    models = [m for m in MODEL_ORDER if m in margins] + [m for m in margins if m not in MODEL_ORDER]
    correct = {m: pair_correct(margins[m]) for m in models}
    samples = {m: resampled_mean(correct[m], idx) for m in models}
    value = {m: float(correct[m].mean()) for m in models}
    block = {"accuracy": {m: interval(value[m], samples[m]) for m in models}, "differences": {}}
    for a, b in DIFFERENCES:
        if a in correct and b in correct:
            block["differences"][f"{a}-{b}"] = interval(value[a] - value[b], samples[a] - samples[b])
    if {"student", "weak", "ceiling"} <= set(correct):
        v, note = pgr(value["student"], value["weak"], value["ceiling"])
        block["pgr"] = {**interval(v, pgr_samples(samples["student"], samples["weak"], samples["ceiling"])),
                        "note": note}  # fmt: skip
    if reference is not None and "weak" in correct:
        name, rule, ref_correct = reference
        block["regions"] = regions_with_intervals(correct, ref_correct, idx)
        block["region_reference"], block["region_reference_rule"] = name, rule
    block["by_objective"] = by_group(rows, correct, idx)
    return block


def regions_with_intervals(correct: dict[str, np.ndarray], ref_correct: np.ndarray, idx: np.ndarray) -> dict:
    cells = knowledge_regions(correct["weak"], ref_correct, correct)
    w, s = correct["weak"], ref_correct
    masks = {"K_w&K_s": w & s, "K_w&U_s": w & ~s, "U_w&K_s": ~w & s, "U_w&U_s": ~w & ~s}
    for cell in CELLS:
        info = cells[cell]
        info["error"] = {m: interval(err, cell_error_samples(correct[m], masks[cell], idx))
                         for m, err in info["error"].items()}  # fmt: skip
    return cells


def by_group(rows: list[dict], correct: dict[str, np.ndarray], idx: np.ndarray) -> dict:
    """{objective: {n, accuracy: {model: interval}, strata: {stratum: {n, accuracy}}}}: the stratum (`subtlety`)
    within each objective."""

    def accuracies(mask):
        return {m: interval(float(c[mask].mean()), resampled_mean(c, idx, mask)) for m, c in correct.items()}

    objectives = np.asarray([str(r.get("objective", "unknown")) for r in rows])
    strata = np.asarray([str(r.get("subtlety", "unknown")) for r in rows])
    out = {}
    for obj in sorted(set(objectives)):
        in_obj = objectives == obj
        out[obj] = {"n": int(in_obj.sum()), "accuracy": accuracies(in_obj), "strata": {}}
        for stratum in sorted(set(strata[in_obj])):
            mask = in_obj & (strata == stratum)
            out[obj]["strata"][stratum] = {"n": int(mask.sum()), "accuracy": accuracies(mask)}
    return out


def flags(metrics: dict) -> list[str]:
    """What this run cannot tell, in words (SCIENCE.md 1)."""
    out = []
    primary = metrics["primary"]
    flag = weak_flag("The weak supervisor", primary["accuracy"].get("weak"))
    out += [flag] if flag else []
    rule = "reference_free" if "reference_free" in metrics else "primary"
    diff = metrics[rule]["differences"].get("ceiling-base")
    named = f" under {RULE_NAMES[rule]}" if "reference_free" in metrics else ""
    if diff and diff["ci"] and diff["ci"][0] <= 0:
        out.append(f"The ceiling does not beat base beyond its interval{named} (ceiling - base = {diff['value']:+.3f}, "
                   f"95% CI {_ci(diff)}): this run cannot tell whether training on ground truth helped at all.")  # fmt: skip
    elif diff is None and "ceiling" in primary["accuracy"]:
        out.append("The base model was not scored (evaluate.base: false): this run cannot tell whether the ceiling "
                   "beats the strong model before alignment.")  # fmt: skip
    for rule in ("primary", "reference_free"):
        p = metrics.get(rule, {}).get("pgr")
        if p is None:
            continue
        named = f" ({RULE_NAMES[rule]})" if rule != "primary" else ""
        if p["value"] is None:
            out.append(f"PGR{named} is {p['note']}.")
        elif p["ci"] and p["ci"][1] - p["ci"][0] > 1:
            out.append(f"The PGR{named} interval {_ci(p)} is wider than 1: this run cannot tell how much of the "
                       "weak-strong gap the student recovered.")  # fmt: skip
        if p.get("dropped_resamples"):
            out.append(f"PGR{named} was undefined in {p['dropped_resamples']:.1%} of the bootstrap resamples (ceiling "
                       "not above weak there); they are left out of its interval.")  # fmt: skip
    small = [c for c, info in primary.get("regions", {}).items() if info["small"]]
    if small:
        out.append(f"Cells with fewer than {SMALL_CELL} examples: {', '.join(small)}; their error rates are unstable.")
    return out


def weak_flag(who: str, stat: dict | None) -> str | None:
    """A weak supervisor whose accuracy interval includes or lies below 0.5, in words (SCIENCE.md 1)."""
    if not stat or not stat.get("ci"):
        return None
    if stat["ci"][1] < 0.5:
        return (f"{who}'s accuracy {stat['value']:.3f} (95% CI {_ci(stat)}) lies below 0.5: it is worse than chance, "
                "its labels systematically inverted on test.")  # fmt: skip
    if stat["ci"][0] <= 0.5:
        return (f"{who}'s accuracy {stat['value']:.3f} (95% CI {_ci(stat)}) includes 0.5: it is not distinguishable "
                "from chance, so its labels carry no signal this run can rely on.")  # fmt: skip
    return None


RULE_NAMES = {"primary": "the trainer's own scoring rule", "reference_free": "reference-free scoring"}


def _ci(stat: dict) -> str:
    return f"[{stat['ci'][0]:.3f}, {stat['ci'][1]:.3f}]" if stat.get("ci") else "[undefined]"


def summarize(rows: list[dict], margins_by_rule: dict[str, dict[str, list]], reference: str | None,
              resamples: int = 2000, seed: int = 0) -> tuple[dict, list[dict]]:  # fmt: skip
    """metrics and per-example predictions from per-model margins on `test`, under each scoring rule. The weak
    reward source's margins belong to every rule. Rows that some model could not score are left out (counted)."""
    keep = scoreable(margins_by_rule)
    left_out = [rows[i]["id"] for i in range(len(rows)) if i not in set(keep)]
    rows = [rows[i] for i in keep]
    margins_by_rule = {rule: {m: [v[i] for i in keep] for m, v in ms.items()} for rule, ms in margins_by_rule.items()}
    idx = bootstrap_indices(len(rows), resamples, seed)
    metrics = {
        "n_test": len(rows),
        "left_out": {"n": len(left_out), "ids": left_out[:5]},
        "bootstrap": {"resamples": resamples, "seed": seed, "level": 0.95, "paired": True},
        "weak_ties": int(sum(1 for m in margins_by_rule["primary"]["weak"] if m == 0)),
    }
    ref = None
    if reference is not None:
        rule = next((r for r in ("primary", "reference_free") if reference in margins_by_rule.get(r, {})), None)
        if rule is None:
            raise ValueError(f"region reference {reference!r} was not scored (models: "
                             f"{sorted(set().union(*map(set, margins_by_rule.values())))})")  # fmt: skip
        ref = (reference, rule, pair_correct(margins_by_rule[rule][reference]))
    for rule, margins in margins_by_rule.items():
        metrics[rule] = score_block(rows, margins, idx, ref if rule == "primary" else None)
    metrics["flags"] = flags(metrics)
    predictions = []
    for i, row in enumerate(rows):
        pred = {k: row.get(k) for k in ("id", "objective", "category", "subtlety", "group")}
        for rule, margins in margins_by_rule.items():
            suffix = "" if rule == "primary" else f"_{rule}"
            for name, m in margins.items():
                if rule == "primary" or name != "weak":
                    pred[f"{name}_margin{suffix}"] = m[i]
                    pred[f"{name}_correct{suffix}"] = bool(m[i] > 0)
        predictions.append(pred)
    return metrics, predictions
