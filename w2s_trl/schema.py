"""Shared pieces of the typed recipe schema: the strict base model and the pass-through of TRL trainer arguments
(every key checked against the TRL config class that will receive it). Reward specifications (w2s_trl/rewards/) and
recipe sections (recipe.py) both build on it."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
from typing import Any

from pydantic import BaseModel, ConfigDict

# Trainer arguments that w2s-trl sets itself from other sections; a recipe must not set them in `args`.
OWNED_TRAINER_ARGS = {
    "output_dir": "the run directory (run.output_dir / run.name)",
    "run_name": "run.name",
    "seed": "run.seed",
    "report_to": "tracking.report_to",
}


# Trainers that sample their own completions (online RL): their `max_length` is w2s-trl's (prompt + completion tokens;
# prompts are cut to fit), not a field of their config.
ONLINE_TRAINERS = ("grpo", "rloo", "ppo")


# Trainer arguments a recipe must not set, and why.
_HUB = ("a trainer would push its checkpoints folder, under one repo name for every stage; the run's adapters are "
        "pushed by w2s-trl after the run (the hub section), never from inside a trainer")
REFUSED_TRAINER_ARGS = {
    "push_to_hub": _HUB,
    "hub_model_id": _HUB,
    "hub_strategy": _HUB,
    "hub_private_repo": _HUB,
    "hub_token": "a secret does not belong in a recipe file (it would be copied into the run directory): set HF_TOKEN "
                 "in the environment or run `hf auth login`",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----------------------------------------------------------------------------------------------------------------------
# Trainer argument pass-through


@functools.cache
def trl_config_class(name: str) -> type:
    """The TRL config dataclass that receives a section's `args`; imported lazily (nothing at import time)."""
    if name == "dpo":
        from trl import DPOConfig

        return DPOConfig
    if name == "simpo":
        from trl.experimental.cpo import CPOConfig

        return CPOConfig
    if name == "reward":
        from trl import RewardConfig

        return RewardConfig
    if name == "grpo":
        from trl import GRPOConfig

        return GRPOConfig
    if name == "rloo":
        from trl import RLOOConfig

        return RLOOConfig
    if name == "ppo":
        from w2s_trl.training.ppo import PPOSettings

        return PPOSettings
    raise KeyError(name)


def check_trainer_args(args: dict[str, Any], trainer: str) -> dict[str, Any]:
    """Every key must be a field of the TRL config class; values are checked by building the config once."""
    cls = trl_config_class(trainer)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    if trainer in ONLINE_TRAINERS:
        fields.add("max_length")  # w2s-trl's: prompt + completion tokens (prompts are cut to fit)
    for key in args:
        if key in OWNED_TRAINER_ARGS:
            raise ValueError(f"'{key}' is set by w2s-trl from {OWNED_TRAINER_ARGS[key]}; remove it from args")
        if key in REFUSED_TRAINER_ARGS:
            raise ValueError(f"'{key}': {REFUSED_TRAINER_ARGS[key]}")
        from w2s_trl.redact import is_secret_name

        if is_secret_name(key):  # a recipe is copied into the run directory, W&B and model cards
            raise ValueError(f"'{key}' looks like a secret, which does not belong in a recipe file: set it in the "
                             "environment (the library reads its own variable, e.g. HF_TOKEN, WANDB_API_KEY)")
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown {cls.__name__} argument '{key}'{hint} (see the {cls.__module__}.{cls.__name__} docs)")
    checked = {k: v for k, v in args.items() if not (k == "max_length" and v == "auto")}  # w2s-trl resolves auto
    if trainer in ONLINE_TRAINERS:
        checked.pop("max_length", None)
    if trainer == "ppo":  # the project's own settings, not a TrainingArguments
        try:
            cls(**checked)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{cls.__name__} rejected these arguments: {e}") from None
        return args
    try:
        # use_cpu: validation must not depend on this machine's devices
        with _no_device_state():
            cls(output_dir="/tmp/w2s-trl-validate", report_to="none", **{**CPU_TRAINER_DEFAULTS, "use_cpu": True, **checked})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{cls.__name__} rejected these arguments: {e}") from None
    return args


@contextlib.contextmanager
def _no_device_state():
    """Building a TrainingArguments starts accelerate's PartialState (here in CPU mode, from use_cpu=True), and every
    later PartialState() would inherit it: a GPU run would load models on the CPU. Under `accelerate launch` it would
    also start torch's process group (gloo, default timeout), which the run's own start (NCCL on GPUs, the long
    barrier timeout) could then not replace. Validation runs with the launcher's variables hidden and leaves no state
    behind unless one existed before."""
    import os

    import torch.distributed as dist
    from accelerate.state import PartialState

    existed = PartialState._shared_state != {}
    grouped = dist.is_available() and dist.is_initialized()
    hidden = {k: os.environ.pop(k) for k in DISTRIBUTED_ENV if k in os.environ} if not existed else {}
    try:
        yield
    finally:
        os.environ.update(hidden)
        if not existed:
            PartialState._reset_state()
            if not grouped and dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()


DISTRIBUTED_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                   "ACCELERATE_USE_CPU", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")  # fmt: skip


# Defaults that make TRL work on a small CPU machine (TRL turns activation checkpointing on, which only costs time
# here), applied only when no GPU is present (trainer_args.build_trl_config); a recipe's `args` override them. bf16
# stays TRL's default (True): on CPU it is autocast and faster than fp32.
CPU_TRAINER_DEFAULTS: dict[str, Any] = {
    "activation_checkpointing": False,
    "dataloader_num_workers": 0,
    "save_strategy": "steps",
    "save_steps": 20,
    "save_total_limit": 1,
    "logging_steps": 5,
    "disable_tqdm": False,
}
