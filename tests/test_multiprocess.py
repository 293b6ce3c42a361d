"""The tiny DPO pipeline under `accelerate launch` with two CPU processes (gloo) against one process with the same
global batch: it finishes, the run directory holds the same files (written once, by the main process), the two
processes really form one group (each takes half of every batch), and the trained adapters and test margins agree
within the tolerance of a different floating-point reduction order (DDP averages two half-batch gradients where one
process takes the mean over the whole batch). Measured here: LoRA weights 5.5e-7 apart (relative) in fp32 and
2.3e-3 / 4.4e-3 (student / ceiling) under bf16 autocast, the recipes' default, which this test runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "dpo_weak_rm.yaml"
GLOBAL_BATCH = 8  # per step, for the weak reward model and for DPO
WEIGHT_TOLERANCE = 2e-2  # ||LoRA B(2 processes) - LoRA B(1 process)|| / ||LoRA B(1 process)||
MARGIN_TOLERANCE = 5e-2  # |margin(2 processes) - margin(1 process)| per test pair, relative to the largest margin


def files(root: Path) -> set[str]:
    """The run's files; the reference cache is named by what it depends on (per-device batch size included), so its
    one file is compared by count, not name."""
    skip = (".work", "wandb", "cache")
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] not in skip}


def run(out: Path, processes: int, recipe: Path = RECIPE) -> Path:
    per_device = GLOBAL_BATCH // processes
    args = [str(recipe), "--smoke", f"run.output_dir={out}", "tracking.report_to=[]"]
    if recipe == RECIPE:
        args += [f"align.args.per_device_train_batch_size={per_device}",
                 f"weak.reward.train.per_device_train_batch_size={per_device}"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if processes == 1:
        cmd = [sys.executable, str(REPO / "w2s_trl" / "train.py"), *args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(REPO / "recipes" / "accelerate" / "cpu_two_processes.yaml"), str(REPO / "w2s_trl" / "train.py"),
               *args]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out / f"{recipe.stem}-smoke"


def test_two_processes_agree_with_one(tmp_path):
    from safetensors.torch import load_file

    one, two = run(tmp_path / "one", 1), run(tmp_path / "two", 2)
    assert files(two) == files(one)  # the same outputs, no per-rank extras
    assert len(list((two / "cache").glob("ref_logps-*.json"))) == len(list((one / "cache").glob("ref_logps-*.json"))) == 1
    for stage in ("student", "ceiling"):
        tokenizer = [(r / stage / "adapter" / "tokenizer.json").read_bytes() for r in (one, two)]
        assert tokenizer[0] == tokenizer[1]
        steps = [json.loads((r / stage / "stage.json").read_text())["global_step"] for r in (one, two)]
        assert steps[0] == steps[1] == 2  # the same number of optimizer steps of the same global batch
        epochs = [json.loads((r / stage / "trainer_state.json").read_text())["epoch"] for r in (one, two)]
        assert epochs[0] == epochs[1]  # each process took half of every batch (not the whole data twice)
        a, b = (load_file(r / stage / "adapter" / "adapter_model.safetensors") for r in (one, two))
        trained = [k for k in a if "lora_B" in k]  # B starts at 0: all of it is the training (A is mostly its init)
        diff = sum(float((a[k] - b[k]).float().norm() ** 2) for k in trained) ** 0.5
        assert diff / sum(float(a[k].float().norm() ** 2) for k in trained) ** 0.5 < WEIGHT_TOLERANCE
    m1, m2 = (json.loads((r / "metrics.json").read_text()) for r in (one, two))
    assert m1["n_test"] == m2["n_test"]
    p1 = [json.loads(x) for x in (one / "evaluate" / "predictions.jsonl").read_text().splitlines()]
    p2 = [json.loads(x) for x in (two / "evaluate" / "predictions.jsonl").read_text().splitlines()]
    assert [x["id"] for x in p1] == [x["id"] for x in p2]
    for key in ("weak_margin", "student_margin", "ceiling_margin"):
        a, b = [x[key] for x in p1], [x[key] for x in p2]
        scale = max(abs(v) for v in a) or 1.0
        worst = max(abs(x - y) for x, y in zip(a, b)) / scale
        assert worst < MARGIN_TOLERANCE, f"{key}: largest relative difference {worst:.4f}"


def test_online_rl_runs_on_two_processes(tmp_path):
    """GRPO (sampling inside training, rewards from two objectives) under two processes: it finishes with the same
    outputs and optimizer steps as one process. Completions are sampled per process, so weights are not compared."""
    recipe = REPO / "recipes" / "grpo_multi_objective.yaml"
    one, two = run(tmp_path / "one", 1, recipe), run(tmp_path / "two", 2, recipe)
    assert files(two) == files(one)
    steps = [json.loads((r / "student" / "stage.json").read_text())["global_step"] for r in (one, two)]
    assert steps[0] == steps[1] == 2
    m1, m2 = (json.loads((r / "metrics.json").read_text()) for r in (one, two))
    assert m1["n_test"] == m2["n_test"] and m2["online"]["prompts"] == m1["online"]["prompts"]
