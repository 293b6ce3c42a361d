"""The whole life of a weak-to-strong run, top to bottom: data -> weak -> label -> student/ceiling -> evaluate ->
report. Each stage reads and writes files in the run directory only (rundir.py), so a re-run skips completed stages
whose inputs are unchanged and resumes an interrupted training from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass
from datetime import timedelta
from importlib import metadata
from pathlib import Path
from typing import Callable

from w2s_trl.models import env_true, is_hub_spec, read_chat_template
from w2s_trl.redact import scrub
from w2s_trl.recipe import Recipe, dump_recipe
from w2s_trl.rundir import RunDir, StageWork, write_json_atomic, write_text_atomic

PACKAGES = ("w2s-trl", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "wandb", "gguf")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def trained_spec_inputs(spec) -> dict:
    """A trained reward model's spec, plus how a derived embedded model is built (a changed derivation retrains)."""
    from w2s_trl.models import embedded_revision

    revision = embedded_revision(getattr(spec, "model", ""))
    return {**spec.model_dump(), **({"embedded_revision": revision} if revision else {})}


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
    """Offline and quiet by default: no telemetry; no hub access when nothing names a hub id (run.offline: auto).
    huggingface_hub and datasets read these switches once, when imported, and loading the recipe has already imported
    them (TRL's configs check the trainer arguments): their module constants are set too, so the switches hold."""
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    specs = [recipe.strong.model, *recipe.weak.reward.model_specs(), *probe_model_specs(recipe)]
    needs_hub = any(is_hub_spec(s) for s in specs) or bool(recipe.data.hub_ids())
    offline = recipe.run.offline == "on" or (recipe.run.offline == "auto" and not needs_hub)
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    apply_hub_switches()


def apply_hub_switches() -> None:
    """The environment's offline / telemetry switches into huggingface_hub's and datasets' constants, when those
    modules were imported before the switches were set."""
    offline, no_telemetry = env_true("HF_HUB_OFFLINE"), env_true("HF_HUB_DISABLE_TELEMETRY")
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        hub.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE or offline
        hub.HF_HUB_DISABLE_TELEMETRY = hub.HF_HUB_DISABLE_TELEMETRY or no_telemetry or offline
    ds = sys.modules.get("datasets.config")
    if ds is not None and offline:
        ds.HF_HUB_OFFLINE = ds.HF_DATASETS_OFFLINE = True


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


def sized_reward_models(r: Recipe) -> dict:
    """{key: RewardModelSpec} of every reward model the run trains, whose `max_length: auto` the data stage resolves:
    `weak` (or `weak.<objective>` inside a multi-objective reward), and the probe's `probe.<name>` supervisors and
    `probe.intermediate`."""
    out = dict(r.weak.reward.trained())
    if r.probe is not None:
        for name, spec in r.probe.weak_capacities.items():
            out.update(spec.trained(f"probe.{name}"))
        if r.probe.mitigations.intermediate is not None:
            out["probe.intermediate"] = r.probe.mitigations.intermediate
        if r.probe.competing_reward.type == "reward_model":
            out["probe.competing"] = r.probe.competing_reward
    return out


def length_tokenizers(r: Recipe) -> dict[str, tuple[str, str, bool]]:
    """Tokenizers whose lengths the data stage reports: name -> (model spec, kind, trust_remote_code)."""
    out = {"strong": (r.strong.model, "causal", r.strong.trust_remote_code)}
    for key, spec in sized_reward_models(r).items():
        out[key] = (spec.model, "reward", spec.trust_remote_code)
    return out


def probe_model_specs(r: Recipe) -> list[str]:
    return [] if r.probe is None else r.probe.model_specs()


def data_lengths(r: Recipe, splits: dict[str, list[dict]]) -> tuple[dict, dict]:
    """Token-length percentiles per tokenizer and split (SCIENCE.md 7), and each model's resolved max_length:
    `auto` = the 95th percentile of prompt + response on the split it trains on, bounded by the model's limit."""
    from w2s_trl.models import load_tokenizer, spec_limit
    from w2s_trl.truncation import auto_from_p95, length_stats

    lengths, resolved = {}, {}
    settings = {"strong": (r.align.max_length_setting(), "w2s_train")}
    settings.update({key: (spec.max_length, "weak_train") for key, spec in sized_reward_models(r).items()})
    for name, (spec, kind, trust) in length_tokenizers(r).items():
        tok = load_tokenizer(spec, trust, chat_template=r.strong.chat_template if name == "strong" else None)
        lengths[name] = {split: length_stats(rows, tok, kind) for split, rows in splits.items()}
        setting, split = settings[name]
        limit = spec_limit(spec, trust)
        resolved[name] = auto_from_p95(lengths[name][split]["full"]["p95"], limit) if setting == "auto" else setting
        full, prompt, response = (lengths[name][split][part] for part in ("full", "prompt", "response"))
        print(f"[w2s-trl] data: {name} tokenizer, {split} prompt+response tokens p50 {full['p50']} p95 {full['p95']} "
              f"max {full['max']} (prompt p95 {prompt['p95']}, response p95 {response['p95']} max {response['max']}); "
              f"max_length {setting} -> {resolved[name]} (model limit {limit})", flush=True)  # fmt: skip
        if response["max"] > resolved[name]:  # known now, not minutes into a run: the rows each stage will drop
            loud = "WARNING: more than 5% of" if response["p95"] > resolved[name] else "some of"
            print(f"[w2s-trl] data: {loud} {split}'s responses are longer than {name}'s max_length {resolved[name]} "
                  f"(up to {response['max']} tokens) and will be dropped (a response is never cut); raise its "
                  "max_length to keep them", flush=True)  # fmt: skip
    return lengths, resolved


# ----------------------------------------------------------------------------------------------------------------------
# The stages, declared: name, what its result depends on (its cache key), how it computes, on which ranks. The CLI's
# --stop-after choices and the deception probe (probe.py) reuse them.


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: Callable[["Run"], dict]  # everything the result depends on: config sections, upstream fingerprints
    compute: Callable[["Run", StageWork], dict | None]  # writes into work.out; returns what stage.json records
    all_ranks: bool = False  # training runs on every accelerate process; everything else on the main one
    applies: Callable[["Run"], bool] = lambda run: True


class Run:
    """What the stages of one run share: the recipe, its run directory, and readers of finished stages' files."""

    def __init__(self, recipe: Recipe, rd: RunDir):
        self.r, self.rd = recipe, rd
        self.report_to = list(recipe.tracking.report_to)

    def fp(self, stage: str) -> str:
        return self.rd.record(stage)["fingerprint"]

    def split(self, name: str) -> list[dict]:
        from w2s_trl.data import read_jsonl

        return read_jsonl(self.rd.stage_dir("data") / f"{name}.jsonl")

    @property
    def max_length(self) -> dict:
        return self.rd.record("data")["max_length"]

    def trained_weak(self) -> dict:
        """{key: RewardModelSpec} the weak stage trains (one per objective of a multi-objective reward)."""
        return self.r.weak.reward.trained()

    def source_context(self):
        from w2s_trl.rewards import SourceContext

        weak_dir = self.rd.stage_dir("weak")
        trained = {key: str(weak_dir / weak_model_folder(key)) for key in self.trained_weak()}
        label = self.rd.record("label") or {}
        return SourceContext(trained, self.max_length, {"weak": label["normalization"]} if label.get("normalization")
                             else {})  # fmt: skip

    def source_inputs(self) -> dict:
        return {"weak": self.fp("weak")} if self.trained_weak() else reward_spec_inputs(self.r.weak.reward)

    def eval_rows(self) -> list[dict] | None:
        """test (ground truth) for the trainers' own evaluation curves, when tracking.eval_curves asks for them."""
        return self.split("test") if self.r.tracking.eval_on_test() else None

    def adapters(self) -> dict[str, Path]:
        from w2s_trl.align import adapter_dir

        names = ["student"] + (["ceiling"] if self.r.align.ceiling else [])
        return {name: adapter_dir(self.rd.stage_dir(name)) for name in names}


REF_CACHE = "cache"  # run-level caches shared by stages (reference log-probs: training/reference.py)


def weak_model_folder(key: str) -> str:
    """Where the weak stage keeps the reward model trained for `key`: weak/model, weak/weak.helpful/model, ..."""
    return "model" if key == "weak" else f"{key}/model"


# 1. data: load the source (malformed rows skipped and counted), split it by stable groups, measure lengths
def data_inputs(run: Run) -> dict:
    r = run.r
    return {
        "data": r.data.model_dump(),
        "source_digest": [source_digest(p) for p in r.data.local_paths()],
        "tokenizers": {k: v[0] for k, v in length_tokenizers(r).items()},
        "chat_template": r.strong.chat_template and read_chat_template(r.strong.chat_template),
        "max_length": {"strong": r.align.max_length_setting(),
                       **{k: s.max_length for k, s in sized_reward_models(r).items()}},
    }  # fmt: skip


def compute_data(run: Run, work: StageWork) -> dict:
    from w2s_trl.data import check_objectives, load_source, split_rows, write_jsonl

    d, r = run.r.data, run.r
    loaded = load_source(d.source, d.size, d.seed, d.objectives, d.hub_split, d.hub_objective, d.on_invalid,
                         d.testbed.options(), d.hub_name, d.hub_data_dir,
                         [e.model_dump() for e in d.datasets] if d.datasets else None)  # fmt: skip
    splits = split_rows(loaded.rows, d.fractions.model_dump(), d.max_rows.model_dump(), d.seed)
    needed = [key.rsplit(".", 1)[-1] for key in run.trained_weak() if key != "weak"]  # a multi-objective weak reward
    if needed:
        check_objectives(splits["weak_train"], needed, d.source or "data.datasets")
    for name, split in splits.items():
        write_jsonl(work.out / f"{name}.jsonl", split)
    lengths, max_length = data_lengths(r, splits)
    write_json_atomic(work.out / "lengths.json", lengths)
    return {"rows": {name: len(split) for name, split in splits.items()}, "source": loaded.summary(),
            "max_length": max_length}  # fmt: skip


# 2. weak: each reward model of the weak reward is trained on its own objective's weak_train ground truth (all of
#    weak_train for a single reward model); other reward sources need no training
def weak_inputs(run: Run) -> dict:
    return {"reward": trained_spec_inputs(run.r.weak.reward), "data": run.fp("data"), "seed": run.r.run.seed}


def compute_weak(run: Run, work: StageWork) -> dict:
    from w2s_trl.data import objective_rows
    from w2s_trl.weak import train_reward_model

    out = {}
    for key, spec in run.trained_weak().items():
        rows = run.split("weak_train")
        if key != "weak":  # weak.<objective>: that objective's ground truth, oriented by it
            rows = objective_rows(rows, key.rsplit(".", 1)[-1])
        folder = Path(weak_model_folder(key)).parent
        sub = StageWork(out=work.out / folder, checkpoints=work.checkpoints / folder)
        sub.out.mkdir(parents=True, exist_ok=True)
        out[key] = train_reward_model(spec, rows, sub, run.r.run.seed, run.report_to, f"{run.r.run.name}/{key}",
                                      run.max_length[key], project=run.r.tracking.project)  # fmt: skip
    return out["weak"] if list(out) == ["weak"] else {"models": out, "truncation": _merged_truncation(out)}


def _merged_truncation(records: dict) -> dict:
    first = next(iter(records.values()))["truncation"]
    return {**first, "per_model": {k: v["truncation"] for k, v in records.items()}}


# 3. label: weak labels on w2s_train pairs (ties left out), or best-of-n pairs on its prompts
def label_inputs(run: Run) -> dict:
    r = run.r
    inputs = {"label": r.label.model_dump(), "source": run.source_inputs(), "data": run.fp("data"), "seed": r.run.seed,
              "online": r.align.online}  # an online run's label stage writes no pairs: never reused by an offline one
    if r.label.method == "best_of_n":
        inputs["policy"] = r.strong.model_dump()
    return inputs


def compute_label(run: Run, work: StageWork) -> dict:
    from w2s_trl.data import read_jsonl, write_jsonl
    from w2s_trl.rewards import build_reward_source

    r = run.r
    source = build_reward_source(r.weak.reward, run.source_context())
    normalization = source.fit_normalization(run.split("weak_train")) if hasattr(source, "fit_normalization") else None
    if r.align.online:  # the student samples its own completions: only the reward's statistics are fixed here
        return {"online": r.align.trainer, "normalization": normalization}
    if r.label.method == "weak_labels":
        from w2s_trl.label import label_with_source

        return {**label_with_source(source, run.split("w2s_train"), work.out, run.max_length.get("weak")),
                "normalization": normalization}  # fmt: skip
    from w2s_trl.align import load_strong_base
    from w2s_trl.annotate import best_of_n, pairs_from_progress

    rows = run.split("w2s_train")
    work.checkpoints.mkdir(parents=True, exist_ok=True)
    progress = work.checkpoints / "best_of_n.progress.jsonl"  # survives a kill; finished prompts are kept
    policy, tok = load_strong_base(r)
    counts = best_of_n(policy, tok, rows, source, r.label.best_of_n, r.run.seed, progress)
    write_jsonl(work.out / "w2s_train.labelled.jsonl", pairs_from_progress(progress, [x["id"] for x in rows]))
    write_jsonl(work.out / "best_of_n.all.jsonl", read_jsonl(progress))
    return {**counts, "normalization": normalization}


# 4. student on the labels, ceiling on ground truth: the same training, other rows
def align_inputs(run: Run) -> dict:
    r = run.r
    return {"strong": r.strong.model_dump(), "align": r.align.model_dump(exclude={"ceiling"}),
            "max_length": run.max_length["strong"], "seed": r.run.seed}  # fmt: skip


def compute_student(run: Run, work: StageWork) -> dict:
    from w2s_trl.align import train_online_policy, train_policy
    from w2s_trl.data import read_jsonl

    if run.r.align.online:  # online RL on w2s_train's prompts, rewarded by the weak reward source
        from w2s_trl.rewards import build_reward_source

        source = build_reward_source(run.r.weak.reward, run.source_context())
        return train_online_policy(run.r, run.split("w2s_train"), source, work, f"{run.r.run.name}/student",
                                   run.max_length["strong"], "student")  # fmt: skip

    rows = read_jsonl(run.rd.stage_dir("label") / "w2s_train.labelled.jsonl")
    return train_policy(run.r, rows, work, f"{run.r.run.name}/student", run.max_length["strong"], "student",
                        eval_rows=run.eval_rows(), ref_cache_dir=run.rd.root / REF_CACHE)  # fmt: skip


def compute_ceiling(run: Run, work: StageWork) -> dict:
    from w2s_trl.align import train_policy

    return train_policy(run.r, run.split("w2s_train"), work, f"{run.r.run.name}/ceiling", run.max_length["strong"],
                        "ceiling", eval_rows=run.eval_rows(), ref_cache_dir=run.rd.root / REF_CACHE)  # fmt: skip


# 5. evaluate on test: the reward source ("weak"), the base policy and the aligned ones, with intervals
def evaluate_inputs(run: Run) -> dict:
    return {
        "evaluate": run.r.evaluate.model_dump(),
        "source": run.source_inputs(),
        "normalization": (run.rd.record("label") or {}).get("normalization"),  # multi-objective statistics
        "upstream": {name: run.fp(name) for name in ("data", *run.adapters())},
        "align": run.r.align.model_dump(exclude={"ceiling"}),
    }


def compute_evaluate(run: Run, work: StageWork) -> dict:
    from w2s_trl.data import write_jsonl
    from w2s_trl.evaluation import policy_logprobs, policy_margins, summarize, trainer_beta
    from w2s_trl.rewards import build_reward_source
    from w2s_trl.truncation import TruncationCount

    r, test = run.r, run.split("test")
    weak_count = TruncationCount("evaluate (weak scoring of test responses)", run.max_length.get("weak"))
    chosen, rejected = build_reward_source(r.weak.reward, run.source_context()).score_pairs(test, weak_count)
    weak_count.report()
    policy_count = TruncationCount("evaluate (policy scoring of test responses)", run.max_length["strong"])
    logps = policy_logprobs(r, test, run.adapters(), r.evaluate.base, run.max_length["strong"], policy_count)
    policy_count.report()
    margins = policy_margins(r.align.trainer, trainer_beta(r), logps, r.evaluate.base)
    weak_margins = [None if c is None or x is None else c - x for c, x in zip(chosen, rejected)]
    for rule in margins.values():
        rule["weak"] = weak_margins
    metrics, predictions = summarize(test, margins, r.evaluate.region_reference, r.evaluate.bootstrap,
                                     r.evaluate.bootstrap_seed)  # fmt: skip
    metrics["truncation"] = {"weak": weak_count.as_dict(), "policies": policy_count.as_dict()}
    metrics["deception"] = student_deception(metrics, predictions, r.evaluate.bootstrap, r.evaluate.bootstrap_seed)
    if r.align.online and r.evaluate.generations:
        from w2s_trl.online_eval import evaluate_generations

        source = build_reward_source(r.weak.reward, run.source_context())
        metrics["online"], records = evaluate_generations(r, test, run.adapters()["student"], source,
                                                          run.max_length["strong"])  # fmt: skip
        metrics["online"]["training"] = online_training_summary(run.rd.stage_dir("student"))
        write_jsonl(work.out / "generations.jsonl", records)
    write_json_atomic(work.out / "metrics.json", metrics)
    write_jsonl(work.out / "predictions.jsonl", predictions)
    return {}


def student_deception(metrics: dict, predictions: list[dict], resamples: int, seed: int) -> dict | None:
    """DS, chance, DS - chance and the deception gap of the student against the weak supervisor (SCIENCE.md 2): K_w
    where the weak supervisor is right, K_s where the region reference is, on the resamples every other interval
    uses (the same seed)."""
    from w2s_trl.deception import deception_flags, deception_metrics
    from w2s_trl.metrics import bootstrap_indices

    block = metrics["primary"]
    ref = block.get("region_reference")
    if ref is None or not predictions:
        return None
    suffix = "" if block["region_reference_rule"] == "primary" else f"_{block['region_reference_rule']}"
    column = lambda key: [p[key] for p in predictions]  # noqa: E731
    result = deception_metrics(column("weak_correct"), column(f"{ref}_correct{suffix}"), column("student_correct"),
                               bootstrap_indices(len(predictions), resamples, seed))  # fmt: skip
    return {**result, "reference": ref, "flags": deception_flags("the student", result)}


def online_training_summary(student_dir: Path) -> dict:
    """The online student's training log, first and last logged rewards (per objective) and KL."""
    from w2s_trl.data import read_jsonl

    history = [h for h in read_jsonl(student_dir / "history.jsonl") if any(k.startswith("rewards/") or k == "reward"
                                                                          for k in h)]  # fmt: skip
    keys = sorted({k for h in history for k in h if k.startswith("rewards/") and k.endswith("/mean")}
                  | {k for h in history for k in ("reward", "kl") if k in h})  # fmt: skip
    pick = lambda h: {k: h[k] for k in keys if k in h}  # noqa: E731
    return {"logged_steps": len(history), "first": pick(history[0]) if history else {},
            "last": pick(history[-1]) if history else {}, "curve": str(student_dir / "reward_curve.png")}  # fmt: skip


STAGES: tuple[Stage, ...] = (
    Stage("data", data_inputs, compute_data),
    Stage("weak", weak_inputs, compute_weak, all_ranks=True, applies=lambda run: bool(run.trained_weak())),
    Stage("label", label_inputs, compute_label),
    Stage("student", lambda run: {**align_inputs(run), "rows": run.fp("label")}, compute_student, all_ranks=True),
    Stage("ceiling", lambda run: {**align_inputs(run), "rows": run.fp("data")}, compute_ceiling, all_ranks=True,
          applies=lambda run: run.r.align.ceiling),
    Stage("evaluate", evaluate_inputs, compute_evaluate),
)
STAGE_NAMES = tuple(stage.name for stage in STAGES)


BARRIER_TIMEOUT = timedelta(hours=24)


def start_run(recipe: Recipe) -> Run:
    """Environment, accelerate state, the run directory with the resolved recipe, tracking."""
    from accelerate import PartialState

    from w2s_trl.tracking import setup_tracking

    configure_environment(recipe)
    # Several processes (accelerate launch): data, label (best-of-N too) and evaluate run on the main process only,
    # training stages on all (Stage.all_ranks); the others wait at a barrier. torch's default collective timeout
    # (30 min) would kill a run whose main-only stage takes longer, so the process group gets BARRIER_TIMEOUT.
    # Without a GPU, accelerate forms a process group only when asked for the CPU (gloo): PartialState() alone would
    # leave every process believing it is the only one, all of them writing the run directory.
    import torch

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    cpu = not torch.cuda.is_available() or env_true("ACCELERATE_USE_CPU")
    state = PartialState(cpu=cpu, timeout=BARRIER_TIMEOUT) if distributed else PartialState(cpu=cpu)
    use_all_cores(state.num_processes)
    root = Path(recipe.run.output_dir) / recipe.run.name
    rd = RunDir(root, is_main=state.is_main_process, barrier=state.wait_for_everyone)
    if rd.is_main:
        # environment secrets' values blanked in the values, then dumped (so the YAML stays valid)
        write_text_atomic(root / "recipe.resolved.yaml", dump_recipe(recipe, scrub))
    setup_tracking(recipe.tracking, root, recipe.run.name, recipe.model_dump(mode="json"))
    return Run(recipe, rd)


def run_pipeline(recipe: Recipe, stop_after: str | None = None) -> Path:
    """The whole run: each declared stage in order (skipped when complete with the same inputs), then the report.
    A recipe with a `probe` section runs the deception probe's sweep instead (probe.py)."""
    if recipe.probe is not None:
        from w2s_trl.probe import run_probe

        return run_probe(recipe, stop_after)
    run = start_run(recipe)
    for stage in STAGES:
        if not stage.applies(run):
            continue
        run.rd.run(stage.name, stage.inputs(run), lambda work, s=stage: s.compute(run, work), all_ranks=stage.all_ranks)
        if stop_after == stage.name:
            print(f"[w2s-trl] stopping after stage {stage.name} (--stop-after)", flush=True)
            return run.rd.root
    if run.rd.is_main:
        finalize(run.r, run.rd, run.rd.stage_dir("evaluate"))
        if run.r.hub.push:  # after the results are written: a failed push (an error, exit 2) loses none of them
            from w2s_trl.hub import push_run

            push_run(run.rd.root)
    return run.rd.root


def finalize(r: Recipe, rd: RunDir, eval_dir: Path) -> dict:
    from w2s_trl.report import render_report, summary_table
    from w2s_trl.tracking import log_summary

    metrics = json.loads((eval_dir / "metrics.json").read_text())
    metrics["data"] = {k: rd.record("data").get(k) for k in ("rows", "source", "max_length")}
    label = rd.record("label") or {}
    metrics["labels"] = {k: label.get(k) for k in ("rows", "labelled", "weak_ties", "tie_examples", "unscored",
                                                   "weak_label_accuracy", "weak_label_accuracy_ci",
                                                   "weak_label_accuracy_labelled", "objectives")
                         if k in label}  # fmt: skip
    metrics["truncation"] = {
        **{s: rd.record(s)["truncation"] for s in ("weak", "label", "student", "ceiling")
           if rd.record(s) and "truncation" in rd.record(s)},
        **{f"evaluate_{k}": v for k, v in metrics.get("truncation", {}).items()},
    }  # fmt: skip
    metrics["runtime_s"] = {s: rd.record(s)["runtime_s"] for s in STAGE_NAMES if rd.record(s)}
    metrics["cached_stages"] = rd.skipped
    metrics["versions"] = package_versions()
    metrics["run"] = {"name": r.run.name, "seed": r.run.seed, "command": scrub(" ".join(sys.argv))}
    write_json_atomic(rd.root / "metrics.json", metrics)
    write_text_atomic(rd.root / "report.md", render_report(r.run.name, metrics))
    log_summary(r.tracking, r.run.name, metrics, rd.root, r.model_dump(mode="json"))
    print(f"\n[w2s-trl] results in {rd.root}/ (metrics.json, report.md, predictions in evaluate/)\n")
    print(summary_table(metrics))
    return metrics
