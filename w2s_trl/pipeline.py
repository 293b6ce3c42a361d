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
from w2s_trl.recipe import Recipe, RewardModelSpec, dump_recipe
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


def reward_model_specs(spec) -> list[str]:
    """Every model spec a reward specification names (for the offline decision)."""
    if isinstance(spec, RewardModelSpec):
        return [spec.model]
    sides = [s.model for s in (spec.strong, spec.weak) if s is not None]
    return sides + [m for m in (spec.base, spec.model, spec.router.model) if m is not None]


def reward_spec_inputs(spec) -> dict:
    """What a reward source's scores depend on: its spec and the contents of the files it names."""
    import hashlib

    digests = {}
    for name in spec.files():
        path = Path(name)
        parts = sorted(path.rglob("*")) if path.is_dir() else [path]
        h = hashlib.sha256()
        for part in (p for p in parts if p.is_file()):
            h.update(part.read_bytes())
        digests[name] = h.hexdigest()[:16]
    return {"spec": spec.model_dump(), "files": digests}


def configure_environment(recipe: Recipe) -> None:
    """Offline and quiet by default: no telemetry; no hub access when nothing names a hub id (run.offline: auto)."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    specs = [recipe.strong.model, *reward_model_specs(recipe.weak.reward)]
    needs_hub = any(is_hub_spec(s) for s in specs) or is_hub_spec(recipe.data.source) and recipe.data.source != "testbed:hh"
    offline = recipe.run.offline == "on" or (recipe.run.offline == "auto" and not needs_hub)
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def use_all_cores(num_processes: int) -> None:
    """On CPU, split the cores among the processes. `accelerate launch` without a config sets OMP_NUM_THREADS=1,
    which leaves all but one core idle (measured: a DPO step 20 s with 1 thread vs 16 s with 2 here)."""
    import torch

    if torch.cuda.is_available():
        return
    threads = max(1, len(os.sched_getaffinity(0)) // max(1, num_processes))
    if torch.get_num_threads() != threads:
        print(f"[w2s-trl] CPU: using {threads} threads per process (was {torch.get_num_threads()})", flush=True)
        torch.set_num_threads(threads)


def run_pipeline(recipe: Recipe, stop_after: str | None = None) -> Path:
    from accelerate import PartialState

    from w2s_trl.data import SPLITS, load_source, read_jsonl, split_rows, write_jsonl
    from w2s_trl.tracking import setup_tracking

    configure_environment(recipe)
    state = PartialState()
    use_all_cores(state.num_processes)
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

    # 2. weak: a reward model is trained on weak_train ground truth; other reward sources need no training
    def compute_weak(work: StageWork) -> dict:
        from w2s_trl.weak import train_reward_model

        return train_reward_model(r.weak.reward, split("weak_train"), work, r.run.seed, report_to, f"{r.run.name}/weak")

    trains_weak = isinstance(r.weak.reward, RewardModelSpec)
    if trains_weak:
        weak_inputs = {"reward": r.weak.reward.model_dump(), "data": fp("data"), "seed": r.run.seed}
        weak_dir = rd.run("weak", weak_inputs, compute_weak, all_ranks=True)
    if done("weak"):
        return root
    source_inputs = fp("weak") if trains_weak else reward_spec_inputs(r.weak.reward)

    def reward_source():
        from w2s_trl.rewards import build_reward_source

        return build_reward_source(r.weak.reward, str(weak_dir / "model") if trains_weak else None)

    # 3. label: weak labels on w2s_train pairs, or best-of-n pairs on its prompts
    def compute_label(work: StageWork) -> dict:
        if r.label.method == "weak_labels":
            from w2s_trl.label import weak_label_rows

            rows = split("w2s_train")
            rows = weak_label_rows(rows, *reward_source().score_pairs(rows))
            write_jsonl(work.out / "w2s_train.labelled.jsonl", rows)
            return {"weak_label_accuracy": sum(x["weak_correct"] for x in rows) / len(rows)}
        from w2s_trl.align import load_strong_base
        from w2s_trl.annotate import best_of_n, pairs_from_progress

        rows = split("w2s_train")
        work.checkpoints.mkdir(parents=True, exist_ok=True)
        progress = work.checkpoints / "best_of_n.progress.jsonl"  # survives a kill; finished prompts are kept
        policy, tok = load_strong_base(r)
        counts = best_of_n(policy, tok, rows, reward_source(), r.label.best_of_n, r.run.seed, progress)
        write_jsonl(work.out / "w2s_train.labelled.jsonl", pairs_from_progress(progress, [x["id"] for x in rows]))
        write_jsonl(work.out / "best_of_n.all.jsonl", read_jsonl(progress))
        return counts

    label_inputs = {"label": r.label.model_dump(), "source": source_inputs, "data": fp("data"), "seed": r.run.seed}
    if r.label.method == "best_of_n":
        label_inputs["policy"] = r.strong.model_dump()
    label_dir = rd.run("label", label_inputs, compute_label)
    if done("label"):
        return root

    # 4. student on the labels, ceiling on ground truth: the same training, other rows
    from w2s_trl.align import adapter_dir, train_policy

    align_inputs = {"strong": r.strong.model_dump(), "align": r.align.model_dump(exclude={"ceiling"}), "seed": r.run.seed}
    student_dir = rd.run(
        "student",
        {**align_inputs, "rows": fp("label")},
        lambda work: train_policy(r, read_jsonl(label_dir / "w2s_train.labelled.jsonl"), work, f"{r.run.name}/student"),
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

    # 5. evaluate on test: the reward source ("weak"), the policies, and optionally the base policy
    def compute_evaluate(work: StageWork) -> dict:
        from w2s_trl.evaluate import policy_margins, summarize

        test = split("test")
        chosen, rejected = reward_source().score_pairs(test)
        margins = {"weak": [c - x for c, x in zip(chosen, rejected)]}
        margins.update(policy_margins(r, test, adapters, include_base=r.evaluate.base))
        metrics, predictions = summarize(test, margins, r.evaluate.region_reference)
        write_json_atomic(work.out / "metrics.json", metrics)
        write_jsonl(work.out / "predictions.jsonl", predictions)
        return {}

    eval_inputs = {
        "evaluate": r.evaluate.model_dump(),
        "source": source_inputs,
        "upstream": {name: fp(name) for name in ("data", *adapters)},
        "align": r.align.model_dump(exclude={"ceiling"}),
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
