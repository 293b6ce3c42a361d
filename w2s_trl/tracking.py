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


def log_summary(tracking: TrackingSection, run_name: str, metrics: dict) -> None:
    """One W&B run holding the final metrics (accuracies, PGR, region error rates) as its summary."""
    if "wandb" not in tracking.report_to:
        return
    import wandb

    flat = {}
    for key, value in metrics["accuracy"].items():
        flat[f"accuracy/{key}"] = value
    flat["pgr"] = metrics["pgr"]
    for cell, info in metrics["regions"].items():
        flat[f"regions/{cell}/n"] = info["n"]
        for model, err in info["error"].items():
            flat[f"regions/{cell}/error_{model}"] = err
    run = wandb.init(name=f"{run_name}/summary", job_type="evaluate", reinit="finish_previous")
    run.summary.update({k: v for k, v in flat.items() if v is not None})
    run.finish()
