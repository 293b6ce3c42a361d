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
    result = trainer.train(resume_from_checkpoint=resume)
    finish_tracking()
    trainer.save_model(str(work.out / save_as))  # TRL/transformers save on the main process only
    if trainer.args.should_save:  # the tokenizer too: once, not by every process into the same folder
        trainer.processing_class.save_pretrained(str(work.out / save_as))
        trainer.state.save_to_json(str(work.out / "trainer_state.json"))  # the log history, kept with the stage
        events = Path(trainer.args.output_dir) / TENSORBOARD
        if "tensorboard" in (trainer.args.report_to or []) and events.is_dir():
            shutil.copytree(events, work.out / TENSORBOARD, dirs_exist_ok=True)
    return {"resumed_from": resume, "train_loss": result.training_loss, "global_step": trainer.state.global_step}
