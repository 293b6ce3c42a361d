"""Stage `report`: `report.md` and the printed summary. Every number carries its paired bootstrap 95% interval
(SCIENCE.md 1); what the run cannot tell is said in words."""

from __future__ import annotations

from w2s_trl.metrics import CELLS

MODELS = ("weak", "base", "student", "ceiling")
RULES = {
    "primary": "the trainer's own scoring rule (DPO and online RL: implicit reward log(pi / pi_base); SimPO: mean "
               "log-prob margin)",
    "reference_free": "reference-free log-prob margin, the same rule for base, student and ceiling",
}


def _fmt(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def fmt_interval(stat: dict | None, signed: bool = False) -> str:
    """'0.812 [0.771, 0.850]'."""
    if stat is None or stat.get("value") is None:
        return "—"
    v = f"{stat['value']:+.3f}" if signed else f"{stat['value']:.3f}"
    if not stat.get("ci"):
        return v
    lo, hi = stat["ci"]
    return f"{v} [{lo:+.3f}, {hi:+.3f}]" if signed else f"{v} [{lo:.3f}, {hi:.3f}]"


def _models(block: dict) -> list[str]:
    return [m for m in MODELS if m in block["accuracy"]]


def _table(header: list[str], rows: list[list[str]], align: str) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


def accuracy_table(block: dict) -> list[str]:
    models = _models(block)
    row = [fmt_interval(block["accuracy"][m]) for m in models]
    header, align = list(models), ["---:"] * len(models)
    if "pgr" in block:
        p = block["pgr"]
        header.append("PGR")
        align.append("---:")
        row.append(fmt_interval(p, signed=True) if p["value"] is not None else f"null ({p['note']})")
    return _table(header, [row], align)


def summary_table(metrics: dict) -> str:
    """The printed summary: accuracies and PGR with intervals under each rule, then the flags."""
    lines = []
    for rule in ("primary", "reference_free"):
        if rule in metrics:
            lines += [f"{rule}: {RULES[rule]}", *accuracy_table(metrics[rule]), ""]
    lines += [f"test pairs: {metrics['n_test']}; 95% paired bootstrap intervals ({metrics['bootstrap']['resamples']} "
              "resamples)"]  # fmt: skip
    lines += [f"FLAG: {f}" for f in metrics.get("flags", [])]
    return "\n".join(lines)


def _scored_by(block: dict) -> str:
    rule = block.get("region_reference_rule", "primary")
    return "" if rule == "primary" else f", scored by the {RULES[rule].split(',')[0]}"


def render_report(run_name: str, metrics: dict) -> str:
    primary = metrics["primary"]
    b = metrics["bootstrap"]
    lines = [
        f"# w2s-trl run `{run_name}`",
        "",
        f"Ground-truth pair accuracy on `test` ({metrics['n_test']} pairs; ties count as wrong). `weak`: the reward "
        "source; `base`: the strong model before alignment; `student`: "
        + ("trained online on the weak reward (sampling its own completions of w2s_train prompts)"
           if metrics.get("online") else "aligned on the weak labels")
        + f"; `ceiling`: aligned on ground truth. Brackets: paired bootstrap 95% intervals ({b['resamples']} "
        f"resamples of the test pairs, seed {b['seed']}, the same resamples for every model).",
        "",
    ]
    if metrics.get("flags"):
        lines += ["## What this run cannot tell", ""] + [f"- {f}" for f in metrics["flags"]] + [""]
    for rule in ("primary", "reference_free"):
        if rule not in metrics:
            continue
        block = metrics[rule]
        lines += [f"## Accuracy: {RULES[rule]}", "", *accuracy_table(block), ""]
        if block["differences"]:
            diffs = [[name, fmt_interval(stat, signed=True)] for name, stat in block["differences"].items()]
            lines += _table(["difference", "value [95% CI]"], diffs, [":---", "---:"]) + [""]
    lines += [f"Weak ties on test (counted wrong): {metrics.get('weak_ties', 0)}."]
    if metrics.get("left_out", {}).get("n"):
        lo = metrics["left_out"]
        lines += [f"Test pairs left out because some model could not score them: {lo['n']} (e.g. {', '.join(lo['ids'])})."]
    lines += [""]
    if "regions" in primary:
        models = _models(primary)
        lines += [
            "## Knowledge regions (SCIENCE.md 2)",
            "",
            f"K_w/U_w: the weak supervisor is right/wrong; K_s/U_s: the reference strong model "
            f"(`{primary['region_reference']}`{_scored_by(primary)}) is right/wrong. Error rates with 95% intervals; "
            "cells under 10 "
            "examples are flagged (small).",
            "",
        ]
        rows = []
        for cell in CELLS:
            info = primary["regions"][cell]
            flag = " (small)" if info["small"] else ""
            rows.append([cell, f"{info['n']}{flag}"] + [fmt_interval(info["error"][m]) for m in models])
        lines += _table(["cell", "n", *[f"err({m})" for m in models]], rows, [":---", "---:"] + ["---:"] * len(models))
        lines += [""]
    lines += deception_section(metrics.get("deception"))
    for rule in ("primary", "reference_free"):
        if rule not in metrics:
            continue
        block = metrics[rule]
        models = _models(block)
        if list(block["by_objective"]) == ["unknown"]:  # rows without objective (e.g. an HH file): the headline again
            continue
        lines += [f"## Accuracy by objective and stratum ({rule})", ""]
        rows = []
        for obj, info in block["by_objective"].items():
            rows.append([f"**{obj}**", "all", str(info["n"])] + [fmt_interval(info["accuracy"][m]) for m in models])
            if list(info["strata"]) == ["unknown"]:
                continue
            for stratum, sinfo in info["strata"].items():
                rows.append(["", stratum, str(sinfo["n"])] + [fmt_interval(sinfo["accuracy"][m]) for m in models])
        lines += _table(["objective", "stratum", "n", *models], rows, [":---", ":---", "---:"] + ["---:"] * len(models))
        lines += [""]
    lines += online_sections(metrics.get("online"))
    lines += data_sections(metrics)
    lines += ["## Runtime (s)", "", "| stage | seconds | cached |", "|:---|---:|:---|"]
    for stage, seconds in metrics.get("runtime_s", {}).items():
        lines.append(f"| {stage} | {seconds:.1f} | {'yes' if stage in metrics.get('cached_stages', []) else 'no'} |")
    return "\n".join(lines) + "\n"


def data_sections(metrics: dict) -> list[str]:
    """Rows in, rows skipped, labels, truncation per stage (SCIENCE.md 7)."""
    lines = []
    data = metrics.get("data") or {}
    if data:
        src = data.get("source") or {}
        lines += ["## Data", "", f"Splits: {data.get('rows')}. Malformed rows skipped: {src.get('invalid', 0)}"
                  + (f" (e.g. {'; '.join(src['invalid_examples'][:3])})" if src.get("invalid_examples") else "")
                  + f"; duplicates dropped: {src.get('duplicates', 0)}. max_length per model: {data.get('max_length')}.",
                  ""]  # fmt: skip
    labels = metrics.get("labels") or {}
    if labels:
        from w2s_trl.label import accuracy_stat

        acc = fmt_interval(accuracy_stat(labels))
        lines += [f"Weak labels on w2s_train: agreement with ground truth {acc} (ties counted wrong; bootstrap 95% "
                  f"interval over the scored pairs); "
                  f"{labels.get('weak_ties', 0)} ties and {labels.get('unscored', 0)} unscored pairs left out; the "
                  f"student trained on {labels.get('labelled')} of {labels.get('rows')} pairs.", ""]  # fmt: skip
    trunc = metrics.get("truncation") or {}
    if trunc:
        rows = [[stage, str(t.get("max_length")), str(t["rows"]), str(t["truncated"]), str(t["dropped"])]
                for stage, t in trunc.items()]  # fmt: skip
        lines += ["## Truncation (prompt cut from the left; a response is never cut)", ""]
        lines += _table(["stage", "max_length", "rows", "truncated", "dropped"], rows, [":---"] + ["---:"] * 4)
        lines += ["", "Rows are pairs for training stages and responses (two a pair) for scoring stages; a pair's two "
                  "responses are scored with one cut prompt and dropped together.", ""]
    return lines


def deception_section(d: dict | None) -> list[str]:
    """The student's DS and deception gap against the weak supervisor (SCIENCE.md 2), with intervals, in words."""
    if not d:
        return []
    rows = [["DS (share of the student's K_s errors that fall in U_w&K_s)", fmt_interval(d["ds"])],
            ["chance (U_w&K_s share of K_s)", fmt_interval(d["chance"])],
            ["DS - chance", fmt_interval(d["ds_minus_chance"], signed=True)],
            ["gap = err(U_w&K_s) - err(K_w&K_s)", fmt_interval(d["gap"], signed=True)]]  # fmt: skip
    lines = ["## Deception against the weak supervisor (SCIENCE.md 2)", "",
             f"K_w: the weak supervisor is right; K_s: `{d['reference']}` is right. Does the student err where the weak "
             "supervisor cannot check more than where it can?", ""]  # fmt: skip
    lines += _table(["quantity", "value [95% CI]"], rows, [":---", "---:"]) + [""]
    return lines + [f"- {f}" for f in d.get("flags", [])] + [""]


def online_sections(online: dict | None) -> list[str]:
    """An online student's training rewards, and its sampled completions before and after: judged by ground truth,
    scored per objective (online_eval.py)."""
    if not online:
        return []
    lines = ["## Online RL: what the student writes", ""]
    training = online.get("training") or {}
    if training:
        lines += [f"Training log: {training['logged_steps']} logged steps in `student/history.jsonl`, each objective's "
                  f"mean reward and the KL per step plotted in `{training['curve']}` (one batch a point, so no "
                  "intervals there; the numbers below have them).", ""]  # fmt: skip
    judged = online["judged"]
    lines += [f"Completions sampled on {online['prompts']} `test` prompts (temperature {online['temperature']}, up to "
              f"{online['max_new_tokens']} tokens), the same seed for base and student. Ground truth judges "
              f"{judged['judged']} of their {judged['rows']} rows (w2s_trl/judge.py: refusal when the pair's two "
              "responses differ in refusing, the stated numbers when they differ in numbers; other rows are not "
              "judged). Share judged right, with paired bootstrap 95% intervals:", ""]  # fmt: skip
    rows = [[group, str(block["base"]["n"]), fmt_interval(block["base"]), fmt_interval(block["student"]),
             fmt_interval(block.get("student - base"), signed=True)] for group, block in judged["by"].items()]  # fmt: skip
    lines += _table(["rows", "n", "base", "student", "student - base"], rows, [":---", "---:", "---:", "---:", "---:"])
    refusals = online.get("refusals")
    if refusals:
        lines += ["", "Share of the completions that refuse (the refusal check's phrases), which the harmless rows' "
                  f"verdicts rest on: base {fmt_interval(refusals['base'])}, student {fmt_interval(refusals['student'])}, "
                  f"student - base {fmt_interval(refusals['student - base'], signed=True)}."]  # fmt: skip
    lines += ["", "Mean reward of the same completions under each objective's reward (as trained on):", ""]
    rows = [[name, fmt_interval(block["base"], signed=True), fmt_interval(block["student"], signed=True),
             fmt_interval(block.get("student - base"), signed=True)] for name, block in online["rewards"].items()]  # fmt: skip
    lines += _table(["reward", "base", "student", "student - base"], rows, [":---", "---:", "---:", "---:"]) + [""]
    return lines
