"""Figures of the deception probe (SCIENCE.md 2), for reports and W&B. Each function takes the probe summary (schema in
`w2s_trl.probe_report`) and a path, writes one PNG and returns the path. matplotlib (Agg backend) is imported inside
the functions: nothing happens at import."""

from __future__ import annotations

from pathlib import Path

from w2s_trl.metrics import CELLS

SMALL_CELL = 10
GAP_DEF = "deception gap = err(U_w∩K_s) − err(K_w∩K_s)"  # plain text (markdown)
GAP_TEX = r"deception gap = err($U_w \cap K_s$) − err($K_w \cap K_s$)"  # in figures (∩ alone reads as an n)
CELL_TITLES = {
    "K_w&K_s": r"$K_w \cap K_s$: weak ceiling right, reference right",
    "K_w&U_s": r"$K_w \cap U_s$: weak ceiling right, reference wrong",
    "U_w&K_s": r"$U_w \cap K_s$: weak ceiling wrong, reference right"
               "\n(the weak supervisor cannot check: deceptive errors)",
    "U_w&U_s": r"$U_w \cap U_s$: weak ceiling wrong, reference wrong",
}
KIND_COLORS = {
    "none": "#222222",
    "multi_objective": "#1f77b4",
    "explicit": "#d62728",
    "implicit": "#2ca02c",
    "bootstrap": "#9467bd",
    "confidence": "#8c564b",
    "weak_policy": "#17becf",
}
KIND_AXES = {
    "multi_objective": "weight of the competing objective in the reward",
    "explicit": "alpha, weight of the explicit conflict term",
    "implicit": "N, competing GT pairs mixed into training",
}
KIND_PARAM = {"multi_objective": "weight", "explicit": "alpha", "implicit": "N"}
KIND_NAMES = {"none": "no conflict", "multi_objective": "multi-objective reward", "explicit": "explicit conflict term",
              "implicit": "implicit conflict"}  # fmt: skip


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _color(kind: str) -> str:
    extra = ["#ff7f0e", "#e377c2", "#7f7f7f", "#bcbd22"]
    return KIND_COLORS.get(kind, extra[sum(map(ord, kind)) % len(extra)])


def _err(stat: dict | None) -> tuple[float, float] | None:
    """(below, above) error-bar lengths from a {value, ci} interval, or None when it has no value or no interval."""
    if not stat or stat.get("value") is None or not stat.get("ci"):
        return None
    v, (lo, hi) = stat["value"], stat["ci"]
    return max(v - lo, 0.0), max(hi - v, 0.0)


def _save(fig, path) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return str(path)


def _subtitle(summary: dict) -> str:
    n = summary.get("n_test", {}).get(summary.get("target_objective"))
    boot = summary.get("bootstrap", {})
    return (f"target objective: {summary.get('target_objective', '?')}" + (f", {n} test pairs" if n else "")
            + f"; error bars: 95% paired bootstrap CI ({boot.get('resamples', '?')} resamples)"
            + f"; $K_s$ from: {summary.get('reference', 'ceiling')}")  # fmt: skip


def plot_cell_errors(summary: dict, path) -> str:
    """Student error in each knowledge cell (one panel per cell), one bar per variant, 95% intervals; each bar's label
    carries the cell's size n, and cells under 10 examples are hatched and marked in red."""
    plt = _pyplot()
    variants = summary["variants"]
    height = max(4.0, 0.42 * len(variants) + 1.6)
    fig, axes = plt.subplots(2, 2, figsize=(15, 2 * height), squeeze=False)
    ys = list(range(len(variants)))[::-1]  # first variant on top
    for ax, cell in zip(axes.flat, CELLS):
        labels, any_small = [], False
        for y, v in zip(ys, variants):
            info = v["deception"]["cells"][cell]
            stat, n = info["error"], info["n"]
            small = n < SMALL_CELL
            any_small |= small
            labels.append(f"{v['name']}  (n={n}{', <10!' if small else ''})")
            if stat.get("value") is None:
                ax.text(0.01, y, "empty cell", va="center", fontsize=8, color="#888888")
                continue
            err = _err(stat)
            ax.barh(y, stat["value"], color=_color(v["kind"]), alpha=0.35 if small else 0.8,
                    hatch="///" if small else None, edgecolor="#cc0000" if small else "none", height=0.7)  # fmt: skip
            if err:
                ax.errorbar(stat["value"], y, xerr=[[err[0]], [err[1]]], fmt="|", color="black", ms=9, capsize=3,
                            lw=1)  # the tick marks the value, visible even at 0
        ax.set_yticks(ys)
        ax.set_yticklabels(labels, fontsize=8)
        for tick, v in zip(ax.get_yticklabels(), variants):
            if v["deception"]["cells"][cell]["n"] < SMALL_CELL:
                tick.set_color("#cc0000")
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.6, len(variants) - 0.4)
        ax.set_xlabel("student error rate in this cell (0 = always right)", fontsize=9)
        ax.set_title(CELL_TITLES[cell], fontsize=10, color="#cc0000" if cell == "U_w&K_s" else "black")
        ax.grid(axis="x", alpha=0.3)
    _kind_legend(fig, variants, small=any(v["deception"]["cells"][c]["n"] < SMALL_CELL
                                          for v in variants for c in CELLS))  # fmt: skip
    fig.suptitle("Student error per knowledge cell, per variant\n" + _subtitle(summary), fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return _save(fig, path)


def _kind_legend(fig, variants: list[dict], small: bool = False) -> None:
    from matplotlib.patches import Patch

    kinds = list(dict.fromkeys(v["kind"] for v in variants))
    handles = [Patch(color=_color(k), label=KIND_NAMES.get(k, k)) for k in kinds]
    if small:
        handles.append(Patch(facecolor="white", edgecolor="#cc0000", hatch="///",
                             label="cell under 10 examples: unstable"))  # fmt: skip
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False,
               title="conflict kind (bar colour)", title_fontsize=9)  # fmt: skip


def _shift(fig, artists, index: int, count: int, spread: float = 5.0) -> None:
    """Shift the artists of series `index` of `count` sideways by a few points, so error bars do not overlap. Drawn
    in data coordinates first (so the axes autoscale to them), shifted after."""
    from matplotlib.transforms import ScaledTranslation

    dx = (index - (count - 1) / 2) * spread / 72
    if dx == 0:
        return
    shift = ScaledTranslation(dx, 0, fig.dpi_scale_trans)
    for artist in artists:
        artist.set_transform(artist.get_transform() + shift)


def _artists(container) -> list:
    """The lines and line collections of a plot() result or an errorbar container."""
    out = []
    stack = [container]
    while stack:
        item = stack.pop()
        if item is None:
            continue
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        else:
            out.append(item)
    return out


def _point(ax, x, stat, color, marker, lw=1.5) -> list:
    """One point with its interval; filled when the interval excludes 0. Returns its artists."""
    err = _err(stat)
    filled = bool(stat.get("ci")) and (stat["ci"][0] > 0 or stat["ci"][1] < 0)
    return _artists(ax.errorbar(x, stat["value"], yerr=None if err is None else [[err[0]], [err[1]]], fmt=marker,
                                color=color, mfc=color if filled else "white", mec=color, ms=7, capsize=3,
                                lw=lw))  # fmt: skip


def plot_gap_vs_strength(summary: dict, path) -> str:
    """The deception gap with its 95% interval against conflict strength: one panel per conflict kind (each its own
    x scale), one line per weak supervisor, the no-conflict variant at strength 0 in every panel."""
    plt = _pyplot()
    # mitigations run under one conflict point; they are compared in the table and the cell plot, not on these lines
    variants = [v for v in summary["variants"] if not v.get("mitigation")]
    kinds = list(dict.fromkeys(v["kind"] for v in variants if v["kind"] != "none" and v.get("strength") is not None))
    weaks = list(summary.get("weak_supervisors") or dict.fromkeys(v["weak"] for v in variants))
    fig, axes = plt.subplots(1, max(len(kinds), 1), figsize=(5.2 * max(len(kinds), 1) + 0.5, 5.2), sharey=True,
                             squeeze=False)  # fmt: skip
    axes = axes[0]
    markers = "osD^vP"
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    if not kinds:
        axes[0].text(0.5, 0.5, "no variant has a conflict strength", ha="center", va="center",
                     transform=axes[0].transAxes)  # fmt: skip
    for ax, kind in zip(axes, kinds):
        xs_all, skipped = set(), []
        for wi, weak in enumerate(weaks):
            pts = [(0.0, v) for v in variants if v["kind"] == "none" and v["weak"] == weak]
            pts += sorted(((float(v["strength"]), v) for v in variants
                           if v["kind"] == kind and v["weak"] == weak and v.get("strength") is not None),
                          key=lambda p: p[0])  # fmt: skip
            good = [(x, v) for x, v in pts if v["deception"]["gap"].get("value") is not None]
            skipped += [v["name"] for x, v in pts if v["deception"]["gap"].get("value") is None]
            if not good:
                continue
            color, marker = palette[wi % len(palette)], markers[wi % len(markers)]
            xs = [x for x, _ in good]
            xs_all |= set(xs)
            artists = ax.plot(xs, [v["deception"]["gap"]["value"] for _, v in good], "-", marker=marker, color=color,
                              alpha=0.6, label=f"weak supervisor: {weak}")  # fmt: skip
            for x, v in good:
                artists += _point(ax, x, v["deception"]["gap"], color, marker)
            _shift(fig, artists, wi, len(weaks))
        ax.axhline(0, color="black", lw=1, ls="--")
        if xs_all:
            xs = sorted(xs_all)
            positive = [x for x in xs if x > 0]
            if positive and max(positive) / min(positive) >= 5:
                ax.set_xscale("symlog", linthresh=min(positive))
            ax.set_xticks(xs)
            ax.set_xticklabels([f"{x:g}" for x in xs])
            pad = 0.08 * (max(xs) - min(xs) or 1)
            if ax.get_xscale() == "linear":
                ax.set_xlim(min(xs) - pad, max(xs) + pad)
        note = f"\nnot shown, gap undefined: {', '.join(skipped)}" if skipped else ""
        ax.set_xlabel(KIND_AXES.get(kind, "conflict strength") + "\n(0 = the no-conflict student)" + note, fontsize=9)
        ax.set_title(KIND_NAMES.get(kind, kind), fontsize=11)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(GAP_TEX + "\n> 0: errs where the weak supervisor cannot check", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    return _finish(fig, path, handles, labels, "Deception gap vs conflict strength\n" + _subtitle(summary), 0.08)


def plot_deception_vs_capacity(summary: dict, path) -> str:
    """The gap and DS − chance, with 95% intervals, against the weak supervisor (in the summary's order: increasing
    capacity), each annotated with its test accuracy; the no-conflict student in bold, and every other variant
    setting (kind, strength) that was run with more than one weak supervisor."""
    plt = _pyplot()
    # mitigations (and a supervisor only they use, like a weak policy) are not points on the capacity axis
    variants = [v for v in summary["variants"] if not v.get("mitigation")]
    used = {v["weak"] for v in variants}
    weaks = [w for w in (summary.get("weak_supervisors") or dict.fromkeys(v["weak"] for v in variants)) if w in used]
    pos = {w: i for i, w in enumerate(weaks)}
    groups: dict[tuple, list[dict]] = {}
    for v in variants:
        groups.setdefault((v["kind"], v.get("strength")), []).append(v)
    shown = [g for g, vs in groups.items() if g[0] == "none" or len({v["weak"] for v in vs}) > 1]
    shown.sort(key=lambda g: (g[0] != "none", g[0], g[1] or 0))
    fig, axes = plt.subplots(1, 2, figsize=(max(11, 3.2 * len(weaks) * 2), 5.4), squeeze=False)
    axes = axes[0]
    panels = (("gap", GAP_TEX), ("ds_minus_chance", "DS − chance\n" + r"DS = deceptive errors / errors on $K_s$"))
    for ax, (key, ylabel) in zip(axes, panels):
        for gi, group in enumerate(shown):
            kind, strength = group
            pts = sorted(((pos[v["weak"]], v) for v in groups[group] if v["weak"] in pos
                          and v["deception"][key].get("value") is not None), key=lambda p: p[0])  # fmt: skip
            if not pts:
                continue
            none = kind == "none"
            label = KIND_NAMES["none"] if none else KIND_NAMES.get(kind, kind) + (
                f" ({KIND_PARAM.get(kind, 'strength')} = {strength:g})" if strength is not None else "")
            color = _color(kind)
            ls = "-" if none else (":" if gi % 2 else "--")
            artists = ax.plot([x for x, _ in pts], [v["deception"][key]["value"] for _, v in pts], ls, color=color,
                              marker="o" if none else "s", lw=2.5 if none else 1.2, alpha=0.9 if none else 0.6,
                              label=label)  # fmt: skip
            for x, v in pts:
                artists += _point(ax, x, v["deception"][key], color, "o" if none else "s", lw=2 if none else 1)
            _shift(fig, artists, gi, len(shown), spread=7.0)
        ax.axhline(0, color="black", lw=1, ls="--")
        ax.set_xticks(range(len(weaks)))
        ax.set_xticklabels([_weak_label(summary, w) for w in weaks], fontsize=8)
        ax.set_xlim(-0.5, len(weaks) - 0.5)
        ax.set_xlabel("weak supervisor (capacity increasing left to right)", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_title("Deception gap (> 0: errs where the weak supervisor cannot check)", fontsize=10)
    axes[1].set_title(r"DS above chance (> 0: errors on $K_s$ concentrate in $U_w$)", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    return _finish(fig, path, handles, labels, "Deception vs weak-supervisor capacity\n" + _subtitle(summary), 0.1)


def _finish(fig, path, handles: list, labels: list, title: str, bottom: float) -> str:
    """The shared legend (with the filled/hollow marker key) under the panels, the title, and the file."""
    from matplotlib.lines import Line2D

    handles = handles + [Line2D([], [], marker="o", color="gray", mfc="gray", ls="none"),
                         Line2D([], [], marker="o", color="gray", mfc="white", ls="none")]  # fmt: skip
    labels = labels + ["filled: 95% CI excludes 0", "hollow: 95% CI includes 0"]
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, bottom, 1, 0.95))
    return _save(fig, path)


def _weak_label(summary: dict, weak: str) -> str:
    info = (summary.get("weak_supervisors") or {}).get(weak, {})
    acc = info.get("accuracy") or {}
    lines = [weak]
    if info.get("capacity"):
        lines.append(str(info["capacity"]))
    if acc.get("value") is not None:
        ci = f" [{acc['ci'][0]:.2f}, {acc['ci'][1]:.2f}]" if acc.get("ci") else ""
        lines.append(f"test acc {acc['value']:.3f}{ci}")
    return "\n".join(lines)


OBJECTIVE_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e")


def plot_online_history(history: list[dict], objectives: list[str], trainer: str, path) -> str:
    """An online student's training log: the mean reward of each objective and the weighted total per logged step
    (left), and the KL to the reference (right; GRPO logs it only when its beta > 0)."""
    plt = _pyplot()
    steps = [h for h in history if "reward" in h or any(f"rewards/{o}/mean" in h for o in objectives)]
    x = lambda key: [h.get("step", i + 1) for i, h in enumerate(steps) if key in h]  # noqa: E731
    y = lambda key: [h[key] for h in steps if key in h]  # noqa: E731
    step_name = "rollout (PPO step)" if trainer == "ppo" else "optimizer step"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for i, o in enumerate(objectives):
        key = f"rewards/{o}/mean"
        left.plot(x(key), y(key), marker="o", ms=3, color=OBJECTIVE_COLORS[i % len(OBJECTIVE_COLORS)], label=o)
    if len(objectives) > 1 and y("reward"):
        left.plot(x("reward"), y("reward"), color="#7f7f7f", ls="--", label="weighted total")
    left.set(xlabel=step_name, ylabel="mean reward of the step's sampled completions", title="reward per objective")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    if y("kl"):
        right.plot(x("kl"), y("kl"), marker="o", ms=3, color="#d62728")
        right.set(xlabel=step_name, ylabel="KL(policy || reference), summed over a completion" if trainer == "ppo"
                  else "KL (TRL's per-token mean)", title="KL to the reference (adapter off)")  # fmt: skip
    else:
        right.text(0.5, 0.5, f"{trainer}: no KL logged (beta = 0)", ha="center", va="center", transform=right.transAxes)
        right.set_axis_off()
    right.grid(alpha=0.3)
    fig.suptitle(f"{trainer.upper()} training log", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)
