"""Stages by their real effect: every recipe end to end under --smoke, skip-on-rerun, kill-and-resume, W&B offline."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from w2s_trl.cli import train_main

REPO = Path(__file__).resolve().parent.parent
# the weak-to-strong pipeline's recipes (dpo_weak_rm.yaml first); probe recipes have their own tests (test_probe.py)
RECIPES = sorted(p for p in (REPO / "recipes").rglob("*.yaml")
                 if "\nprobe:" not in p.read_text() and "accelerate" not in p.parts)  # fmt: skip


def run_dir(out: Path, recipe: Path) -> Path:
    import yaml

    return out / (yaml.safe_load(recipe.read_text())["run"]["name"] + "-smoke")


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_runs_under_smoke(recipe, tmp_path):
    from safetensors.torch import load_file

    from w2s_trl.recipe import load_recipe

    r = load_recipe(recipe, smoke=True)
    assert train_main([str(recipe), "--smoke", f"run.output_dir={tmp_path}"]) == 0
    root = run_dir(tmp_path, recipe)
    metrics = json.loads((root / "metrics.json").read_text())
    policies = {"student"} | ({"ceiling"} if r.align.ceiling else set())
    if r.align.trainer != "simpo":  # the base is its own reference (DPO, online RL): scored reference-free only
        assert set(metrics["primary"]["accuracy"]) == {"weak"} | policies
        assert set(metrics["reference_free"]["accuracy"]) == {"weak", "base"} | policies
    else:
        assert set(metrics["primary"]["accuracy"]) == {"weak", "base"} | policies and "reference_free" not in metrics
    for block in (metrics["primary"], metrics.get("reference_free", metrics["primary"])):
        for stat in block["accuracy"].values():  # every number with its interval
            lo, hi = stat["ci"]
            assert 0.0 <= lo <= stat["value"] <= hi <= 1.0
    if r.align.ceiling:
        pgr = metrics["primary"]["pgr"]
        assert pgr["value"] is not None or pgr["note"]
    assert isinstance(metrics["flags"], list) and metrics["weak_ties"] >= 0
    assert sum(cell["n"] for cell in metrics["primary"]["regions"].values()) == metrics["n_test"]
    assert metrics["primary"]["region_reference"] == r.evaluate.region_reference
    for objective in metrics["primary"]["by_objective"].values():  # strata within each objective
        assert sum(s["n"] for s in objective["strata"].values()) == objective["n"]
    report = (root / "report.md").read_text()
    assert "paired bootstrap 95% intervals" in report and "## Truncation" in report
    deception = metrics["deception"]  # the student against the weak supervisor, K_s from the region reference
    assert deception["reference"] == r.evaluate.region_reference and "## Deception against the weak" in report
    assert deception["counts"]["K_s"] == sum(metrics["primary"]["regions"][c]["n"] for c in ("K_w&K_s", "U_w&K_s"))
    assert {"data", "label", "student", "evaluate"} <= set(metrics["runtime_s"])
    assert metrics["versions"]["trl"].startswith("1.16")
    assert (root / "report.md").read_text().startswith("# w2s-trl run")
    assert (root / "recipe.resolved.yaml").exists()
    preds = (root / "evaluate" / "predictions.jsonl").read_text().splitlines()
    assert len(preds) == metrics["n_test"]
    if r.align.online:
        check_online_run(root, metrics, r)
    elif r.label.method == "weak_labels":
        labelled = [json.loads(x) for x in (root / "label" / "w2s_train.labelled.jsonl").read_text().splitlines()]
        # labels really come from the weak model: weak_correct matches the order it put in `chosen`
        gt = {json.loads(x)["id"]: json.loads(x) for x in (root / "data" / "w2s_train.jsonl").read_text().splitlines()}
        for row in labelled:
            assert row["weak_correct"] == (row["chosen"] == gt[row["id"]]["chosen"])
        labels = metrics["labels"]  # every w2s_train pair is labelled, or a counted tie, or counted unscored
        assert labels["labelled"] + labels["weak_ties"] + labels["unscored"] == labels["rows"] == len(gt)
        assert len(labelled) == labels["labelled"]
    else:
        # best-of-n: chosen is a top-scored sample, rejected a lower-scored one, all n scores kept
        labelled = [json.loads(x) for x in (root / "label" / "w2s_train.labelled.jsonl").read_text().splitlines()]
        for row in labelled:
            assert len(row["samples"]) == len(row["scores"]) == r.label.best_of_n.n
            chosen = row["samples"].index(row["chosen"][0]["content"])
            assert row["scores"][chosen] == max(row["scores"])
            assert row["chosen"] != row["rejected"]
    student = load_file(root / "student" / "adapter" / "adapter_model.safetensors")
    assert all(student[k].abs().sum() > 0 for k in student if "lora_B" in k)  # lora_B starts at 0: it trained
    if r.align.ceiling:
        # the student's LoRA adapter differs from the ceiling's: they trained on different rows
        ceiling = load_file(root / "ceiling" / "adapter" / "adapter_model.safetensors")
        assert any((student[k] != ceiling[k]).any() for k in student if "lora_B" in k)

    # a second run with the same inputs recomputes nothing
    stages = [s for s in ("data", "weak", "label", "student", "evaluate") if (root / s).exists()]
    stamps = {s: (root / s / "stage.json").stat().st_mtime_ns for s in stages}
    assert train_main([str(recipe), "--smoke", f"run.output_dir={tmp_path}"]) == 0
    assert stamps == {s: (root / s / "stage.json").stat().st_mtime_ns for s in stamps}
    assert set(json.loads((root / "metrics.json").read_text())["cached_stages"]) == set(stages) | (
        {"ceiling"} if r.align.ceiling else set()
    )


def check_online_run(root: Path, metrics: dict, r) -> None:
    """An online student: no training pairs, a training log with each objective's reward, completions sampled before
    and after on test prompts, judged and scored per objective, every number with its interval."""
    assert not (root / "label" / "w2s_train.labelled.jsonl").exists()
    history = [json.loads(x) for x in (root / "student" / "history.jsonl").read_text().splitlines()]
    names = list(json.loads((root / "student" / "stage.json").read_text())["rewards"])
    if r.weak.reward.type == "multi_objective":
        assert names == list(r.weak.reward.objectives)
    logged = [h for h in history if f"rewards/{names[0]}/mean" in h]
    assert len(logged) == 2 and all(f"rewards/{n}/mean" in h for n in names for h in logged)
    assert (root / "student" / "reward_curve.png").stat().st_size > 10_000
    online = metrics["online"]
    records = [json.loads(x) for x in (root / "evaluate" / "generations.jsonl").read_text().splitlines()]
    assert {x["model"] for x in records} == {"base", "student"} and online["prompts"] > 0
    judged = [x for x in records if x["check"] is not None and x["model"] == "student"]
    assert online["judged"]["judged"] == len(judged)
    if judged:
        assert online["judged"]["by"]["all"]["student"]["value"] == pytest.approx(
            sum(x["right"] for x in judged) / len(judged))  # fmt: skip
    for name in names:
        block = online["rewards"][name]
        scores = [x[f"reward/{name}"] for x in records if x["model"] == "student"]
        assert block["student"]["ci"][0] <= block["student"]["value"] <= block["student"]["ci"][1]
        assert len(scores) >= online["prompts"] and block["student - base"]["ci"] is not None
    assert "## Online RL: what the student writes" in (root / "report.md").read_text()



def test_changed_input_reruns_only_downstream_stages(tmp_path):
    recipe = next(p for p in RECIPES if "simpo" in p.name)  # best-of-n labels
    args = [str(recipe), "--smoke", f"run.output_dir={tmp_path}", "tracking.report_to=[]", "--stop-after", "label"]
    assert train_main(args) == 0
    root = run_dir(tmp_path, recipe)
    data_record = (root / "data" / "stage.json").read_text()
    label_fp = json.loads((root / "label" / "stage.json").read_text())["fingerprint"]
    samples = [json.loads(x)["samples"] for x in (root / "label" / "best_of_n.all.jsonl").read_text().splitlines()]
    assert {len(s) for s in samples} == {3}  # smoke caps n at 3
    assert not (root / "student").exists()
    assert train_main(args[:-2] + ["label.best_of_n.n=2", "--stop-after", "label"]) == 0  # a label-only input
    assert (root / "data" / "stage.json").read_text() == data_record  # upstream: not recomputed
    assert json.loads((root / "label" / "stage.json").read_text())["fingerprint"] != label_fp
    samples = [json.loads(x)["samples"] for x in (root / "label" / "best_of_n.all.jsonl").read_text().splitlines()]
    assert {len(s) for s in samples} == {2}  # really re-annotated with the new n


def _smoke_cmd(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "w2s_trl" / "train.py"), str(RECIPES[0]), "--smoke",
            f"run.output_dir={tmp_path}", *extra]  # fmt: skip


def test_killed_run_resumes_without_recomputing_complete_stages(tmp_path):
    root = run_dir(tmp_path, RECIPES[0])
    proc = subprocess.Popen(_smoke_cmd(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    deadline = time.time() + 240
    while not (root / "label" / "stage.json").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended or stalled before the label stage"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # between stages (or in the next one): no clean-up runs
    proc.wait()
    assert not (root / "metrics.json").exists()
    before = {s: (root / s / "stage.json").read_text() for s in ("data", "weak", "label")}
    out = subprocess.run(_smoke_cmd(tmp_path), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for stage in ("data", "weak", "label"):
        assert f"stage {stage}: complete with the same inputs, skipped" in out.stdout
        assert (root / stage / "stage.json").read_text() == before[stage]  # not recomputed
    assert "stage student: running" in out.stdout
    assert (root / "metrics.json").exists()


def test_interrupted_training_resumes_from_its_last_checkpoint(tmp_path, monkeypatch):
    from transformers import TrainerCallback

    import w2s_trl.align as align

    class Crash(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt("simulated interruption after checkpoint-2")

    real = align.make_trainer

    def crashing(*a, **k):
        trainer, count = real(*a, **k)
        trainer.add_callback(Crash())
        return trainer, count

    args = [str(RECIPES[0]), "--smoke", f"run.output_dir={tmp_path}", "align.args.max_steps=4",
            "align.args.save_steps=2", "--stop-after", "student"]  # fmt: skip
    monkeypatch.setattr(align, "make_trainer", crashing)
    with pytest.raises(KeyboardInterrupt):
        train_main(args)
    root = run_dir(tmp_path, RECIPES[0])
    assert not (root / "student").exists()
    assert (root / ".work" / "student" / "checkpoints" / "checkpoint-2").is_dir()
    monkeypatch.setattr(align, "make_trainer", real)
    assert train_main(args) == 0
    record = json.loads((root / "student" / "stage.json").read_text())
    assert record["resumed_from"].endswith("checkpoint-2") and record["global_step"] == 4
    assert not (root / ".work" / "student").exists()


def test_wandb_logs_offline_without_login(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["HOME"] = str(tmp_path)  # no ~/.netrc: not logged in
    out = subprocess.run(_smoke_cmd(tmp_path), capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "logging offline" in out.stdout
    offline_runs = list((run_dir(tmp_path, RECIPES[0]) / "wandb").glob("offline-run-*"))
    assert len(offline_runs) >= 4  # weak, student, ceiling trainers and the summary run


def test_wandb_key_without_a_reachable_server_falls_back_to_offline(tmp_path):
    """A W&B key and no server (a closed loopback port): one notice, offline logging, the run finishes, fast (W&B
    itself would fail authenticating or wait ~2 minutes)."""
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_API_KEY="x" * 40, WANDB_BASE_URL=f"http://127.0.0.1:{port}", HOME=str(tmp_path))
    start = time.perf_counter()
    out = subprocess.run(_smoke_cmd(tmp_path) + ["--stop-after", "weak"], capture_output=True, text=True, timeout=300,
                         env=env, stdin=subprocess.DEVNULL)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"W&B: 127.0.0.1:{port} is unreachable, logging offline" in out.stdout
    assert list((run_dir(tmp_path, RECIPES[0]) / "wandb").glob("offline-run-*"))
    assert time.perf_counter() - start < 90


# per recipe: trainer, W&B runs (each weak RM, the student, the summary), tables the summary run logs
WANDB_EXPECT = {
    "grpo_multi_objective.yaml": ("grpo", 4, {"predictions", "generations", "plots/student/reward_curve"}),
    "ppo_weak_rm.yaml": ("ppo", 3, {"predictions", "generations", "plots/student/reward_curve"}),
    "simpo_density_ratio.yaml": ("simpo", 2, {"predictions", "best_of_n_samples"}),
}


@pytest.mark.parametrize("name", sorted(WANDB_EXPECT))
def test_wandb_offline_runs_read_back(name, tmp_path):
    """W&B offline, read back from its files: the training runs' completion tables (GRPO's with one column per
    objective), and the summary run's config (the resolved recipe), metrics with intervals, weak-label and online
    numbers, prediction and completion tables, the plots, and report.md + metrics.json as an artifact; a planted
    secret reaches none of it."""
    from wandb_records import read_run

    planted = "planted-secret-0xC0FFEE"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(HOME=str(tmp_path), MY_SERVICE_TOKEN=planted)  # no ~/.netrc: not logged in
    recipe = REPO / "recipes" / name
    cmd = [sys.executable, str(REPO / "w2s_trl" / "train.py"), str(recipe), "--smoke", f"run.output_dir={tmp_path}",
           f"hub.repo_id=org/{planted}-{{stage}}",  # the secret flows into the recipe W&B receives as config
           f"tracking.log_adapters={'true' if 'ppo' in name else 'false'}"]  # opt-in
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-2000:]
    root = run_dir(tmp_path, recipe)
    assert "W&B summary run: " in out.stdout
    trainer, n_runs, logged_tables = WANDB_EXPECT[name]
    online = trainer in ("grpo", "ppo")
    if online:
        tables = [json.loads(p.read_text()) for p in root.glob("wandb/*/files/media/table/completions_*.table.json")]
        want = {"helpful", "harmless", "completion"} if trainer == "grpo" else {"reward", "completion"}
        assert tables and all(want <= set(t["columns"]) and t["data"] for t in tables)
    runs = [read_run(d) for d in sorted(root.glob("wandb/offline-run-*"))]
    assert len(runs) == n_runs
    assert all(r["config"].get("align", {}).get("trainer") == trainer for r in runs)  # the recipe in every run
    summary = next(r for r in runs if "predictions" in {k.split("/")[0] for k in r["history_keys"]})
    assert {"run", "data", "weak", "align", "evaluate", "tracking"} <= set(summary["config"])
    s = summary["summary"]
    assert {"primary/accuracy/student", "primary/accuracy/student/low", "primary/accuracy/student/high"} <= set(s)
    assert any(k.startswith("online/reward/") and k.endswith("/student-base/low") for k in s) == online
    deception = json.loads((root / "metrics.json").read_text())["deception"]
    for key in ("ds", "gap"):  # logged with its interval whenever the run could compute it
        assert (f"deception/{key}/low" in s) == (deception[key]["value"] is not None and bool(deception[key]["ci"]))
    logged = {k.split("/_type")[0] for k in summary["history_keys"] if k.endswith("/_type")}
    assert logged_tables <= logged  # tables and plots
    artifacts = dict(summary["artifacts"])
    assert {"predictions.table.json"} <= set(next(v for k, v in artifacts.items() if k.endswith("-predictions")))
    adapters = [v for k, v in artifacts.items() if k.endswith("-adapters")]
    assert bool(adapters) == (trainer == "ppo")  # only when asked
    if adapters:
        assert {"student/adapter_config.json", "student/adapter_model.safetensors"} <= set(adapters[0])
    report = next(v for k, v in artifacts.items() if k.endswith("-report"))
    assert {"report.md", "metrics.json", "recipe.resolved.yaml"} <= set(report)
    assert "org/<removed: secret>-{stage}" in (root / "recipe.resolved.yaml").read_text()  # it flowed, and was blanked
    assert summary["config"]["hub"]["repo_id"] == "org/<removed: secret>-{stage}"
    for path in root.rglob("*"):  # no file of the run (W&B's config, tables, debug logs, artifact copies included)
        if path.is_file():
            assert planted.encode() not in path.read_bytes(), path
    assert planted not in out.stdout + out.stderr


def test_cli_errors_exit_2_with_the_message(tmp_path, capsys):
    assert train_main([str(RECIPES[0]), "run.seed=abc"]) == 2
    assert "run.seed" in capsys.readouterr().err


def test_config_flag_and_console_script_agree(tmp_path):
    out = subprocess.run(["w2s-trl", "train", "--config", str(RECIPES[0]), "--smoke", f"run.output_dir={tmp_path}",
                          "--stop-after", "data"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert (run_dir(tmp_path, RECIPES[0]) / "data" / "test.jsonl").exists()


def test_a_dataset_mixture_feeds_the_data_stage(tmp_path):
    """`data.datasets` (TRL's DatasetConfig list): a local JSONL read directly and a json builder over data_files,
    tagged with their objectives; editing a file's contents makes the data stage recompute."""
    import json

    files = {}
    for name, objective in (("help", "helpful"), ("harm", "harmless")):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps({"prompt": f"{name} question {i}?", "chosen": f"good {i}",
                                                   "rejected": f"bad {i}"}) + "\n" for i in range(60)))  # fmt: skip
    mixture = json.dumps([{"path": str(files["help"]), "objective": "helpful"},
                          {"path": "json", "data_files": [str(files["harm"])], "objective": "harmless"}])
    args = [str(RECIPES[0]), "--smoke", f"run.output_dir={tmp_path}", f"data.datasets={mixture}", "tracking.report_to=[]",
            "--stop-after", "data"]  # fmt: skip
    assert train_main(args) == 0
    data_dir = run_dir(tmp_path, RECIPES[0]) / "data"
    rows = [json.loads(x) for s in ("weak_train", "w2s_train", "test") for x in (data_dir / f"{s}.jsonl").read_text().splitlines()]
    assert {r["objective"] for r in rows} == {"helpful", "harmless"}
    assert all(r["prompt"][0]["content"].startswith("help" if r["objective"] == "helpful" else "harm") for r in rows)
    before = (data_dir / "stage.json").read_text()
    files["help"].write_text(files["help"].read_text().replace("good 1\"", "better 1\""))
    assert train_main(args) == 0
    assert (data_dir / "stage.json").read_text() != before  # recomputed for the new bytes


def test_long_multi_turn_rows_are_cut_never_tied_never_dropped_silently(tmp_path):
    """Real-data shapes: prompts of hundreds of tokens against short max_lengths. Every stage cuts prompts from the
    left and counts it; no pair becomes a tie (a right-truncating scorer would cut both responses away and tie); no
    row disappears without a count."""
    recipe = RECIPES[0]
    assert train_main([str(recipe), "--smoke", f"run.output_dir={tmp_path}", "tracking.report_to=[]",
                       "data.testbed.history_turns=[6, 12]", "weak.reward.max_length=160",
                       "align.args.max_length=200"]) == 0  # fmt: skip
    root = run_dir(tmp_path, recipe)
    metrics = json.loads((root / "metrics.json").read_text())
    lengths = json.loads((root / "data" / "lengths.json").read_text())
    assert lengths["strong"]["w2s_train"]["prompt"]["p50"] > 200  # most prompts must be cut
    trunc = metrics["truncation"]
    assert set(trunc) >= {"weak", "label", "student", "ceiling", "evaluate_weak", "evaluate_policies"}
    for stage, count in trunc.items():
        assert count["dropped"] == 0, stage
        assert count["truncated"] > count["rows"] / 2, stage  # most rows were cut, and counted
    labels = metrics["labels"]
    assert labels["weak_ties"] == 0 and labels["unscored"] == 0 and labels["labelled"] == labels["rows"]
    assert trunc["student"]["rows"] == labels["labelled"]  # the student trained on every labelled pair
    assert metrics["n_test"] == trunc["evaluate_weak"]["rows"] // 2 and metrics["left_out"]["n"] == 0
    assert metrics["weak_ties"] == 0
    record = json.loads((root / "student" / "stage.json").read_text())
    assert record["global_step"] == 2


def test_a_checkpoint_cut_short_is_passed_over(tmp_path):
    """A save killed midway leaves checkpoint-N without trainer_state.json: resume uses checkpoint-(N-1)."""
    from w2s_trl.rundir import StageWork

    work = StageWork(out=tmp_path / "out", checkpoints=tmp_path / "checkpoints")
    assert work.last_checkpoint() is None
    for step, complete in ((2, True), (10, True), (12, False)):
        folder = work.checkpoints / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert work.last_checkpoint() == str(work.checkpoints / "checkpoint-10")  # 10 > 2 by number, 12 incomplete


def test_student_deception_by_value():
    """4 test pairs: K_s = rows 0-2 (reference right); U_w&K_s = rows 1, 2; the student errs on rows 1 and 3."""
    from w2s_trl.pipeline import student_deception

    preds = [{"weak_correct": w, "ceiling_correct": c, "student_correct": s}
             for w, c, s in ((True, True, True), (False, True, False), (False, True, True), (True, False, False))]
    metrics = {"primary": {"region_reference": "ceiling", "region_reference_rule": "primary"}}
    d = student_deception(metrics, preds, 1000, 0)
    assert d["counts"]["K_s"] == 3 and d["counts"]["errors_on_K_s"] == 1 and d["counts"]["deceptive_errors"] == 1
    assert d["ds"]["value"] == pytest.approx(1.0) and d["chance"]["value"] == pytest.approx(2 / 3)
    assert d["gap"]["value"] == pytest.approx(0.5 - 0.0)  # err(U_w&K_s) = 1/2, err(K_w&K_s) = 0/1


def test_tensorboard_and_trackio_runs_read_back(tmp_path):
    """report_to's other TRL backends: TensorBoard events kept in each trained stage's folder, trackio's database in
    the run directory under tracking.project, both holding the trainers' loss curves."""
    import sqlite3

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    env = {k: v for k, v in os.environ.items() if k not in ("TRACKIO_DIR", "TENSORBOARD_LOGGING_DIR")}
    out = subprocess.run([sys.executable, "-m", "w2s_trl.train", str(RECIPES[0]), "--smoke", f"run.output_dir={tmp_path}",
                          "tracking.report_to=[tensorboard, trackio]", "tracking.project=tb-check",
                          "--stop-after", "student"], capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    root = run_dir(tmp_path, RECIPES[0])
    for stage, tag in (("weak", "train/accuracy"), ("student", "train/loss")):
        events = EventAccumulator(str(root / stage / "tensorboard"))
        events.Reload()
        assert [e.step for e in events.Scalars(tag)] == ([2] if stage == "weak" else [1, 2])
    db = sqlite3.connect(root / "trackio" / "tb-check.db")
    runs = dict(db.execute("select run_name, count(*) from metrics group by run_name").fetchall())
    assert runs == {"dpo_weak_rm-smoke/weak": 1, "dpo_weak_rm-smoke/student": 3}  # student: 2 steps + the summary


def test_a_resumed_stage_continues_its_wandb_run(tmp_path, monkeypatch):
    import wandb

    from w2s_trl import tracking
    from w2s_trl.rundir import StageWork

    calls = []
    monkeypatch.setattr(wandb, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(tracking, "RUN_CONFIG", {"align": {"trainer": "dpo"}})
    work = StageWork(out=tmp_path / "out", checkpoints=tmp_path / "checkpoints")
    tracking.start_stage_run(work, "run/student")
    tracking.start_stage_run(work, "run/student")  # the same stage after an interruption
    assert calls[0]["id"] == calls[1]["id"] and calls[1]["resume"] == "allow"
    assert calls[0]["config"] == {"align": {"trainer": "dpo"}} and calls[0]["name"] == "run/student"
    other = StageWork(out=tmp_path / "o2", checkpoints=tmp_path / "c2")
    tracking.start_stage_run(other, "run/ceiling")
    assert calls[2]["id"] != calls[0]["id"]


def test_eval_curves_on_test_when_asked(tmp_path):
    """tracking.eval_curves: TRL evaluates student and ceiling on test every logging step (eval_rewards/* curves);
    smoke runs leave it off unless asked, and the reported numbers are computed the same way either way."""
    recipe = RECIPES[0]
    args = [str(recipe), "--smoke", f"run.output_dir={tmp_path}", "tracking.report_to=[]"]
    assert train_main([*args, "tracking.eval_curves=true"]) == 0
    root = run_dir(tmp_path, recipe)
    for stage in ("student", "ceiling"):
        history = json.loads((root / stage / "trainer_state.json").read_text())["log_history"]
        evals = [h for h in history if "eval_rewards/accuracies" in h]
        assert [h["step"] for h in evals] == [1, 2]  # logging_steps 1 under smoke, 2 steps
    assert train_main([*args, "run.name=plain"]) == 0
    plain = json.loads((tmp_path / "plain" / "student" / "trainer_state.json").read_text())["log_history"]
    assert not any(k.startswith("eval_") for h in plain for k in h)


def _metrics_without_timing(root: Path) -> dict:
    metrics = json.loads((root / "metrics.json").read_text())
    for key in ("runtime_s", "cached_stages", "run"):
        metrics.pop(key, None)
    return metrics


# kill -9 points, in order: the weak reward model's training as its first checkpoint folder appears (most often in
# the middle of writing it), the student's training after a complete checkpoint, and evaluation; each kill is followed
# by a restart that runs until the next point
KILL_POINTS = (".work/weak/checkpoints/checkpoint-1", ".work/student/checkpoints/checkpoint-2/trainer_state.json",
               ".work/evaluate/out")


def test_kill9_inside_stages_resumes_to_the_uninterrupted_metrics(tmp_path):
    """A run killed with SIGKILL inside three stages (no clean-up runs) and restarted after each kill finishes with the
    metrics of a run never interrupted, and no completed stage is recomputed."""
    clean = tmp_path / "clean"
    out = subprocess.run(_smoke_cmd(clean, "align.args.max_steps=4"), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    killed = tmp_path / "killed"
    root = run_dir(killed, RECIPES[0])
    done_before: dict[str, str] = {}
    for point in KILL_POINTS:
        proc = subprocess.Popen(_smoke_cmd(killed, "align.args.max_steps=4"), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        deadline = time.time() + 240
        while not (root / point).exists():
            assert proc.poll() is None and time.time() < deadline, f"the run ended or stalled before {point}"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for stage, record in done_before.items():  # what was complete stays complete, untouched
            assert (root / stage / "stage.json").read_text() == record, stage
        done_before = {p.parent.name: p.read_text() for p in root.glob("*/stage.json")}
    out = subprocess.run(_smoke_cmd(killed, "align.args.max_steps=4"), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for stage in done_before:
        assert f"stage {stage}: complete with the same inputs, skipped" in out.stdout
    assert _metrics_without_timing(root) == _metrics_without_timing(run_dir(clean, RECIPES[0]))
    assert json.loads((root / "student" / "stage.json").read_text())["resumed_from"]  # the student did resume
    for stage in ("weak", "student"):  # trained across a kill: the same steps and whole-run loss as uninterrupted
        a, b = (json.loads((run_dir(r, RECIPES[0]) / stage / "stage.json").read_text()) for r in (clean, killed))
        assert a["global_step"] == b["global_step"] and a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
