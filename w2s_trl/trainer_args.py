"""Build TRL config objects from a recipe section's `args` plus what w2s-trl owns (output dir, seed, tracking)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from w2s_trl.recipe import CPU_TRAINER_DEFAULTS, trl_config_class


def build_trl_config(kind: str, args: dict[str, Any], output_dir: str, seed: int, report_to: list[str],
                     run_name: str, project: str = "w2s-trl"):  # fmt: skip
    """The TRL config of one training. TensorBoard events go to `output_dir/tensorboard` (beside the checkpoints, so
    an interrupted stage's curves survive its resume; run_training copies them into the finished stage folder);
    trackio logs into `project` (its local database unless a trackio_space_id is set in args)."""
    import torch

    on_cpu = not torch.cuda.is_available()
    merged = {**(CPU_TRAINER_DEFAULTS if on_cpu else {}), **args}  # TRL's own defaults wherever an accelerator is
    if on_cpu:
        merged.setdefault("use_cpu", True)
    if "trackio" in (report_to or []):
        merged.setdefault("project", project)
    if "tensorboard" in (report_to or []):
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(Path(output_dir) / TENSORBOARD)  # read when the trainer is built
    return trl_config_class(kind)(
        output_dir=output_dir, seed=seed, report_to=report_to or "none", run_name=run_name, **merged
    )


TENSORBOARD = "tensorboard"


def length_grouped_training(rows: list, lengths: list[int], args: dict[str, Any], seed: int) -> tuple[list, dict]:
    """`rows` ordered so that each optimizer step holds rows of similar length (less padding: a batch costs its
    longest row), the order of those batches shuffled by `seed` so training does not run from long to short, and
    `args` set to read the rows in that order. Batches are cut at the global batch (every process's share of one
    optimizer step), so the steps are the same rows whatever the number of processes. With several epochs every
    epoch repeats the order."""
    import random

    from accelerate import PartialState

    batch = (args.get("per_device_train_batch_size", 8) * args.get("gradient_accumulation_steps", 1)
             * PartialState().num_processes)  # fmt: skip
    order = sorted(range(len(rows)), key=lambda i: (lengths[i], i))
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    # a short last batch stays last: the trainer cuts batches every `batch` rows from the start
    full, rest = (batches[:-1], batches[-1:]) if len(order) % batch else (batches, [])
    random.Random(seed).shuffle(full)
    return [rows[i] for b in full + rest for i in b], {"train_sampling_strategy": "sequential", **args}


def check_nothing_dropped(trainer, expected: int, stage: str) -> None:
    """TRL filters rows longer than max_length without a word; w2s-trl cuts them first, so a difference is a bug."""
    got = len(trainer.train_dataset)
    if got != expected:
        raise RuntimeError(f"{stage}: TRL kept {got} of {expected} training rows after w2s-trl fitted them to "
                           "max_length; this is a w2s-trl bug (please report it with the recipe)")


def finish_tracking() -> None:
    """Close the W&B run a trainer opened, so the next stage logs into its own run."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def run_training(trainer, work, save_as: str, label: str) -> dict:
    """Train (resuming from the stage's last checkpoint), close tracking, save into `work.out/save_as`; return what
    stage.json records."""
    resume = work.last_checkpoint()
    if resume:
        print(f"[w2s-trl] resuming {label} from {resume}", flush=True)
    if "wandb" in (trainer.args.report_to or []) and trainer.args.should_log:  # the main process logs
        from w2s_trl.tracking import start_stage_run

        start_stage_run(work, label)
    trainer.add_callback(divergence_guard(label))
    try:
        result = trainer.train(resume_from_checkpoint=resume)
    finally:
        finish_tracking()
    trainer.save_model(str(work.out / save_as))  # TRL/transformers save on the main process only
    if trainer.args.should_save:  # the tokenizer too: once, not by every process into the same folder
        trainer.processing_class.save_pretrained(str(work.out / save_as))
        trainer.state.save_to_json(str(work.out / "trainer_state.json"))  # the log history, kept with the stage
        events = Path(trainer.args.output_dir) / TENSORBOARD
        if "tensorboard" in (trainer.args.report_to or []) and events.is_dir():
            shutil.copytree(events, work.out / TENSORBOARD, dirs_exist_ok=True)
    return {"resumed_from": resume, "train_loss": whole_run_loss(trainer.state, result.training_loss, resume),
            "global_step": trainer.state.global_step}


def whole_run_loss(state, this_session: float, resume: str | None) -> float:
    """The mean training loss over every step, also after a resume (the trainer's own `training_loss` covers the
    steps of this session only): the logged losses of the steps before the checkpoint, each weighted by the steps it
    averages, joined with this session's mean. Exact when save_steps is a multiple of logging_steps (the defaults)."""
    if not resume:
        return this_session
    start = int(Path(resume).name.split("-")[-1])
    before, weight, last = 0.0, 0, 0
    for entry in state.log_history:
        if "loss" in entry and entry.get("step", 0) <= start:
            before += entry["loss"] * (entry["step"] - last)
            weight += entry["step"] - last
            last = entry["step"]
    after = state.global_step - start
    return (before + this_session * after) / (weight + after) if weight + after else this_session


def divergence_guard(label: str):
    """A callback that stops a training whose logged loss or gradient norm is NaN or infinite: the stage fails with
    this message (it is not marked complete; earlier stages are kept) instead of saving a broken model for the next
    stages. The gradient norm matters: with NaN weights TRL's DPO logs a loss of 0.0 (measured), never NaN. Under fp16
    an infinite gradient norm is the loss scaler skipping a step, not a divergence, so only the loss counts there."""
    import math

    from transformers import TrainerCallback

    from w2s_trl.errors import W2SError

    class DivergenceGuard(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            for key, value in (logs or {}).items():
                watched = key.endswith("loss") or (key == "grad_norm" and not args.fp16)
                if watched and isinstance(value, float) and not math.isfinite(value):
                    raise W2SError(f"{label}: the training diverged ({key} {value} at step {state.global_step}); the "
                                   "stage stops unsaved and earlier stages are kept. Lower the learning rate, set "
                                   "max_grad_norm, or check the data and reward for extreme values")  # fmt: skip

    return DivergenceGuard()
