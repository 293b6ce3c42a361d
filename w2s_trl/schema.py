"""Shared pieces of the typed recipe schema: the strict base model and the pass-through of TRL trainer arguments
(every key checked against the TRL config class that will receive it). Reward specifications (w2s_trl/rewards/) and
recipe sections (recipe.py) both build on it."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import enum
import functools
import math
import typing
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
    "deepspeed": "DeepSpeed is configured through accelerate, not a trainer argument: accelerate launch --config_file "
                 "recipes/accelerate/deepspeed_zero3.yaml w2s_trl/train.py RECIPE",
}

# Ranges where one is obvious: (low, high, low inclusive, what it means). A value outside is refused at load instead
# of training the wrong thing for minutes (beta -1 inverts DPO and still "finishes").
_POS = (0, None, False, "positive")
_NONNEG = (0, None, True, "zero or more")
_COUNT = (1, None, True, "1 or more")
VALUE_RANGES: dict[str, tuple] = {
    "learning_rate": _NONNEG, "num_train_epochs": _POS, "logging_steps": _POS, "save_steps": _POS, "eval_steps": _NONNEG,
    "per_device_train_batch_size": _COUNT, "per_device_eval_batch_size": _COUNT, "gradient_accumulation_steps": _COUNT,
    "max_length": _COUNT, "max_prompt_length": _COUNT, "max_completion_length": _COUNT, "num_generations": _COUNT,
    "save_total_limit": _NONNEG, "generation_batch_size": _COUNT, "steps_per_generation": _COUNT,
    "warmup_steps": _NONNEG, "weight_decay": _NONNEG, "max_grad_norm": _NONNEG, "dataloader_num_workers": _NONNEG,
    "temperature": _POS, "top_p": (0, 1, False, "in (0, 1]"), "warmup_ratio": (0, 1, True, "in [0, 1]"),
    "label_smoothing": (0, 0.5, True, "in [0, 0.5]"), "simpo_gamma": _NONNEG, "cpo_alpha": _NONNEG,
    "max_steps": _COUNT, "total_steps": _COUNT, "batch_size": _COUNT, "minibatch_size": _COUNT, "ppo_epochs": _COUNT,
    "kl_coef": _NONNEG, "cliprange": _POS, "vf_coef": _NONNEG,
}  # fmt: skip
# beta scales the preference margin in DPO/SimPO (<= 0 inverts or erases it); in GRPO/RLOO it is a KL weight (0: none)
BETA_RANGE = {"dpo": _POS, "simpo": _POS, "grpo": _NONNEG, "rloo": _NONNEG}
KNOWN_VALUES: dict[tuple[str, str], tuple[str, ...]] = {  # enum-like fields TRL checks only once training starts
    ("dpo", "loss_type"): ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                           "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"),
    ("grpo", "loss_type"): ("grpo", "bnpo", "dr_grpo", "dapo", "luspo", "cispo", "sapo", "vespo"),
}  # fmt: skip


class Strict(BaseModel):
    """Unknown keys are errors; NaN and infinite floats are refused everywhere."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


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
    for key, value in checked.items():
        check_value(cls, trainer, key, value)
    if trainer in ONLINE_TRAINERS:
        checked.pop("max_length", None)
    if trainer == "ppo":  # the project's own settings, not a TrainingArguments
        try:
            cls(**checked)
        except Exception as e:  # noqa: BLE001 - whatever the config raises is a rejected value
            raise ValueError(f"{cls.__name__} rejected these arguments: {e}") from None
        return args
    try:
        # use_cpu: validation must not depend on this machine's devices
        with _no_device_state():
            cls(output_dir="/tmp/w2s-trl-validate", report_to="none", **{**CPU_TRAINER_DEFAULTS, "use_cpu": True, **checked})
    except Exception as e:  # noqa: BLE001 - whatever the config raises is a rejected value
        detail = str(e) if isinstance(e, (TypeError, ValueError)) else f"{type(e).__name__}: {e}"
        raise ValueError(f"{cls.__name__} rejected these arguments: {detail}") from None
    return args


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve is not checked by type
        return {}


@functools.cache
def _adapter(annotation: Any):
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # noqa: BLE001 - a type pydantic cannot check (a TRL class): left to the config itself
        return None


def check_value(cls: type, trainer: str, key: str, value: Any) -> None:
    """One trainer argument against its config field: the field's type (its annotation, through pydantic), a finite
    number, the obvious range, a known value for enum-like fields. Errors name the key, the value and what is
    allowed."""
    from pydantic import ValidationError

    annotation = _field_types(cls).get(key)
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:60] + "..."
    if isinstance(value, str) and typing.get_origin(annotation) is list:
        value = [value]  # TRL's configs take one string for a list field (loss_type: sigmoid)
    adapter = _adapter(annotation) if annotation is not None else None
    if adapter is not None:
        try:
            adapter.validate_python(value)
        except ValidationError as e:
            what = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
            raise ValueError(f"'{key}': {shown} is not a valid {what} ({e.errors()[0]['msg']})") from None
        except Exception:  # noqa: BLE001 - the type check itself failed: leave it to the config
            pass
    number = _as_number(value, annotation)
    if number is not None and not math.isfinite(number):
        raise ValueError(f"'{key}': {shown} is not a finite number")
    rule = BETA_RANGE.get(trainer) if key == "beta" else VALUE_RANGES.get(key)
    if rule is not None and number is not None and not (key == "max_steps" and number == -1):
        low, high, inclusive, meaning = rule
        if (number < low or (number == low and not inclusive)) or (high is not None and number > high):
            raise ValueError(f"'{key}': {shown} is out of range; it must be {meaning}")
    enums = [a for a in typing.get_args(annotation) or (annotation,) if isinstance(a, type) and issubclass(a, enum.Enum)]
    if enums and isinstance(value, str):
        _one_of(key, [value], [m.value for e in enums for m in e])
    if (trainer, key) in KNOWN_VALUES:
        _one_of(key, value if isinstance(value, list) else [value], KNOWN_VALUES[(trainer, key)])


def _as_number(value: Any, annotation: Any) -> float | None:
    """The number a value stands for (a numeric string for a numeric field too); None for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and annotation in (float, int):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _one_of(key: str, given: list, allowed) -> None:
    bad = [v for v in given if v not in allowed]
    if bad:
        close = difflib.get_close_matches(str(bad[0]), list(allowed), n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"'{key}': {bad[0]!r} is not one of {', '.join(allowed)}{hint}")


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
