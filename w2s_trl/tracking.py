"""Weights & Biases wiring: online when logged in, offline otherwise (never a prompt, never a crash).

Without `tracking.report_to: [wandb]` nothing is sent anywhere. Offline runs stay under `<run dir>/wandb/`, ready for
`wandb sync`.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from w2s_trl.recipe import TrackingSection


def wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def setup_tracking(tracking: TrackingSection, run_root: Path, run_name: str) -> str | None:
    """Set the W&B environment for every trainer of the run; returns the mode ('online'/'offline') or None."""
    if "wandb" not in tracking.report_to:
        return None
    os.environ.setdefault("WANDB_PROJECT", tracking.project)
    if tracking.entity:
        os.environ.setdefault("WANDB_ENTITY", tracking.entity)
    os.environ["WANDB_DIR"] = str(run_root)
    os.environ.setdefault("WANDB_RUN_GROUP", run_name)
    os.environ.setdefault("WANDB_LOG_MODEL", "false")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    if "WANDB_MODE" not in os.environ and not wandb_logged_in():
        os.environ["WANDB_MODE"] = "offline"
        print(f"[w2s-trl] W&B: not logged in, logging offline to {run_root}/wandb (upload later with `wandb sync`)")
    return os.environ.get("WANDB_MODE", "online")


def flat_metrics(metrics: dict) -> dict[str, float]:
    """metrics.json as flat W&B summary keys: every value with its interval (`.../low`, `.../high`)."""
    flat: dict[str, float] = {"n_test": metrics["n_test"], "weak_ties": metrics.get("weak_ties", 0)}

    def put(key: str, stat: dict | None) -> None:
        if stat and stat.get("value") is not None:
            flat[key] = stat["value"]
            if stat.get("ci"):
                flat[f"{key}/low"], flat[f"{key}/high"] = stat["ci"]

    for rule in ("primary", "reference_free"):
        block = metrics.get(rule)
        if not block:
            continue
        for model, stat in block["accuracy"].items():
            put(f"{rule}/accuracy/{model}", stat)
        for name, stat in block["differences"].items():
            put(f"{rule}/difference/{name}", stat)
        put(f"{rule}/pgr", block.get("pgr"))
        for cell, info in block.get("regions", {}).items():
            flat[f"{rule}/regions/{cell}/n"] = info["n"]
            for model, stat in info["error"].items():
                put(f"{rule}/regions/{cell}/error_{model}", stat)
        for obj, info in block["by_objective"].items():
            for model, stat in info["accuracy"].items():
                put(f"{rule}/{obj}/accuracy/{model}", stat)
            for stratum, sinfo in info["strata"].items():
                for model, stat in sinfo["accuracy"].items():
                    put(f"{rule}/{obj}/{stratum}/accuracy/{model}", stat)
    for objective, info in (metrics.get("labels") or {}).get("objectives", {}).items():
        flat_objective_rewards(flat, f"label/reward/{objective}", info)
    return flat


def flat_objective_rewards(flat: dict, prefix: str, info: dict) -> None:
    """One objective's reward statistics on the labelled rows (multi-objective rewards: each objective logged under
    its own name)."""
    for key in ("n", "mean_chosen", "mean_rejected", "agrees_with_gt"):
        if info.get(key) is not None:
            flat[f"{prefix}/{key}"] = info[key]


def log_summary(tracking: TrackingSection, run_name: str, metrics: dict) -> None:
    """One W&B run holding the final metrics (accuracies, differences, PGR, cells, per objective and stratum, each
    with its interval) as its summary, and the flags as text."""
    if "wandb" not in tracking.report_to:
        return
    import wandb

    run = wandb.init(name=f"{run_name}/summary", job_type="evaluate", reinit="finish_previous")
    run.summary.update(flat_metrics(metrics))
    run.summary["flags"] = "\n".join(metrics.get("flags", [])) or "none"
    run.finish()
