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


def source_digest(source: str) -> str | None:
    """Contents of a local data file or folder (a cached data stage is reused only for the same bytes)."""
    import hashlib

    path = Path(source)
    if not path.exists():
        return None
    h = hashlib.sha256()
    for part in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if part.is_file():
            h.update(str(part.relative_to(path) if path.is_dir() else part.name).encode())
            h.update(part.read_bytes())
    return h.hexdigest()[:16]


def length_tokenizers(r: Recipe) -> dict[str, tuple[str, str, bool]]:
    """Tokenizers whose lengths the data stage reports: name -> (model spec, kind, trust_remote_code)."""
    out = {"strong": (r.strong.model, "causal", r.strong.trust_remote_code)}
    if isinstance(r.weak.reward, RewardModelSpec):
        out["weak"] = (r.weak.reward.model, "reward", r.weak.reward.trust_remote_code)
    return out


def data_lengths(r: Recipe, splits: dict[str, list[dict]]) -> tuple[dict, dict]:
    """Token-length percentiles per tokenizer and split (SCIENCE.md 7), and each model's resolved max_length:
    `auto` = the 95th percentile of prompt + response on the split it trains on, bounded by the model's limit."""
    from w2s_trl.models import load_tokenizer, spec_limit
    from w2s_trl.truncation import auto_from_p95, length_stats

    lengths, resolved = {}, {}
    settings = {"strong": (r.align.max_length_setting(), "w2s_train")}
    if isinstance(r.weak.reward, RewardModelSpec):
        settings["weak"] = (r.weak.reward.max_length, "weak_train")
    for name, (spec, kind, trust) in length_tokenizers(r).items():
        tok = load_tokenizer(spec, trust)
        lengths[name] = {split: length_stats(rows, tok, kind) for split, rows in splits.items()}
        setting, split = settings[name]
        limit = spec_limit(spec, trust)
        resolved[name] = auto_from_p95(lengths[name][split]["full"]["p95"], limit) if setting == "auto" else setting
        full, prompt, response = (lengths[name][split][part] for part in ("full", "prompt", "response"))
        print(f"[w2s-trl] data: {name} tokenizer, {split} prompt+response tokens p50 {full['p50']} p95 {full['p95']} "
              f"max {full['max']} (prompt p95 {prompt['p95']}, response p95 {response['p95']} max {response['max']}); "
              f"max_length {setting} -> {resolved[name]} (model limit {limit})", flush=True)  # fmt: skip
    return lengths, resolved


def run_pipeline(recipe: Recipe, stop_after: str | None = None) -> Path:
    from accelerate import PartialState

    from w2s_trl.data import load_source, read_jsonl, split_rows, write_jsonl
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

    # 1. data: load the source (malformed rows skipped and counted), split it by stable groups, measure lengths
    def compute_data(work: StageWork) -> dict:
        d = r.data
        loaded = load_source(d.source, d.size, d.seed, d.objectives, d.hub_split, d.hub_objective, d.on_invalid,
                             d.testbed.options())  # fmt: skip
        splits = split_rows(loaded.rows, d.fractions.model_dump(), d.max_rows.model_dump(), d.seed)
        for name, split in splits.items():
            write_jsonl(work.out / f"{name}.jsonl", split)
        lengths, max_length = data_lengths(r, splits)
        write_json_atomic(work.out / "lengths.json", lengths)
        return {"rows": {name: len(split) for name, split in splits.items()}, "source": loaded.summary(),
                "max_length": max_length}  # fmt: skip

    data_inputs = {
        "data": r.data.model_dump(),
        "source_digest": source_digest(r.data.source),
        "tokenizers": {k: v[0] for k, v in length_tokenizers(r).items()},
        "max_length": {"strong": r.align.max_length_setting(),
                       "weak": getattr(r.weak.reward, "max_length", None)},
    }  # fmt: skip
    data_dir = rd.run("data", data_inputs, compute_data)
    split = lambda name: read_jsonl(data_dir / f"{name}.jsonl")  # noqa: E731
    max_length = rd.record("data")["max_length"]
    if done("data"):
        return root

    # 2. weak: a reward model is trained on weak_train ground truth; other reward sources need no training
    def compute_weak(work: StageWork) -> dict:
        from w2s_trl.weak import train_reward_model

        return train_reward_model(r.weak.reward, split("weak_train"), work, r.run.seed, report_to, f"{r.run.name}/weak",
                                  max_length["weak"])  # fmt: skip

    trains_weak = isinstance(r.weak.reward, RewardModelSpec)
    if trains_weak:
        weak_inputs = {"reward": r.weak.reward.model_dump(), "data": fp("data"), "seed": r.run.seed}
        weak_dir = rd.run("weak", weak_inputs, compute_weak, all_ranks=True)
    if done("weak"):
        return root
    source_inputs = fp("weak") if trains_weak else reward_spec_inputs(r.weak.reward)

    def reward_source():
        from w2s_trl.rewards import build_reward_source

        model_path = str(weak_dir / "model") if trains_weak else None
        return build_reward_source(r.weak.reward, model_path, max_length.get("weak"))

    # 3. label: weak labels on w2s_train pairs (ties left out), or best-of-n pairs on its prompts
    def compute_label(work: StageWork) -> dict:
        from w2s_trl.truncation import TruncationCount

        if r.label.method == "weak_labels":
            from w2s_trl.label import describe, weak_label_rows

            rows = split("w2s_train")
            count = TruncationCount("label (weak scoring of w2s_train responses)", max_length.get("weak"))
            labelled, summary = weak_label_rows(rows, *reward_source().score_pairs(rows, count))
            count.report()
            print(describe(summary), flush=True)
            write_jsonl(work.out / "w2s_train.labelled.jsonl", labelled)
            return {**summary, "truncation": count.as_dict()}
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

    align_inputs = {"strong": r.strong.model_dump(), "align": r.align.model_dump(exclude={"ceiling"}),
                    "max_length": max_length["strong"], "seed": r.run.seed}  # fmt: skip
    student_dir = rd.run(
        "student",
        {**align_inputs, "rows": fp("label")},
        lambda work: train_policy(r, read_jsonl(label_dir / "w2s_train.labelled.jsonl"), work,
                                  f"{r.run.name}/student", max_length["strong"], "student"),  # fmt: skip
        all_ranks=True,
    )
    if done("student"):
        return root
    adapters = {"student": adapter_dir(student_dir)}
    if r.align.ceiling:
        ceiling_dir = rd.run(
            "ceiling",
            {**align_inputs, "rows": fp("data")},
            lambda work: train_policy(r, split("w2s_train"), work, f"{r.run.name}/ceiling", max_length["strong"],
                                      "ceiling"),  # fmt: skip
            all_ranks=True,
        )
        adapters["ceiling"] = adapter_dir(ceiling_dir)
        if done("ceiling"):
            return root

    # 5. evaluate on test: the reward source ("weak"), the base policy and the aligned ones, with intervals
    def compute_evaluate(work: StageWork) -> dict:
        from w2s_trl.evaluate import policy_logprobs, policy_margins, summarize, trainer_beta
        from w2s_trl.truncation import TruncationCount

        test = split("test")
        weak_count = TruncationCount("evaluate (weak scoring of test responses)", max_length.get("weak"))
        chosen, rejected = reward_source().score_pairs(test, weak_count)
        weak_count.report()
        policy_count = TruncationCount("evaluate (policy scoring of test responses)", max_length["strong"])
        logps = policy_logprobs(r, test, adapters, r.evaluate.base, max_length["strong"], policy_count)
        policy_count.report()
        margins = policy_margins(r.align.trainer, trainer_beta(r), logps, r.evaluate.base)
        weak_margins = [None if c is None or x is None else c - x for c, x in zip(chosen, rejected)]
        for rule in margins.values():
            rule["weak"] = weak_margins
        metrics, predictions = summarize(test, margins, r.evaluate.region_reference, r.evaluate.bootstrap,
                                         r.evaluate.bootstrap_seed)  # fmt: skip
        metrics["truncation"] = {"weak": weak_count.as_dict(), "policies": policy_count.as_dict()}
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
    metrics["data"] = {k: rd.record("data").get(k) for k in ("rows", "source", "max_length")}
    label = rd.record("label") or {}
    metrics["labels"] = {k: label.get(k) for k in ("rows", "labelled", "weak_ties", "tie_examples", "unscored",
                                                   "weak_label_accuracy", "weak_label_accuracy_labelled")
                         if k in label}  # fmt: skip
    metrics["truncation"] = {
        **{s: rd.record(s)["truncation"] for s in ("weak", "label", "student", "ceiling")
           if rd.record(s) and "truncation" in rd.record(s)},
        **{f"evaluate_{k}": v for k, v in metrics.get("truncation", {}).items()},
    }  # fmt: skip
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
