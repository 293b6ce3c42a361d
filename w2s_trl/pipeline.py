"""The whole life of a weak-to-strong run, top to bottom: data -> weak -> label -> student/ceiling -> evaluate ->
report. Each stage reads and writes files in the run directory only (rundir.py), so a re-run skips completed stages
whose inputs are unchanged and resumes an interrupted training from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from w2s_trl.models import is_hub_spec
from w2s_trl.recipe import Recipe, dump_recipe
from w2s_trl.rundir import RunDir, StageWork, write_json_atomic, write_text_atomic

STAGES = ("data", "weak", "label", "student", "ceiling", "evaluate")
PACKAGES = ("w2s-trl", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "wandb", "gguf")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def configure_environment(recipe: Recipe) -> None:
    """Offline and quiet by default: no telemetry; no hub access when nothing names a hub id (run.offline: auto)."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    specs = [recipe.strong.model, recipe.weak.reward.model]
    needs_hub = any(is_hub_spec(s) for s in specs) or is_hub_spec(recipe.data.source) and recipe.data.source != "testbed:hh"
    offline = recipe.run.offline == "on" or (recipe.run.offline == "auto" and not needs_hub)
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def run_pipeline(recipe: Recipe, stop_after: str | None = None) -> Path:
    from accelerate import PartialState

    from w2s_trl.data import SPLITS, load_source, read_jsonl, split_rows, write_jsonl
    from w2s_trl.tracking import setup_tracking

    configure_environment(recipe)
    state = PartialState()
    r = recipe
    root = Path(r.run.output_dir) / r.run.name
    rd = RunDir(root, is_main=state.is_main_process, barrier=state.wait_for_everyone)
    if rd.is_main:
        write_text_atomic(root / "recipe.resolved.yaml", dump_recipe(r))
    setup_tracking(r.tracking, root, r.run.name)
    report_to = list(r.tracking.report_to)
    fp = lambda stage: rd.record(stage)["fingerprint"]  # noqa: E731 - upstream fingerprint, read after it ran

    def done(stage: str) -> bool:
        if stop_after == stage:
            print(f"[w2s-trl] stopping after stage {stage} (--stop-after)", flush=True)
            return True
        return False

    # 1. data: load the source and split it by stable ids
    def compute_data(work: StageWork) -> dict:
        rows = load_source(r.data.source, r.data.size, r.run.seed, r.data.objectives, r.data.hub_split)
        splits = split_rows(rows, r.data.fractions.model_dump(), r.data.max_rows.model_dump())
        for name, split in splits.items():
            write_jsonl(work.out / f"{name}.jsonl", split)
        return {"rows": {name: len(split) for name, split in splits.items()}}

    data_dir = rd.run("data", {"data": r.data.model_dump(), "seed": r.run.seed}, compute_data)
    split = lambda name: read_jsonl(data_dir / f"{name}.jsonl")  # noqa: E731
    if done("data"):
        return root

    # 2. weak: the weak reward model, trained on weak_train ground truth
    def compute_weak(work: StageWork) -> dict:
        from w2s_trl.weak import train_reward_model

        return train_reward_model(r.weak.reward, split("weak_train"), work, r.run.seed, report_to, f"{r.run.name}/weak")

    weak_inputs = {"reward": r.weak.reward.model_dump(), "data": fp("data"), "seed": r.run.seed}
    weak_dir = rd.run("weak", weak_inputs, compute_weak, all_ranks=True)
    if done("weak"):
        return root

    # 3. label: weak labels on w2s_train
    def compute_label(work: StageWork) -> dict:
        from w2s_trl.label import label_with_reward_model
        from w2s_trl.weak import load_trained_reward_model

        model, tok = load_trained_reward_model(weak_dir)
        rows = label_with_reward_model(model, tok, split("w2s_train"), r.label.batch_size, r.weak.reward.max_length)
        write_jsonl(work.out / "w2s_train.weak.jsonl", rows)
        return {"weak_label_accuracy": sum(x["weak_correct"] for x in rows) / len(rows)}

    label_dir = rd.run("label", {"label": r.label.model_dump(), "weak": fp("weak"), "data": fp("data")}, compute_label)
    if done("label"):
        return root

    # 4. student on weak labels, ceiling on ground truth: the same training, other rows
    from w2s_trl.align import adapter_dir, train_policy

    align_inputs = {"strong": r.strong.model_dump(), "align": r.align.model_dump(exclude={"ceiling"}), "seed": r.run.seed}
    student_dir = rd.run(
        "student",
        {**align_inputs, "rows": fp("label")},
        lambda work: train_policy(r, read_jsonl(label_dir / "w2s_train.weak.jsonl"), work, f"{r.run.name}/student"),
        all_ranks=True,
    )
    if done("student"):
        return root
    adapters = {"student": adapter_dir(student_dir)}
    if r.align.ceiling:
        ceiling_dir = rd.run(
            "ceiling",
            {**align_inputs, "rows": fp("data")},
            lambda work: train_policy(r, split("w2s_train"), work, f"{r.run.name}/ceiling"),
            all_ranks=True,
        )
        adapters["ceiling"] = adapter_dir(ceiling_dir)
        if done("ceiling"):
            return root

    # 5. evaluate on test
    def compute_evaluate(work: StageWork) -> dict:
        from w2s_trl.evaluate import policy_margins, summarize
        from w2s_trl.label import label_with_reward_model
        from w2s_trl.weak import load_trained_reward_model

        test = split("test")
        model, tok = load_trained_reward_model(weak_dir)
        weak_rows = label_with_reward_model(model, tok, test, r.label.batch_size, r.weak.reward.max_length)
        margins = {"weak": [x["weak_margin"] if x["weak_correct"] else -x["weak_margin"] for x in weak_rows]}
        margins.update(policy_margins(r, test, adapters))
        metrics, predictions = summarize(test, margins, r.evaluate.region_reference)
        write_json_atomic(work.out / "metrics.json", metrics)
        write_jsonl(work.out / "predictions.jsonl", predictions)
        return {}

    eval_inputs = {
        "evaluate": r.evaluate.model_dump(),
        "upstream": {name: fp(name) for name in ("data", "weak", *adapters)},
        "beta": r.align.args.get("beta", 0.1),
    }
    eval_dir = rd.run("evaluate", eval_inputs, compute_evaluate)
    if done("evaluate"):
        return root

    # 6. report
    if rd.is_main:
        finalize(r, rd, eval_dir)
    return root


def finalize(r: Recipe, rd: RunDir, eval_dir: Path) -> dict:
    from w2s_trl.report import render_report, summary_table
    from w2s_trl.tracking import log_summary

    metrics = json.loads((eval_dir / "metrics.json").read_text())
    metrics["runtime_s"] = {s: rd.record(s)["runtime_s"] for s in STAGES if rd.record(s)}
    metrics["cached_stages"] = rd.skipped
    metrics["versions"] = package_versions()
    metrics["run"] = {"name": r.run.name, "seed": r.run.seed, "command": " ".join(sys.argv)}
    write_json_atomic(rd.root / "metrics.json", metrics)
    write_text_atomic(rd.root / "report.md", render_report(r.run.name, metrics))
    log_summary(r.tracking, r.run.name, metrics)
    print(f"\n[w2s-trl] results in {rd.root}/ (metrics.json, report.md, predictions in evaluate/)\n")
    print(summary_table(metrics))
    return metrics
