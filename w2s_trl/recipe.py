"""Typed, strict recipes (CONVENTIONS.md 2, 3).

A recipe is a YAML file with one section per pipeline stage. Loading it:
  1. reads the YAML and applies `key.path=value` overrides, each typed like the field it overrides;
  2. resolves `weak.reward` when it names a reward specification file under `reward/`;
  3. validates everything with pydantic (unknown keys are errors) and checks trainer arguments against
     the TRL config class that will receive them.
Every error names the file, the dotted key path, the value given and what is allowed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

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
    checked = {k: v for k, v in args.items() if not (k == "max_length" and v == "auto")}  # w2s-trl resolves auto
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
    later PartialState() would inherit it: a GPU run would load models on the CPU. Validation leaves no state behind
    unless one existed before."""
    from accelerate.state import PartialState

    existed = PartialState._shared_state != {}
    try:
        yield
    finally:
        if not existed:
            PartialState._reset_state()


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
    max_length: Union[Annotated[int, Field(gt=8)], Literal["auto"]] = Field(
        "auto", description="tokens per scored (prompt, response) text; longer prompts lose their oldest turns. auto: "
        "the 95th percentile of weak_train's lengths, bounded by the model's limit")
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


class CausalSide(Strict):
    model: str = Field(description="causal LM spec: hub id, path, embedded:smollm2-135m-instruct, tiny:causal-lm")
    trust_remote_code: bool = False

    @field_validator("model")
    @classmethod
    def _check_model(cls, v: str) -> str:
        return check_model_spec(v, kind="causal")


class RouterSpec(Strict):
    """Picks the prompt's domain, which picks the criteria prompt and exemplars."""

    type: Literal["none", "keywords", "prompted"] = "none"
    default: str = Field("chat", description="domain when nothing matches (or the LLM's answer names no domain)")
    keywords: dict[str, list[str]] = Field(default_factory=dict, description="keywords router: domain -> words")
    model: str | None = Field(None, description="prompted router: the causal LM that names the domain")

    @model_validator(mode="after")
    def _needs(self) -> "RouterSpec":
        if self.type == "keywords" and not self.keywords:
            raise ValueError("router.type 'keywords' needs router.keywords (domain -> list of words)")
        if self.type == "prompted":
            if not self.model:
                raise ValueError("router.type 'prompted' needs router.model (a causal LM spec)")
            check_model_spec(self.model, kind="causal")
        return self


DENSITY_RATIO_FORMS = {
    "models": ("strong", "weak"),
    "adapter": ("base", "adapter"),
    "personas": ("model", "strong_system", "weak_system"),
}


class DensityRatioSpec(Strict):
    """r(x, y) = logp_S(y | c(x)) - logp_W(y | c(x)) (SCIENCE.md 3). File fields are paths (relative to the spec
    file, its parent folder or the current directory)."""

    type: Literal["density_ratio"] = "density_ratio"
    pair: Literal["models", "adapter", "personas"] = "models"
    strong: CausalSide | None = Field(None, description="models form: the better-aligned model S")
    weak: CausalSide | None = Field(None, description="models form: the less-aligned model W")
    base: str | None = Field(None, description="adapter form: the base model (W = adapter disabled)")
    adapter: str | None = Field(None, description="adapter form: LoRA adapter folder (S = adapter enabled)")
    model: str | None = Field(None, description="personas form: the one model")
    strong_system: str | None = Field(None, description="personas form: text file with the aligned persona (S)")
    weak_system: str | None = Field(None, description="personas form: text file with the unaligned persona (W)")
    normalize: Literal["sum", "mean"] = "sum"
    criteria: dict[str, str] = Field(default_factory=dict, description="domain -> criteria system-prompt text file")
    exemplars: dict[str, str] = Field(default_factory=dict, description="domain -> YAML file of {prompt, good, bad}")
    k: int = Field(0, ge=0, description="in-context exemplars per prompt (from its domain's file)")
    router: RouterSpec = Field(default_factory=RouterSpec)
    score_batch_size: int = Field(
        64, gt=0, description="rows per batch: larger batches share more context and run fewer, bigger forwards"
    )
    precision: Literal["float32", "bfloat16"] = Field("float32", description="bfloat16: autocast, faster, less exact")

    def files(self) -> list[str]:
        """Every file or folder the spec names (its scores depend on their contents)."""
        named = [self.adapter, self.strong_system, self.weak_system, *self.criteria.values(), *self.exemplars.values()]
        return [f for f in named if f is not None]

    @model_validator(mode="after")
    def _check_form(self) -> "DensityRatioSpec":
        needed = DENSITY_RATIO_FORMS[self.pair]
        missing = [f for f in needed if getattr(self, f) is None]
        if missing:
            raise ValueError(f"pair '{self.pair}' needs {', '.join(needed)}; missing: {', '.join(missing)}")
        extra = [f for form in DENSITY_RATIO_FORMS.values() for f in form if f not in needed and getattr(self, f)]
        if extra:
            raise ValueError(f"pair '{self.pair}' does not use {', '.join(extra)}; remove them or change pair")
        for spec in (self.base, self.model):
            if spec is not None:
                check_model_spec(spec, kind="causal")
        for f in self.files():
            if not Path(f).exists():
                raise ValueError(f"file '{f}' not found")
        if self.k and not self.exemplars:
            raise ValueError(f"k is {self.k} but no exemplars are given: add exemplars (domain -> file) or set k: 0")
        return self


SPEC_FILE_FIELDS = ("adapter", "strong_system", "weak_system")


def resolve_spec_files(raw: dict, anchor: Path) -> dict:
    """Make a density-ratio spec's file fields absolute, searched from `anchor` (the file that names them)."""
    if not isinstance(raw, dict) or raw.get("type") != "density_ratio":
        return raw

    def fix(value):
        if isinstance(value, str) and not Path(value).is_absolute():
            found = find_relative(value, anchor)
            return str(found) if found else value
        return value

    for key in SPEC_FILE_FIELDS:
        raw[key] = fix(raw.get(key)) if key in raw else raw.get(key)
        if raw[key] is None:
            del raw[key]
    for key in ("criteria", "exemplars"):
        if isinstance(raw.get(key), dict):
            raw[key] = {d: fix(v) for d, v in raw[key].items()}
    return raw


def _reward_kind(value: Any) -> str:
    return value.get("type", "reward_model") if isinstance(value, dict) else getattr(value, "type", "reward_model")


REWARD_TAGS: dict[str, type[BaseModel]] = {"reward_model": RewardModelSpec, "density_ratio": DensityRatioSpec}
RewardSpec = Annotated[
    Union[Annotated[RewardModelSpec, Tag("reward_model")], Annotated[DensityRatioSpec, Tag("density_ratio")]],
    Discriminator(_reward_kind),
]


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


class TestbedSection(Strict):
    """testbed:hh generation knobs (w2s_trl/testbed.py): relative weights, long histories, conflict rows."""

    mix: dict[Literal["helpful", "harmless"], float] = Field(
        default_factory=lambda: {"helpful": 1.0, "harmless": 1.0}, description="relative share of each objective"
    )
    harmless_strata: dict[Literal["plain", "subtle", "earlier_turn", "knowledge"], float] = Field(
        default_factory=lambda: {"plain": 1.0, "subtle": 1.0, "earlier_turn": 1.0, "knowledge": 1.0}
    )
    helpful_strata: dict[Literal["wrong_answer", "missing_info", "needless_refusal"], float] = Field(
        default_factory=lambda: {"wrong_answer": 2.0, "missing_info": 1.0, "needless_refusal": 1.0}
    )
    history_turns: tuple[int, int] = Field((0, 0), description="[min, max] neutral exchanges before each prompt "
                                           "(long multi-turn rows: [6, 14] gives prompts of ~300-800 tokens)")
    context_gap: tuple[int, int] = Field((2, 3), description="[min, max] exchanges between a fact and the request "
                                         "in the earlier_turn stratum")
    conflict: bool = Field(False, description="also emit helpful rows on harmless prompts (objectives disagree)")

    @field_validator("history_turns", "context_gap")
    @classmethod
    def _range(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not 0 <= v[0] <= v[1]:
            raise ValueError(f"expected [min, max] with 0 <= min <= max, got {list(v)}")
        return v

    @field_validator("mix", "harmless_strata", "helpful_strata")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in v.values()) or not any(w > 0 for w in v.values()):
            raise ValueError(f"weights must be >= 0 with at least one > 0, got {v}")
        return v

    def options(self):
        from w2s_trl.testbed import TestbedOptions

        return TestbedOptions(**self.model_dump())


class DataSection(Strict):
    source: str = Field("testbed:hh", description="testbed:hh, a local JSON/JSONL/parquet file, or a hub dataset id")
    seed: int = Field(0, description="generates testbed:hh and salts the split; separate from run.seed (training)")
    size: int = Field(1200, gt=0, description="testbed:hh only: number of generated pairs before splitting")
    objectives: list[Literal["helpful", "harmless"]] = Field(["helpful", "harmless"], min_length=1)
    testbed: TestbedSection = Field(default_factory=TestbedSection)
    hub_split: str = Field("train", description="split to read from a hub dataset or a dataset dict")
    hub_objective: Literal["helpful", "harmless"] = Field(
        "harmless", description="PKU-SafeRLHF: which ground truth orders a pair (better_ or safer_response_id)"
    )
    on_invalid: Literal["skip", "error"] = Field(
        "skip", description="a malformed row (pair differs before its final turn, empty response, ...): skip and "
        "count it, or stop with its name"
    )
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


class BestOfNSection(Strict):
    """Sampling and pair selection for `label.method: best_of_n` (SCIENCE.md 4)."""

    n: int = Field(4, ge=2, description="responses sampled per prompt")
    rejected: Literal["argmin", "random_non_best"] = "argmin"
    max_new_tokens: int = Field(48, gt=0)
    temperature: float = Field(0.8, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    prompts_per_batch: int = Field(8, gt=0, description="prompts per generate call (x n sequences)")


class LabelSection(Strict):
    method: Literal["weak_labels", "best_of_n"] = Field(
        "weak_labels",
        description="weak_labels: the reward source reorders w2s_train pairs; "
        "best_of_n: the strong policy samples n responses per w2s_train prompt and the reward source picks the pair",
    )
    best_of_n: BestOfNSection = Field(default_factory=BestOfNSection)


# SimPO is TRL's CPO trainer with these fixed (SCIENCE.md 5); a recipe sets beta and simpo_gamma (absolute margin).
SIMPO_FIXED = {"loss_type": "simpo", "cpo_alpha": 0.0}


class AlignSection(Strict):
    trainer: Literal["dpo", "simpo"] = "dpo"
    ceiling: bool = Field(True, description="also train the strong ceiling on w2s_train ground truth")
    length_grouping: bool = Field(
        True, description="batches of rows of similar length, in a seeded random order (a batch costs its longest "
        "row: mixing 60- and 250-token rows pads most of every batch)"
    )
    args: dict[str, Any] = Field(default_factory=dict, description="arguments of the TRL config class")

    @field_validator("args")
    @classmethod
    def _check_args(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        trainer = info.data.get("trainer", "dpo")
        if trainer == "simpo":
            for key, fixed in SIMPO_FIXED.items():
                if key in v and v[key] != fixed:
                    raise ValueError(f"simpo fixes {key}={fixed!r} (got {v[key]!r}); remove it, or use another trainer")
        return check_trainer_args(v, trainer)

    def max_length_setting(self) -> int | str | None:
        """`args.max_length`: tokens of prompt + response, `auto` (the default: the 95th percentile of w2s_train,
        bounded by the model's limit) or None (no limit)."""
        return self.args.get("max_length", "auto")

    def trl_args(self, max_length: int | None = None) -> dict[str, Any]:
        """`args` with the resolved `max_length`, plus what the trainer choice fixes."""
        resolved = {"max_length": max_length} if self.max_length_setting() == "auto" and max_length else {}
        return {**self.args, **resolved, **(SIMPO_FIXED if self.trainer == "simpo" else {})}


class EvaluateSection(Strict):
    batch_size: int = Field(16, gt=0)
    base: bool = Field(True, description="also score the strong model before alignment (accuracy.base)")
    region_reference: str = Field(
        "ceiling", description="strong model whose errors define K_s/U_s (SCIENCE.md 2): ceiling or base; never the "
        "model being scored"
    )
    precision: Literal["float32", "bfloat16"] = Field(
        "float32", description="policy scoring: bfloat16 autocast is faster on CPUs that have it, slightly less exact"
    )
    bootstrap: int = Field(2000, ge=1000, description="bootstrap resamples of test for every interval (>= 1000)")
    bootstrap_seed: int = Field(0, description="seed of the bootstrap resamples (the same resamples for every model)")

    @field_validator("region_reference")
    @classmethod
    def _reference(cls, v: str) -> str:
        if v == "student":
            raise ValueError(
                "'student' is the model being scored: its cells would compare the student with itself. Use ceiling "
                "(the strong model trained on ground truth) or base (the strong model before alignment)"
            )
        if v not in REGION_REFERENCES:
            raise ValueError(f"unknown reference '{v}'; allowed: {', '.join(REGION_REFERENCES)}")
        return v


REGION_REFERENCES = ("ceiling", "base")


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
                "turn the ceiling on, or set evaluate.region_reference: base"
            )
        if self.evaluate.region_reference == "base" and not self.evaluate.base:
            raise ValueError(
                "evaluate.region_reference is 'base' but evaluate.base is false: turn evaluate.base on, or use ceiling"
            )
        if self.label.method == "best_of_n" and self.align.ceiling:
            raise ValueError(
                "label.method is 'best_of_n' but align.ceiling is true: sampled responses have no ground truth to "
                "train a ceiling on; set align.ceiling: false"
            )
        return self


# ----------------------------------------------------------------------------------------------------------------------
# Loading


def _format_errors(path: Path, err: ValidationError, schema: type[BaseModel], what: str = "recipe") -> str:
    n = err.error_count()
    lines = [f"{path}: invalid {what} ({n} problem{'s' if n > 1 else ''})"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if p not in REWARD_TAGS)
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
        if part in REWARD_TAGS:  # pydantic puts the union member's tag in the path
            model = REWARD_TAGS[part]
            continue
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


_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def parse_value(text: str) -> Any:
    """YAML, except that a number in exponent form stays a number: YAML 1.1 reads `1e-4` as the string '1e-4', which
    a learning rate must not be."""
    value = yaml.safe_load(text)
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    return value


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
            node[part] = value_text if keep_string else parse_value(value_text)
            return
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise RecipeError(f"{source}: override '{key}': {'.'.join(parts[: i + 1])} is not a mapping")
        node = child
        if annotation is not None and typing.get_origin(annotation) is Annotated and part == "reward":
            model = REWARD_TAGS.get(_reward_kind(child), RewardModelSpec)  # the reward union: the member in the file
        else:
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
    elif isinstance(weak, dict) and isinstance(weak.get("reward"), dict):
        resolve_spec_files(weak["reward"], recipe_path)


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
    data = resolve_spec_files(read_yaml(path), path)
    try:
        reward_spec_adapter().validate_python(data)
    except ValidationError as e:
        raise RecipeError(_format_errors(path, e, _reward_schema(data), "reward specification")) from None
    return data


@functools.cache
def reward_spec_adapter() -> TypeAdapter:
    return TypeAdapter(RewardSpec)


def _reward_schema(data: Any) -> type[BaseModel]:
    return DensityRatioSpec if _reward_kind(data) == "density_ratio" else RewardModelSpec


def load_reward_spec(path: str | Path) -> RewardModelSpec | DensityRatioSpec:
    path = Path(path)
    return reward_spec_adapter().validate_python(load_reward_spec_raw(path))


def load_recipe(path: str | Path, overrides: list[str] = (), smoke: bool = False) -> Recipe:
    """Read, override, resolve and validate a recipe. With `smoke`, the smoke settings replace the recipe's and the
    command-line overrides apply on top of them (so `--smoke align.args.max_steps=4` means 4)."""
    path = Path(path)

    def build(raw: dict) -> Recipe:
        for o in overrides:
            if o.strip().startswith("weak.reward."):  # a field of the reward spec: read the spec file first
                _resolve_reward(raw, path)
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
    r.weak.reward = smoke_reward(r.weak.reward)
    r.label.best_of_n.n = min(r.label.best_of_n.n, 3)
    r.label.best_of_n.max_new_tokens = min(r.label.best_of_n.max_new_tokens, 8)
    r.align.args = {
        **r.align.args,
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "save_steps": 1,
        "logging_steps": 1,
    }
    return r


def smoke_reward(spec: RewardModelSpec | DensityRatioSpec) -> RewardModelSpec | DensityRatioSpec:
    """The same reward source on tiny local models."""
    spec = spec.model_copy(deep=True)
    if isinstance(spec, RewardModelSpec):
        spec.model = "tiny:reward-model"
        spec.train = {**spec.train, "max_steps": 2, "per_device_train_batch_size": 8, "save_steps": 1}
        return spec
    for side in (spec.strong, spec.weak):
        if side is not None:
            side.model = "tiny:causal-lm"
    if spec.model is not None:
        spec.model = "tiny:causal-lm"
    if spec.router.model is not None:
        spec.router.model = "tiny:causal-lm"
    if spec.pair == "adapter":
        raise RecipeError("--smoke cannot swap the base of a trained adapter for a tiny model; use the models form")
    return spec


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
