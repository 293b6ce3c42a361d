"""Stage `report`: `report.md` with the accuracy / PGR table and the knowledge-region cells."""

from __future__ import annotations

from w2s_trl.metrics import CELLS


def _fmt(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


MODELS = ("weak", "base", "student", "ceiling")


def summary_table(metrics: dict) -> str:
    acc = metrics["accuracy"]
    models = [m for m in MODELS if m in acc and (acc[m] is not None or m == "ceiling")]
    pgr = _fmt(metrics["pgr"]) if metrics["pgr"] is not None else f"null ({metrics['pgr_note']})"
    return "\n".join(
        [
            "| " + " | ".join(models) + " | PGR |",
            "|" + "---:|" * len(models) + ":---|",
            "| " + " | ".join(_fmt(acc[m]) for m in models) + f" | {pgr} |",
        ]
    )


def render_report(run_name: str, metrics: dict) -> str:
    models = [m for m in MODELS if metrics["accuracy"].get(m) is not None]
    lines = [
        f"# w2s-trl run `{run_name}`",
        "",
        f"Ground-truth pair accuracy on `test` ({metrics['n_test']} pairs; ties count as wrong). `weak`: the reward "
        "source; `base`: the strong model before alignment; `student`: aligned on the weak labels; `ceiling`: aligned "
        "on ground truth.",
        "",
        summary_table(metrics),
        "",
        "## Knowledge regions (SCIENCE.md 2)",
        "",
        f"K_w/U_w: the weak supervisor (the reward source) is right/wrong; K_s/U_s: the reference strong model "
        f"(`{metrics['region_reference']}`) is right/wrong. Cells under 10 examples are flagged (small).",
        "",
        "| cell | n | " + " | ".join(f"err({m})" for m in models) + " |",
        "|:---|---:|" + "---:|" * len(models),
    ]
    for cell in CELLS:
        info = metrics["regions"][cell]
        flag = " (small)" if info["small"] else ""
        lines.append(f"| {cell} | {info['n']}{flag} | " + " | ".join(_fmt(info["error"][m]) for m in models) + " |")
    for key, title in (("accuracy_by_objective", "objective"), ("accuracy_by_subtlety", "subtlety")):
        lines += ["", f"## Accuracy by {title}", "", f"| {title} | n | " + " | ".join(models) + " |",
                  "|:---|---:|" + "---:|" * len(models)]  # fmt: skip
        for group, info in metrics[key].items():
            lines.append(f"| {group} | {info['n']} | " + " | ".join(_fmt(info[m]) for m in models) + " |")
    lines += ["", "## Runtime (s)", "", "| stage | seconds | cached |", "|:---|---:|:---|"]
    for stage, seconds in metrics.get("runtime_s", {}).items():
        lines.append(f"| {stage} | {seconds:.1f} | {'yes' if stage in metrics.get('cached_stages', []) else 'no'} |")
    return "\n".join(lines) + "\n"
