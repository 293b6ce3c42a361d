"""Typed, strict recipes (CONVENTIONS.md 2, 3).

A recipe is a YAML file with one section per pipeline stage. Loading it:
  1. reads the YAML and applies `key.path=value` overrides, each typed like the field it overrides;
  2. resolves `weak.reward` when it names a reward specification file under `reward/`;
  3. validates everything with pydantic (unknown keys are errors) and checks trainer arguments against
     the TRL config class that will receive them.
Every error names the file, the dotted key path, the value given and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from w2s_trl.errors import RecipeError
from w2s_trl.models import check_model_spec

# Trainer arguments that w2s-trl sets itself from other sections; a recipe must not set them in `args`.
OWNED_TRAINER_ARGS = {
    "output_dir": "the run directory (run.output_dir / run.name)",
    "run_name": "run.name",
    "seed": "run.seed",
    "report_to": "tracking.report_to",
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
    raise KeyError(name)


def check_trainer_args(args: dict[str, Any], trainer: str) -> dict[str, Any]:
    """Every key must be a field of the TRL config class; values are checked by building the config once."""
    cls = trl_config_class(trainer)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    for key in args:
        if key in OWNED_TRAINER_ARGS:
            raise ValueError(f"'{key}' is set by w2s-trl from {OWNED_TRAINER_ARGS[key]}; remove it from args")
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown {cls.__name__} argument '{key}'{hint} (see the {cls.__module__}.{cls.__name__} docs)")
    try:
        # use_cpu: validation must not depend on this machine's devices
        cls(output_dir="/tmp/w2s-trl-validate", report_to="none", **{**CPU_TRAINER_DEFAULTS, "use_cpu": True, **args})
    except (TypeError, ValueError) as e:
        raise ValueError(f"{cls.__name__} rejected these arguments: {e}") from None
    return args


# Defaults that make TRL work on a small CPU machine (TRL turns activation checkpointing on, which only costs time
# here). A recipe's `args` override them. bf16 stays TRL's default (True): on CPU it is autocast and faster than fp32.
CPU_TRAINER_DEFAULTS: dict[str, Any] = {
    "activation_checkpointing": False,
    "dataloader_num_workers": 0,
    "save_strategy": "steps",
    "save_steps": 20,
    "save_total_limit": 1,
    "logging_steps": 5,
    "disable_tqdm": False,
}


# ----------------------------------------------------------------------------------------------------------------------
# Reward specifications (reward/*.yaml, or inline in a recipe)


class RewardModelSpec(Strict):
    """A weak reward model: a sequence classifier with one output, trained on `weak_train` ground truth."""

    type: Literal["reward_model"] = "reward_model"
    model: str = Field(description="model spec: hub id, local path, embedded:minilm-l6, tiny:reward-model")
    max_length: int = Field(256, gt=8, description="tokens per scored (prompt, response) text")
    trust_remote_code: bool = False
    train: dict[str, Any] = Field(default_factory=dict, description="trl.RewardConfig arguments")
    score_batch_size: int = Field(32, gt=0, description="pairs per forward pass when labelling/scoring")

    @field_validator("model")
    @classmethod
    def _check_model(cls, v: str) -> str:
        return check_model_spec(v, kind="reward")

    @field_validator("train")
    @classmethod
    def _check_train(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_trainer_args(v, "reward")


RewardSpec = RewardModelSpec  # grows into a union discriminated on `type`


# ----------------------------------------------------------------------------------------------------------------------
# Recipe sections


class RunSection(Strict):
    name: str = Field(description="run folder name under output_dir")
    output_dir: str = Field("runs", description="parent folder of run directories")
    seed: int = 0
    offline: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: HF_HUB_OFFLINE=1 when no model or dataset field names a hub id"
    )


class SplitFractions(Strict):
    weak_train: float = Field(0.4, gt=0, lt=1)
    w2s_train: float = Field(0.35, gt=0, lt=1)
    test: float = Field(0.25, gt=0, lt=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> "SplitFractions":
        total = self.weak_train + self.w2s_train + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"weak_train + w2s_train + test must sum to 1, got {total:g}")
        return self


class SplitLimits(Strict):
    weak_train: int | None = Field(None, gt=0)
    w2s_train: int | None = Field(None, gt=0)
    test: int | None = Field(None, gt=0)


class DataSection(Strict):
    source: str = Field("testbed:hh", description="testbed:hh, a local JSON/JSONL/parquet file, or a hub dataset id")
    size: int = Field(1200, gt=0, description="testbed:hh only: number of generated pairs before splitting")
    objectives: list[Literal["helpful", "harmless"]] = Field(["helpful", "harmless"], min_length=1)
    hub_split: str = Field("train", description="split to read from a hub dataset or a dataset dict")
    fractions: SplitFractions = Field(default_factory=SplitFractions)
    max_rows: SplitLimits = Field(default_factory=SplitLimits)


class LoraSection(Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: Union[list[str], Literal["all-linear"]] = ["q_proj", "k_proj", "v_proj", "o_proj"]


class QuantizationSection(Strict):
    load_in_4bit: bool = False
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


class StrongSection(Strict):
    model: str = Field(description="model spec: hub id, local path, embedded:smollm2-135m-instruct, tiny:causal-lm")
    trust_remote_code: bool = False
    lora: LoraSection = Field(default_factory=LoraSection)
    quantization: QuantizationSection = Field(default_factory=QuantizationSection)

    @field_validator("model")
    @classmethod
    def _check_model(cls, v: str) -> str:
        return check_model_spec(v, kind="causal")


class WeakSection(Strict):
    reward: RewardSpec = Field(description="reward specification: a file under reward/ or an inline mapping")


class LabelSection(Strict):
    batch_size: int = Field(32, gt=0, description="pairs per weak-RM forward pass")


class AlignSection(Strict):
    trainer: Literal["dpo"] = "dpo"
    ceiling: bool = Field(True, description="also train the strong ceiling on w2s_train ground truth")
    args: dict[str, Any] = Field(default_factory=dict, description="arguments of the TRL config class")

    @field_validator("args")
    @classmethod
    def _check_args(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        return check_trainer_args(v, info.data.get("trainer", "dpo"))


class EvaluateSection(Strict):
    batch_size: int = Field(16, gt=0)
    region_reference: Literal["ceiling", "student"] = Field(
        "ceiling", description="strong model whose errors define K_s/U_s (SCIENCE.md 2)"
    )


class TrackingSection(Strict):
    report_to: list[Literal["wandb"]] = Field(default_factory=list, description="[] sends nothing anywhere")
    project: str = "w2s-trl"
    entity: str | None = None


class Recipe(Strict):
    run: RunSection
    data: DataSection = Field(default_factory=DataSection)
    weak: WeakSection
    label: LabelSection = Field(default_factory=LabelSection)
    strong: StrongSection
    align: AlignSection = Field(default_factory=AlignSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)

    @model_validator(mode="after")
    def _cross_checks(self) -> "Recipe":
        if self.evaluate.region_reference == "ceiling" and not self.align.ceiling:
            raise ValueError(
                "evaluate.region_reference is 'ceiling' but align.ceiling is false: "
                "turn the ceiling on, or set evaluate.region_reference: student"
            )
        return self


# ----------------------------------------------------------------------------------------------------------------------
# Loading


def _format_errors(path: Path, err: ValidationError, schema: type[BaseModel], what: str = "recipe") -> str:
    n = err.error_count()
    lines = [f"{path}: invalid {what} ({n} problem{'s' if n > 1 else ''})"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(schema, e["loc"][:-1])
            msg = "unknown key" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        given = e.get("input")
        shown = "" if e["type"] in ("extra_forbidden", "missing") or isinstance(given, dict) else f" (given: {given!r})"
        lines.append(f"  {loc or '<top>'}: {msg}{shown}")
    return "\n".join(lines)


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        field = model.model_fields.get(str(part))
        sub = _model_in(field.annotation) if field else None
        if sub is None:
            return []
        model = sub
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found:
            return found
    return None


def _is_str_field(annotation: Any) -> bool:
    if annotation is str:
        return True
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args == [str]
    return False


def apply_override(raw: dict, override: str, source: str = "command line") -> None:
    """Apply one `a.b.c=value` override to the raw recipe dict, typed like the field it overrides."""
    if "=" not in override:
        raise RecipeError(f"{source}: override '{override}' must look like key.path=value (e.g. run.seed=1)")
    key, value_text = override.split("=", 1)
    parts = key.strip().split(".")
    model: type[BaseModel] | None = Recipe
    node = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        annotation = None
        if model is not None:
            if part not in model.model_fields:
                allowed = ", ".join(model.model_fields)
                where = ".".join(parts[:i]) or "<top>"
                raise RecipeError(f"{source}: override '{key}': '{part}' is not a key of {where}; allowed: {allowed}")
            annotation = model.model_fields[part].annotation
        if last:
            keep_string = annotation is not None and _is_str_field(annotation)
            node[part] = value_text if keep_string else yaml.safe_load(value_text)
            return
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise RecipeError(f"{source}: override '{key}': {'.'.join(parts[: i + 1])} is not a mapping")
        node = child
        model = _model_in(annotation) if annotation is not None else None


def _resolve_reward(raw: dict, recipe_path: Path) -> None:
    """`weak.reward: reward/x.yaml` -> the file's contents (paths relative to the recipe's repo or the cwd)."""
    weak = raw.get("weak")
    if isinstance(weak, dict) and isinstance(weak.get("reward"), str):
        spec_path = find_relative(weak["reward"], recipe_path)
        if spec_path is None:
            raise RecipeError(
                f"{recipe_path}: weak.reward: file '{weak['reward']}' not found "
                f"(looked next to the recipe, in its parent and in the current directory)"
            )
        weak["reward"] = load_reward_spec_raw(spec_path)


def find_relative(name: str, anchor: Path) -> Path | None:
    for base in (anchor.parent, anchor.parent.parent, Path.cwd()):
        candidate = (base / name).resolve()
        if candidate.exists():
            return candidate
    return None


def read_yaml(path: Path) -> dict:
    if not path.exists():
        raise RecipeError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a mapping of sections at the top, got {type(data).__name__}")
    return data


def load_reward_spec_raw(path: Path) -> dict:
    data = read_yaml(path)
    try:
        RewardModelSpec.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_format_errors(path, e, RewardModelSpec, "reward specification")) from None
    return data


def load_reward_spec(path: str | Path) -> RewardSpec:
    path = Path(path)
    return RewardModelSpec.model_validate(load_reward_spec_raw(path))


def load_recipe(path: str | Path, overrides: list[str] = (), smoke: bool = False) -> Recipe:
    """Read, override, resolve and validate a recipe. With `smoke`, the smoke settings replace the recipe's and the
    command-line overrides apply on top of them (so `--smoke align.args.max_steps=4` means 4)."""
    path = Path(path)

    def build(raw: dict) -> Recipe:
        for o in overrides:
            apply_override(raw, o)
        _resolve_reward(raw, path)
        try:
            return Recipe.model_validate(raw)
        except ValidationError as e:
            raise RecipeError(_format_errors(path, e, Recipe)) from None

    recipe = build(read_yaml(path))
    return build(smoke_recipe(recipe).model_dump(mode="json")) if smoke else recipe


def smoke_recipe(recipe: Recipe) -> Recipe:
    """The same pipeline on tiny local models and tiny splits: minutes -> seconds, no download."""
    r = recipe.model_copy(deep=True)
    r.run.name = f"{r.run.name}-smoke"
    r.data.size = min(r.data.size, 120)
    r.data.max_rows = SplitLimits(weak_train=32, w2s_train=16, test=16)
    r.strong.model = "tiny:causal-lm"
    r.weak.reward.model = "tiny:reward-model"
    r.weak.reward.train = {**r.weak.reward.train, "max_steps": 2, "per_device_train_batch_size": 8, "save_steps": 1}
    r.align.args = {
        **r.align.args,
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "save_steps": 1,
        "logging_steps": 1,
    }
    return r


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
