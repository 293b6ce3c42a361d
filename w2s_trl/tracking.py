"""Weights & Biases wiring: online when logged in, offline otherwise (never a prompt, never a crash).

Without `tracking.report_to: [wandb]` nothing is sent anywhere. Offline runs stay under `<run dir>/wandb/`, ready for
`wandb sync`.
"""

from __future__ import annotations

import netrc
import os
import secrets
from pathlib import Path

from w2s_trl.recipe import TrackingSection
from w2s_trl.redact import scrub


def wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


# The resolved recipe, secrets removed: the config every W&B run of this process carries (set by setup_tracking)
RUN_CONFIG: dict = {}


def setup_tracking(tracking: TrackingSection, run_root: Path, run_name: str, config: dict | None = None) -> str | None:
    """Set the W&B environment for every trainer of the run; returns the mode ('online'/'offline') or None. trackio
    keeps its database in the run directory (`trackio/`, before anything imports trackio: it reads TRACKIO_DIR once),
    not in the user's cache: `trackio show --project <tracking.project>` with TRACKIO_DIR set to it."""
    if "trackio" in tracking.report_to:
        os.environ.setdefault("TRACKIO_DIR", str(run_root / "trackio"))
    if "wandb" not in tracking.report_to:
        return None
    if config is not None:
        RUN_CONFIG.clear()
        RUN_CONFIG.update(scrub(config))
    os.environ.setdefault("WANDB_PROJECT", tracking.project)
    if tracking.entity:
        os.environ.setdefault("WANDB_ENTITY", tracking.entity)
    os.environ["WANDB_DIR"] = str(run_root)
    os.environ.setdefault("WANDB_RUN_GROUP", run_name)
    os.environ.setdefault("WANDB_LOG_MODEL", "false")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    # W&B's system metadata holds the full command line, where a key=value override may carry a secret; the run's
    # config (the resolved recipe, secrets removed) and metrics.json's versions say what it would have
    os.environ.setdefault("WANDB__DISABLE_META", "true")
    if "WANDB_MODE" not in os.environ and not wandb_logged_in():
        os.environ["WANDB_MODE"] = "offline"
        print(f"[w2s-trl] W&B: not logged in, logging offline to {run_root}/wandb (upload later with `wandb sync`)")
    elif "WANDB_MODE" not in os.environ and not behind_proxy() and not wandb_reachable():
        os.environ["WANDB_MODE"] = "offline"  # a key and no server: W&B would fail authenticating or wait ~2 minutes
        host, port = wandb_host()
        print(f"[w2s-trl] W&B: {host}:{port} is unreachable, logging offline to {run_root}/wandb (upload later "
              "with `wandb sync`)", flush=True)  # fmt: skip
    return os.environ.get("WANDB_MODE", "online")


def behind_proxy() -> bool:
    """A proxy decides reachability (a direct TCP check would say no): W&B is left to its own retries."""
    return any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"))


def wandb_host() -> tuple[str, int]:
    from urllib.parse import urlparse

    base = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    url = urlparse(base if "://" in base else f"https://{base}")  # localhost:8080 has no scheme
    return url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)


def wandb_reachable(timeout: float = 3.0) -> bool:
    """Whether the W&B server accepts a TCP connection within `timeout` seconds (no request is sent)."""
    import socket

    try:
        socket.create_connection(wandb_host(), timeout=timeout).close()
        return True
    except OSError:
        return False


def start_stage_run(work, name: str, extra_config: dict | None = None):
    """Open a training stage's W&B run before its trainer would (TRL's callback then logs into it): the recipe as
    config, and the same run id after an interruption (kept in the stage's work folder), so a resumed stage continues
    its run instead of starting a second one."""
    import wandb

    work.checkpoints.mkdir(parents=True, exist_ok=True)
    path = work.checkpoints / "wandb_run_id"
    run_id = path.read_text().strip() if path.exists() else secrets.token_hex(4)  # W&B ids: short, lowercase
    path.write_text(run_id)
    return wandb.init(id=run_id, resume="allow", name=name, config={**RUN_CONFIG, **(extra_config or {})},
                      reinit="finish_previous")  # fmt: skip


def flat_metrics(metrics: dict) -> dict[str, float]:
    """metrics.json as flat W&B summary keys: every value with its interval (`.../low`, `.../high`)."""
    flat: dict[str, float] = {"n_test": metrics["n_test"], "weak_ties": metrics.get("weak_ties", 0)}

    def put(key: str, stat: dict | None) -> None:
        _put(flat, key, stat)

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
    for key in ("ds", "chance", "ds_minus_chance", "gap"):  # the student against the weak supervisor
        put(f"deception/{key}", (metrics.get("deception") or {}).get(key))
    for objective, info in (metrics.get("labels") or {}).get("objectives", {}).items():
        flat_objective_rewards(flat, f"label/reward/{objective}", info)
    return flat


def flat_objective_rewards(flat: dict, prefix: str, info: dict) -> None:
    """One objective's reward statistics on the labelled rows (multi-objective rewards: each objective logged under
    its own name)."""
    for key in ("n", "mean_chosen", "mean_rejected", "agrees_with_gt"):
        if info.get(key) is not None:
            flat[f"{prefix}/{key}"] = info[key]


def flat_online(flat: dict, online: dict | None) -> None:
    """An online student's sampled completions: share judged right and each objective's mean reward, base and
    student and their difference, each with its interval."""
    if not online:
        return
    for group, block in online["judged"].get("by", {}).items():
        for model, stat in block.items():
            _put(flat, f"online/judged/{group}/{model.replace(' ', '')}", stat)
    for name, block in online["rewards"].items():
        for model, stat in block.items():
            if isinstance(stat, dict):
                _put(flat, f"online/reward/{name}/{model.replace(' ', '')}", stat)


def _put(flat: dict, key: str, stat: dict | None) -> None:
    if stat and stat.get("value") is not None:
        flat[key] = stat["value"]
        if stat.get("ci"):
            flat[f"{key}/low"], flat[f"{key}/high"] = stat["ci"]


def log_summary(tracking: TrackingSection, run_name: str, metrics: dict, root: Path | None = None,
                recipe: dict | None = None) -> str | None:  # fmt: skip
    """One W&B run for the whole result: the resolved recipe as config (secrets removed), the final metrics (each
    with its interval) and weak-label statistics as summary, the flags as text, the per-pair predictions (and an
    online student's sampled completions) as tables, the report's plots as images, and report.md + metrics.json as
    an artifact. Returns the run's URL, or its offline folder."""
    if "wandb" not in tracking.report_to:
        return None
    import wandb

    run = wandb.init(name=f"{run_name}/summary", job_type="evaluate", reinit="finish_previous",
                     config=scrub(recipe) if recipe else None)  # fmt: skip
    flat = flat_metrics(metrics)
    flat_online(flat, metrics.get("online"))
    # weak-label statistics: counts, and the labels' agreement with ground truth over all of w2s_train
    from w2s_trl.label import accuracy_stat

    labels = metrics.get("labels") or {}
    for key in ("rows", "labelled", "weak_ties", "unscored", "weak_label_accuracy", "weak_label_accuracy_labelled"):
        value = accuracy_stat(labels) if key == "weak_label_accuracy" else labels.get(key)
        if isinstance(value, dict):
            _put(flat, f"label/{key}", value)
        elif isinstance(value, (int, float)):
            flat[f"label/{key}"] = value
    run.summary.update(flat)
    run.summary["flags"] = "\n".join(metrics.get("flags", [])) or "none"
    if root is not None:
        _log_files(run, Path(root), run_name)
        if tracking.log_adapters:
            _log_adapters(run, Path(root), run_name)
    where = f"offline, {Path(run.dir).parent} (upload: wandb sync)" if run.offline else run.url
    run.finish()
    print(f"[w2s-trl] W&B summary run: {where}", flush=True)
    return where


def _log_files(run, root: Path, run_name: str) -> None:
    import wandb

    from w2s_trl.data import read_jsonl

    for name, path in (("predictions", root / "evaluate" / "predictions.jsonl"),
                       ("generations", root / "evaluate" / "generations.jsonl"),
                       ("best_of_n_samples", root / "label" / "best_of_n.all.jsonl")):  # fmt: skip
        if path.exists():
            rows = read_jsonl(path)
            if rows:
                columns = sorted({k for r in rows for k in r})
                run.log({name: wandb.Table(columns=columns, data=[[_cell(r.get(c)) for c in columns] for r in rows])})
    images = {str(p.relative_to(root).with_suffix("")): wandb.Image(str(p)) for p in sorted(root.glob("**/*.png"))
              if not {".work", "wandb"} & set(p.parts)}  # fmt: skip
    if images:
        run.log({f"plots/{k}": v for k, v in images.items()})
    import tempfile

    artifact = wandb.Artifact(f"{run_name.replace('/', '-')}-report", type="report")
    with tempfile.TemporaryDirectory() as tmp:  # copies with secrets removed (a command line can hold one)
        for name in ("report.md", "metrics.json", "recipe.resolved.yaml"):
            if (root / name).exists():
                (Path(tmp) / name).write_text(scrub((root / name).read_text()))
                artifact.add_file(str(Path(tmp) / name))
        run.log_artifact(artifact)  # add_file staged a copy of each: the temporary folder may go


def _log_adapters(run, root: Path, run_name: str) -> None:
    """The trained LoRA adapters (student, ceiling: adapter weights, config, tokenizer files), one model artifact."""
    import wandb

    artifact = wandb.Artifact(f"{run_name.replace('/', '-')}-adapters", type="model")
    for stage in ("student", "ceiling"):
        if (root / stage / "adapter").is_dir():
            artifact.add_dir(str(root / stage / "adapter"), name=stage)
    run.log_artifact(artifact)


def _cell(value):
    """A table cell: numbers, strings and booleans as they are; anything else as its JSON text."""
    import json

    return value if value is None or isinstance(value, (int, float, str, bool)) else json.dumps(value)
