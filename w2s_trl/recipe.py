"""Typed, strict recipes (CONVENTIONS.md 2, 3).

A recipe is a YAML file with one section per pipeline stage. Loading it:
  1. reads the YAML and applies `key.path=value` overrides, each typed like the field it overrides;
  2. resolves `weak.reward` when it names a reward specification file under `reward/`;
  3. validates everything with pydantic (unknown keys are errors) and checks trainer arguments against
     the TRL config class that will receive them.
Every error names the file, the dotted key path, the value given and what is allowed.
"""

from __future__ import annotations

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

from w2s_trl.errors import RecipeError, path_exists, printable
from w2s_trl.models import check_model_spec
from w2s_trl.rewards import (
    REWARD_KINDS,
    DensityRatioSpec,
    RewardModelSpec,
    RewardSpec,
    WeakPolicySpec,
    reward_kind,
)
from w2s_trl.schema import (  # noqa: F401 (re-exported: the schema's shared pieces)
    CPU_TRAINER_DEFAULTS,
    ONLINE_TRAINERS,
    OWNED_TRAINER_ARGS,
    Strict,
    check_trainer_args,
    trl_config_class,
)

REWARD_TAGS: dict[str, type[BaseModel]] = {name: kind.spec for name, kind in REWARD_KINDS.items()}

# ----------------------------------------------------------------------------------------------------------------------
# Recipe sections


RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*")
SYSTEM_TREES = ("/proc", "/sys", "/dev")  # nothing of a run belongs anywhere under these
SYSTEM_DIRS = ("/", "/boot", "/etc", "/bin", "/sbin", "/usr", "/lib", "/lib64", "/var")  # these folders themselves


class RunSection(Strict):
    name: str = Field(description="run folder name under output_dir: letters, digits, _ . + = -, at most 80 "
                      "characters, not starting with a dot or dash")
    output_dir: str = Field("runs", min_length=1, description="parent folder of run directories")
    seed: int = Field(0, ge=0, lt=2**32, description="training seed (torch, numpy, python, TRL)")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not RUN_NAME.fullmatch(v) or len(v) > 80:
            raise ValueError(f"'{printable(v)}' is not a plain folder name: use letters, digits and _ . + = - (at most 80, "
                             "no path separators, not starting with a dot or dash), e.g. dpo_weak_rm-seed1")
        return v

    @field_validator("output_dir")
    @classmethod
    def _writable_place(cls, v: str) -> str:
        if "\x00" in v:
            raise ValueError("contains a NUL character")
        try:
            resolved = Path(v).expanduser().resolve()
        except (OSError, RuntimeError, ValueError) as e:
            raise ValueError(f"not a usable path ({e})") from None
        if any(resolved == Path(d) or Path(d) in resolved.parents for d in SYSTEM_TREES) or str(resolved) in SYSTEM_DIRS:
            raise ValueError(f"'{v}' is a system folder ({resolved}); runs go to a folder of your own, e.g. runs")
        if path_exists(resolved) and not path_exists(resolved, "dir"):
            raise ValueError(f"'{v}' exists and is not a folder")
        return v
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


LOCAL_BUILDERS = ("json", "parquet", "csv", "text", "arrow")  # `datasets` builders that read data_files


class DatasetEntry(Strict):
    """One dataset of a mixture: TRL's DatasetConfig fields (the arguments of `datasets.load_dataset`), plus the
    objective its rows measure when the rows do not say."""

    path: str = Field(min_length=1, description="a hub id, a local file or saved dataset folder, or a builder "
                      "(json, parquet, csv) with data_files")
    name: str | None = Field(None, description="the dataset's configuration name")
    data_dir: str | None = None
    data_files: Union[str, list[str], dict[str, Union[str, list[str]]], None] = None
    split: str = "train"
    columns: list[str] | None = Field(None, description="columns to keep (the rest are dropped before parsing)")
    fraction: float | None = Field(None, gt=0, description="share of this dataset in the mixture (TRL's rule: the "
                                   "largest mixture that oversamples none; set for all entries or none)")
    objective: Literal["helpful", "harmless"] | None = Field(
        None, description="the objective of rows that carry none (an HH-RLHF subset: helpful-base is helpful)"
    )


class DataSection(Strict):
    source: str = Field("testbed:hh", min_length=1,
                        description="testbed:hh, a local JSON/JSONL/parquet file, or a hub dataset id")
    datasets: list[DatasetEntry] | None = Field(
        None, min_length=1, description="a mixture instead of `source` (TRL's `datasets:` list: path, name, "
        "data_dir, data_files, split, columns, fraction; and objective)")
    seed: int = Field(0, description="generates testbed:hh and salts the split; separate from run.seed (training)")
    size: int = Field(1200, gt=0, description="testbed:hh only: number of generated pairs before splitting")
    objectives: list[Literal["helpful", "harmless"]] = Field(["helpful", "harmless"], min_length=1)
    testbed: TestbedSection = Field(default_factory=TestbedSection)
    hub_split: str = Field("train", description="split to read from a hub dataset or a dataset dict")
    hub_name: str | None = Field(None, description="a hub dataset's configuration name (load_dataset's `name`)")
    hub_data_dir: Union[str, dict[Literal["helpful", "harmless"], str], None] = Field(
        None, description="a hub dataset's data_dir, or one per objective: Anthropic/hh-rlhf "
        "{harmless: harmless-base, helpful: helpful-base} reads both subsets, each row tagged with its objective")
    hub_objective: Literal["helpful", "harmless"] = Field(
        "harmless", description="PKU-SafeRLHF: which ground truth orders a pair (better_ or safer_response_id)"
    )
    on_invalid: Literal["skip", "error"] = Field(
        "skip", description="a malformed row (pair differs before its final turn, empty response, ...): skip and "
        "count it, or stop with its name"
    )
    fractions: SplitFractions = Field(default_factory=SplitFractions)
    max_rows: SplitLimits = Field(default_factory=SplitLimits)

    @field_validator("source")
    @classmethod
    def _readable_source(cls, v: str) -> str:
        from w2s_trl.data import check_local_source

        check_local_source(v)
        return v

    @model_validator(mode="after")
    def _one_source(self) -> "DataSection":
        if self.datasets:
            if self.source != "testbed:hh" or self.hub_name or self.hub_data_dir:
                raise ValueError("set either `source` (with hub_name/hub_data_dir) or `datasets`, not both: "
                                 f"source is '{self.source}'")
            given = [d.fraction is not None for d in self.datasets]
            if any(given) and not all(given):
                raise ValueError("`fraction` must be set for every entry of `datasets` or for none "
                                 f"(set on {sum(given)} of {len(given)})")
        return self

    def hub_ids(self) -> list[str]:
        """The dataset ids read from the hub (neither the testbed, a local path nor a builder with local files)."""
        from w2s_trl.models import is_hub_spec

        if not self.datasets:
            return [self.source] if self.source != "testbed:hh" and is_hub_spec(self.source) else []
        return [d.path for d in self.datasets if d.path not in LOCAL_BUILDERS and is_hub_spec(d.path)]

    def local_paths(self) -> list[str]:
        """Local files and folders the data is read from (their contents key the cached data stage)."""
        if not self.datasets:
            return [self.source]
        import glob

        out = []
        for d in self.datasets:
            files = d.data_files
            files = [files] if isinstance(files, str) else list(files.values()) if isinstance(files, dict) else files or []
            for f in (f for group in files for f in ([group] if isinstance(group, str) else group)):
                out += sorted(glob.glob(f, recursive=True)) or [f]  # a pattern: the files it matches now
            out.append(d.path)
        return out


class LoraSection(Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: Union[Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)], Literal["all-linear"]] = [
        "q_proj", "k_proj", "v_proj", "o_proj"]  # fmt: skip
    use_rslora: bool = Field(False, description="rank-stabilised scaling alpha/sqrt(r) (TRL's --use_rslora)")
    use_dora: bool = Field(False, description="weight-decomposed LoRA (TRL's --use_dora); slower per step")
    modules_to_save: list[str] | None = Field(None, description="modules trained in full and saved beside the "
                                              "adapter (e.g. lm_head when tokens were added)")


class QuantizationSection(Strict):
    load_in_4bit: bool = False
    load_in_8bit: bool = Field(False, description="LLM.int8 instead (bitsandbytes); the 4-bit fields do not apply")
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    quant_storage: Literal["uint8", "bfloat16", "float16", "float32"] = Field(
        "uint8", description="dtype the 4-bit weights are packed in; FSDP with QLoRA needs the model's dtype "
        "(bfloat16: recipes/accelerate/fsdp_qlora.yaml)"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> "QuantizationSection":
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("load_in_4bit and load_in_8bit are both true: choose one")
        return self

    @property
    def quantized(self) -> bool:
        return self.load_in_4bit or self.load_in_8bit


class StrongSection(Strict):
    model: str = Field(description="model spec: hub id, local path, embedded:smollm2-135m-instruct, tiny:causal-lm")
    trust_remote_code: bool = False
    chat_template: str | None = Field(
        None, min_length=1, description="Jinja chat template (inline, or a .jinja file path) replacing the "
        "tokenizer's own: a base model without one, or a house format (TRL's --chat_template_path)")
    lora: LoraSection = Field(default_factory=LoraSection)
    quantization: QuantizationSection = Field(default_factory=QuantizationSection)

    @field_validator("model")
    @classmethod
    def _check_model(cls, v: str) -> str:
        return check_model_spec(v, kind="causal")

    @field_validator("chat_template")
    @classmethod
    def _check_template(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from w2s_trl.models import read_chat_template

        try:
            text = read_chat_template(v)
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"neither Jinja text (no '{{{{' or '{{%') nor a readable template file: {e}") from None
        import jinja2

        try:
            jinja2.Environment().parse(text)
        except jinja2.TemplateSyntaxError as e:
            raise ValueError(f"the template does not parse (line {e.lineno}: {e.message})") from None
        if "messages" not in text:
            raise ValueError("the template never reads `messages`, so every conversation would render the same")
        return v


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
    trainer: Literal["dpo", "simpo", "grpo", "rloo", "ppo"] = Field(
        "dpo", description="dpo/simpo: offline on weak labels; grpo/rloo (TRL) and ppo (w2s_trl/training/ppo.py): "
        "online RL on w2s_train prompts, rewarded by weak.reward"
    )
    ceiling: bool = Field(True, description="also train the strong ceiling on w2s_train ground truth")
    length_grouping: bool = Field(
        True, description="batches of rows of similar length, in a seeded random order (a batch costs its longest "
        "row: mixing 60- and 250-token rows pads most of every batch)"
    )
    share_prompt: bool = Field(
        True, description="dpo (with precompute_ref_log_probs) and simpo: each pair's prompt runs once for both "
        "responses (one packed row per pair, TRL's log-probs and loss) on full-attention models; others, and batches "
        "in another layout, run TRL's own forward (printed once, logged as prompt_once/packed); false: always TRL's"
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

    @property
    def online(self) -> bool:
        return self.trainer in ONLINE_TRAINERS

    def completion_tokens(self) -> int:
        """An online trainer's `max_completion_length` (its config's default when not set)."""
        import dataclasses

        if "max_completion_length" in self.args:
            return self.args["max_completion_length"]
        return {f.name: f.default for f in dataclasses.fields(trl_config_class(self.trainer))}["max_completion_length"]

    def online_args(self) -> dict[str, Any]:
        """`args` for an online trainer's config: `max_length` is w2s-trl's (it cuts prompts to max_length minus
        max_completion_length), not a field of GRPOConfig, RLOOConfig or PPOSettings."""
        return {k: v for k, v in self.args.items() if k != "max_length"}


MIN_PROMPT_TOKENS = 8  # an online trainer's max_length must leave at least this many tokens for the prompt


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
    generations: int = Field(
        64, ge=0, description="online trainers: test prompts on which base and student completions are sampled, "
        "judged by ground truth where a row allows it and scored by each objective's reward (0: none)"
    )

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


class HubSection(Strict):
    """Push the run's LoRA adapters to the Hugging Face Hub after a successful run (hub.py; later:
    `w2s-trl push RUN_DIR`). The token comes from HF_TOKEN or `hf auth login`, never from here."""

    push: bool = False
    repo_id: str = Field("{user}/{run}-{stage}", description="repo id, or a template with {user}, {run}, {stage}")
    base_model: str | None = Field(None, description="hub id named as the adapter's base (default: the strong "
                                   "model's, or an embedded model's public id)")
    private: bool = True
    stages: list[Literal["student", "ceiling"]] = Field(default_factory=lambda: ["student"])

    @field_validator("repo_id")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            name = v.format(user="u", run="r", stage="s")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"'{v}': only {{user}}, {{run}} and {{stage}} may be filled in ({e})") from None
        if name.count("/") != 1 or not all(name.split("/")):
            raise ValueError(f"'{v}' must name one repo as owner/name (after filling in its fields: '{name}')")
        return v


class TrackingSection(Strict):
    report_to: list[Literal["wandb", "tensorboard", "trackio"]] = Field(
        default_factory=list, description="TRL's report_to for every trainer; [] sends nothing anywhere. W&B also gets "
        "the summary run (tables, plots, report artifact)"
    )
    project: str = "w2s-trl"
    entity: str | None = None
    log_adapters: bool = Field(False, description="also send the trained LoRA adapters to W&B as model artifacts")
    eval_curves: bool | Literal["auto"] = Field(
        "auto", description="DPO/SimPO students and ceilings evaluated on test every logging_steps (eval_rewards/* "
        "curves; the reported numbers do not change). auto: true with a GPU, false on CPU, where it costs a test "
        "pass per evaluation; smoke runs: false"
    )

    def eval_on_test(self) -> bool:
        import torch

        return self.eval_curves is True or (self.eval_curves == "auto" and torch.cuda.is_available())

    @field_validator("report_to")
    @classmethod
    def _installed(cls, v: list[str]) -> list[str]:
        import importlib.util

        missing = [name for name in v if importlib.util.find_spec(name) is None]
        if missing:
            raise ValueError(f"{', '.join(missing)} is not installed: pip install {' '.join(missing)}, or remove it "
                             "from tracking.report_to")  # fmt: skip
        return v


# ----------------------------------------------------------------------------------------------------------------------
# The deception probe (SCIENCE.md 2): a sweep of students over conflict kinds and strengths, mitigations and weak
# capacities, sharing the stages they have in common (probe.py)

CONFLICT_KINDS = ("multi_objective", "explicit", "implicit")


class ConflictPoint(Strict):
    kind: Literal["multi_objective", "explicit", "implicit"]
    strength: float = Field(gt=0, description="multi_objective: the competing objective's weight; explicit: alpha; "
                            "implicit: N competing ground-truth pairs")  # fmt: skip


class ConflictSweep(Strict):
    """Conflict strengths to sweep, per kind (each value is one student)."""

    multi_objective: list[float] = Field(default_factory=list, description="weights w of the competing objective's "
                                         "reward in r = r_target + w * r_competing (labels the student's pairs)")
    explicit: list[float] = Field(default_factory=list, description="alpha of the explicit conflict term added to "
                                  "the student's loss (SCIENCE.md 2)")
    implicit: list[int] = Field(default_factory=list, description="N ground-truth pairs of the competing objective "
                                "mixed into the student's rows")

    @field_validator("multi_objective", "explicit", "implicit")
    @classmethod
    def _positive(cls, v: list) -> list:
        if any(x <= 0 for x in v):
            raise ValueError(f"strengths must be > 0 (the no-conflict student is always run), got {v}")
        return sorted(v)


class ConfidenceSection(Strict):
    alpha_max: float = Field(0.75, gt=0, le=1, description="weight of the hardened-label term after warm-up")
    warmup_frac: float = Field(0.2, ge=0, le=1, description="share of training over which alpha rises from 0")


class MitigationSection(Strict):
    """Each mitigation is one student, trained under `under` (the conflict it should resist)."""

    under: ConflictPoint | None = Field(None, description="the conflict every mitigation runs under; null: none")
    intermediate: RewardModelSpec | None = Field(None, description="the reward-model student between weak and "
                                                 "strong: trains on the weak labels of w2s_train, then relabels it")
    bootstrap: bool = Field(False, description="weak -> intermediate -> strong (needs intermediate)")
    confidence: ConfidenceSection | None = Field(None, description="the intermediate trained with the auxiliary "
                                                 "confidence loss (needs intermediate)")
    weak_policy: WeakPolicySpec | None = Field(None, description="labels from a causal LM's own log-probs instead "
                                               "of the weak reward model")

    @model_validator(mode="after")
    def _needs_intermediate(self) -> "MitigationSection":
        if (self.bootstrap or self.confidence) and self.intermediate is None:
            raise ValueError("bootstrap and confidence train an intermediate reward model: set mitigations.intermediate")
        return self


class ProbeSection(Strict):
    target: str = Field("harmless", description="the objective the weak supervisor labels; DS and the deception gap "
                        "are measured on its test pairs")  # fmt: skip
    competing: str = Field("helpful", description="the objective that pays for the opposite")
    competing_reward: RewardSpec = Field(default_factory=lambda: {"type": "gold"}, description="r of the competing "
                                         "objective in multi_objective conflict: any reward source (gold = its ground "
                                         "truth where the data has it)")  # fmt: skip
    aggregation: Literal["weighted_sum", "normalize_then_sum"] = Field(
        "normalize_then_sum", description="normalize_then_sum: each objective z-scored with statistics fixed on "
        "weak_train, so a weight means the same whatever each reward's scale")
    weak_name: str = Field("weak", description="name of weak.reward (the primary weak supervisor) in the report")
    weak_capacities: dict[str, RewardSpec] = Field(
        default_factory=dict, description="more weak supervisors (other capacities), each trained on the target's "
        "weak_train ground truth; each gets a no-conflict student, and one under capacity_conflict")
    capacity_conflict: ConflictPoint | None = Field(None, description="the conflict each extra weak capacity also "
                                                    "runs under (deception against weak capacity)")
    conflicts: ConflictSweep = Field(default_factory=ConflictSweep)
    mitigations: MitigationSection = Field(default_factory=MitigationSection)
    reference: Literal["ceiling", "no_conflict"] = Field(
        "ceiling", description="K_s/U_s: where the strong ceiling is right (default), or the no-conflict student")

    @model_validator(mode="after")
    def _under_is_swept(self) -> "ProbeSection":
        m, under = self.mitigations, self.mitigations.under
        if under is not None and (m.bootstrap or m.confidence or m.weak_policy) \
                and under.strength not in getattr(self.conflicts, under.kind):  # fmt: skip
            raise ValueError(f"probe.mitigations.under ({under.kind} {under.strength:g}) is not a point of "
                             f"probe.conflicts.{under.kind} {getattr(self.conflicts, under.kind)}: add it there, so "
                             "each mitigation has the same conflict without it to be compared with")  # fmt: skip
        return self

    def model_specs(self) -> list[str]:
        specs = [m for spec in self.weak_capacities.values() for m in spec.model_specs()]
        specs += self.competing_reward.model_specs()
        for spec in (self.mitigations.intermediate, self.mitigations.weak_policy):
            if spec is not None:
                specs += spec.model_specs()
        return specs

    @model_validator(mode="after")
    def _distinct(self) -> "ProbeSection":
        if self.target == self.competing:
            raise ValueError(f"target and competing are both '{self.target}': the probe needs two objectives")
        if self.weak_name in self.weak_capacities:
            raise ValueError(f"weak_capacities repeats the primary supervisor's name '{self.weak_name}'")
        reserved = {"competing", "weak_policy", "ceiling", "base"} & ({self.weak_name} | set(self.weak_capacities))
        if reserved:
            raise ValueError(f"weak supervisor names {sorted(reserved)} are reserved by the probe; rename them")
        return self


class Recipe(Strict):
    run: RunSection
    data: DataSection = Field(default_factory=DataSection)
    weak: WeakSection
    label: LabelSection = Field(default_factory=LabelSection)
    strong: StrongSection
    align: AlignSection = Field(default_factory=AlignSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    hub: HubSection = Field(default_factory=HubSection)
    probe: ProbeSection | None = Field(None, description="the deception probe: a sweep of students (probe.py)")

    @model_validator(mode="after")
    def _cross_checks(self) -> "Recipe":
        if self.probe is not None:
            self._check_probe(self.probe)
        if self.evaluate.region_reference == "ceiling" and not self.align.ceiling:
            raise ValueError(
                "evaluate.region_reference is 'ceiling' but align.ceiling is false: "
                "turn the ceiling on, or set evaluate.region_reference: base"
            )
        if self.evaluate.region_reference == "base" and not self.evaluate.base:
            raise ValueError(
                "evaluate.region_reference is 'base' but evaluate.base is false: turn evaluate.base on, or use ceiling"
            )
        if self.align.online:
            self._check_online()
        if self.hub.push:
            self._check_hub()
        if self.label.method == "best_of_n" and self.align.ceiling:
            raise ValueError(
                "label.method is 'best_of_n' but align.ceiling is true: sampled responses have no ground truth to "
                "train a ceiling on; set align.ceiling: false"
            )
        return self


    def _check_hub(self) -> None:
        from huggingface_hub.utils import validate_repo_id

        from w2s_trl.models import loadable_base_id

        if "ceiling" in self.hub.stages and not self.align.ceiling:
            raise ValueError("hub.stages has ceiling but align.ceiling is false: no ceiling adapter to push")
        if self.probe is not None:
            raise ValueError("hub.push pushes a run's student/ceiling adapters; a probe run has a sweep of students: "
                             "push one with `w2s-trl push` from its variant's folder, or turn hub.push off")  # fmt: skip
        if loadable_base_id(self.strong.model, self.hub.base_model) is None:  # a base others can load, or say so now
            raise ValueError(f"the strong model '{self.strong.model}' has no hub id others could load the adapter "
                             "onto: set hub.base_model to the hub id of the same weights")  # fmt: skip
        for stage in self.hub.stages:
            name = self.hub.repo_id.format(user="user", run=self.run.name, stage=stage)
            try:
                validate_repo_id(name)
            except Exception as e:  # noqa: BLE001 (HFValidationError: the Hub's own rule, in its words)
                raise ValueError(f"hub.repo_id gives '{name}' for {stage}, which the Hub refuses: {e}") from None

    def _check_online(self) -> None:
        t = self.align.trainer
        if self.probe is not None:
            raise ValueError(f"the deception probe trains offline students (dpo or simpo); align.trainer is {t}")
        if self.align.ceiling:
            raise ValueError(f"align.ceiling is true but align.trainer is {t}: online RL needs a reward for sampled "
                             "completions, and w2s_train has ground truth only for its fixed pairs. Set "
                             "align.ceiling: false and evaluate.region_reference: base (the report then compares with "
                             "the strong model before alignment; PGR needs a ceiling: run the dpo recipe for one)")
        if self.label.method != "weak_labels":
            raise ValueError(f"label.method {self.label.method} makes training pairs; align.trainer {t} samples its "
                             "own completions and needs none: leave label.method at weak_labels")  # fmt: skip
        completion = self.align.completion_tokens()
        if not isinstance(completion, int) or completion < 1:
            raise ValueError(f"align.args.max_completion_length must be a positive number of tokens for {t}, got "
                             f"{completion!r}")  # fmt: skip
        max_length = self.align.max_length_setting()
        if isinstance(max_length, int) and max_length - completion < MIN_PROMPT_TOKENS:
            raise ValueError(f"align.args.max_length {max_length} leaves {max_length - completion} tokens for the "
                             f"prompt after max_completion_length {completion}: raise max_length (or use auto) or lower "
                             "max_completion_length")  # fmt: skip
        if "reward_weights" in self.align.args:
            raise ValueError("align.args.reward_weights: the weights are weak.reward's (each objective's `weight`, one "
                             "reward function per objective); set them there")  # fmt: skip
        if self.weak.reward.type == "multi_objective":
            bad = [n for n in self.weak.reward.objectives if not n or "/" in n]
            if bad:
                raise ValueError(f"objective names {bad} become W&B keys (rewards/<name>/mean): no '/' in them")
        gold = [spec for spec in _reward_leaves(self.weak.reward) if spec.type == "gold"]
        if gold:
            raise ValueError(f"weak.reward has a gold reward; align.trainer {t} scores sampled completions, which "
                             "have no ground truth: use a reward model, density ratio or weak policy")  # fmt: skip

    def _check_probe(self, probe: ProbeSection) -> None:
        missing = [o for o in (probe.target, probe.competing) if o not in self.data.objectives]
        if missing:
            raise ValueError(f"probe objectives {missing} are not in data.objectives {self.data.objectives}: add them")
        if self.label.method != "weak_labels":
            raise ValueError("the probe labels w2s_train pairs with its weak supervisors: set label.method: weak_labels")
        if self.weak.reward.type == "multi_objective":
            raise ValueError("probe: weak.reward is the target objective's supervisor; the probe builds the "
                             "multi-objective reward itself (probe.competing_reward, probe.conflicts.multi_objective)")
        uses_ceiling = probe.reference == "ceiling"
        if uses_ceiling and not self.align.ceiling:
            raise ValueError("probe.reference is 'ceiling' but align.ceiling is false: turn it on, or use no_conflict")
        if (probe.conflicts.explicit or (probe.mitigations.under and probe.mitigations.under.kind == "explicit")) \
                and self.align.trainer not in ("dpo", "simpo"):
            raise ValueError(f"explicit conflict needs align.trainer dpo or simpo, got {self.align.trainer}")


def _reward_leaves(spec) -> list:
    """The reward specs inside a (possibly multi-objective) reward spec."""
    if spec.type == "multi_objective":
        return [leaf for o in spec.objectives.values() for leaf in _reward_leaves(o.reward)]
    return [spec]


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
    """A field whose values are text only (str, a Literal of strings, optionally None): an override keeps its text
    as given, so `run.offline=on` stays 'on' instead of YAML 1.1's boolean."""
    if annotation is str:
        return True
    if typing.get_origin(annotation) is Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and _is_str_field(args[0])
    return False


_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def parse_value(text: str, where: str = "value") -> Any:
    """YAML, except that a number in exponent form stays a number: YAML 1.1 reads `1e-4` as the string '1e-4', which
    a learning rate must not be. Text that is not valid (safe) YAML is a RecipeError naming `where`."""
    try:
        value = yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except RecursionError:
        raise RecipeError(f"{where}: nested too deeply") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{where}: '{printable(text)}' is not a valid YAML value ({_yaml_problem(e)}); quote text, "
                          "write lists as [a, b] and mappings as {k: v}") from None  # fmt: skip
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    return value


def _yaml_problem(e: Exception) -> str:
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    mark = getattr(e, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(problem)


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
            node[part] = value_text if keep_string else parse_value(value_text, f"{source}: override '{printable(key)}'")
            return
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise RecipeError(f"{source}: override '{key}': {'.'.join(parts[: i + 1])} is not a mapping")
        node = child
        if part == "reward":
            model = REWARD_TAGS.get(reward_kind(child), RewardModelSpec)  # the reward union: the member in the file
        else:
            model = _model_in(annotation) if annotation is not None else None


def _resolve_reward(raw: dict, recipe_path: Path) -> None:
    """`weak.reward: reward/x.yaml` -> the file's contents (paths relative to the recipe's repo or the cwd)."""
    weak = raw.get("weak")
    if isinstance(weak, dict) and "reward" in weak:
        weak["reward"] = resolve_reward_raw(weak["reward"], recipe_path, "weak.reward")


def _resolve_probe_rewards(raw: dict, recipe_path: Path) -> None:
    """The probe's reward fields may name files under reward/ too."""
    probe = raw.get("probe")
    if not isinstance(probe, dict):
        return
    if "competing_reward" in probe:
        probe["competing_reward"] = resolve_reward_raw(probe["competing_reward"], recipe_path, "probe.competing_reward")
    if isinstance(probe.get("weak_capacities"), dict):
        probe["weak_capacities"] = {name: resolve_reward_raw(v, recipe_path, f"probe.weak_capacities.{name}")
                                    for name, v in probe["weak_capacities"].items()}  # fmt: skip
    mitigations = probe.get("mitigations")
    if isinstance(mitigations, dict):
        for key in ("intermediate", "weak_policy"):
            if mitigations.get(key) is not None:
                mitigations[key] = resolve_reward_raw(mitigations[key], recipe_path, f"probe.mitigations.{key}")


def resolve_reward_raw(value: Any, anchor: Path, where: str) -> Any:
    """A reward given as a file name -> the file's validated contents; an inline mapping -> its file fields made
    absolute. Recursive: a multi-objective reward's objectives may name files too."""
    if isinstance(value, str):
        if not value.strip():
            raise RecipeError(f"{anchor}: {where}: empty; name a reward specification file (reward/*.yaml) or give "
                              "the reward inline as a mapping")  # fmt: skip
        spec_path = find_relative(value, anchor)
        if spec_path is not None and spec_path.is_dir():
            raise RecipeError(f"{anchor}: {where}: '{value}' is a directory; name a reward specification file "
                              "(reward/*.yaml) in it")  # fmt: skip
        if spec_path is None:
            raise RecipeError(f"{anchor}: {where}: file '{value}' not found "
                              f"(looked next to the recipe, in its parent and in the current directory)")  # fmt: skip
        return load_reward_spec_raw(spec_path)
    if isinstance(value, dict) and reward_kind(value) in REWARD_KINDS:
        return REWARD_KINDS[reward_kind(value)].spec.resolve_files(value, anchor)
    return value


def find_relative(name: str, anchor: Path) -> Path | None:
    for base in (anchor.parent, anchor.parent.parent, Path.cwd()):
        candidate = (base / name).resolve()
        if path_exists(candidate):
            return candidate
    return None


MAX_YAML_BYTES = 1024**2  # a recipe or reward spec is a few KB; a bigger file is a mistake (a data file?)
MAX_YAML_DEPTH = 24


class StrictLoader(yaml.SafeLoader):
    """Safe YAML where a key given twice in one mapping is an error naming both lines (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        lines: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = key in lines
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                continue
            first = lines.setdefault(key, key_node.start_mark.line + 1)
            if seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{printable(str(key))}' given twice (lines {first} and {key_node.start_mark.line + 1}); "
                    "keep one", key_node.start_mark)  # fmt: skip
        return super().construct_mapping(node, deep)


def read_text_file(path: Path, what: str, max_bytes: int = MAX_YAML_BYTES) -> str:
    """A UTF-8 text file, or a RecipeError that says what is wrong with the path or its bytes."""
    if str(path) in ("", "."):
        raise RecipeError(f"{what}: the path is empty; give a {what} file")
    if not path_exists(path):
        raise RecipeError(f"{printable(str(path), 200)}: file not found")
    if path.is_dir():
        raise RecipeError(f"{path}: is a directory; give a {what} file (.yaml)")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise RecipeError(f"{path}: {size:,} bytes is too large for a {what} (at most {max_bytes:,})")
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from None
    except OSError as e:
        raise RecipeError(f"{path}: cannot read: {e.strerror or e}") from None


MAX_YAML_NODES = 100_000  # after expanding aliases: a few hundred bytes of nested aliases expand to billions


def _depth(value: Any) -> int:
    """Nesting depth, walking the structure as validation will (aliases expanded); a RecipeError past
    MAX_YAML_NODES nodes, before anything tries to validate a "billion laughs" document."""
    depth, level, nodes = 0, [value], 0
    while level:
        depth += 1
        nodes += len(level)
        if nodes > MAX_YAML_NODES:
            raise RecipeError(f"more than {MAX_YAML_NODES:,} values once YAML aliases are expanded; a recipe is small")
        level = [v for x in level if isinstance(x, (dict, list)) for v in (x.values() if isinstance(x, dict) else x)]
    return depth - 1


def read_yaml(path: Path, what: str = "recipe") -> dict:
    text = read_text_file(path, what)
    try:
        data = yaml.load(text, Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader
    except RecursionError:
        raise RecipeError(f"{path}: nested too deeply (at most {MAX_YAML_DEPTH} levels)") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a mapping of sections at the top, got {type(data).__name__}")
    try:
        depth = _depth(data)
    except RecipeError as e:
        raise RecipeError(f"{path}: {e}") from None
    if depth > MAX_YAML_DEPTH:
        raise RecipeError(f"{path}: nested {depth} levels deep; a {what} has at most {MAX_YAML_DEPTH}")
    return data


def load_reward_spec_raw(path: Path) -> dict:
    data = resolve_reward_raw(read_yaml(path, "reward specification"), path, "reward")
    try:
        reward_spec_adapter().validate_python(data)
    except ValidationError as e:
        raise RecipeError(_format_errors(path, e, _reward_schema(data), "reward specification")) from None
    return data


@functools.cache
def reward_spec_adapter() -> TypeAdapter:
    return TypeAdapter(RewardSpec)


def _reward_schema(data: Any) -> type[BaseModel]:
    return REWARD_TAGS.get(reward_kind(data), RewardModelSpec)


def load_reward_spec(path: str | Path):
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
        _resolve_probe_rewards(raw, path)
        try:
            return Recipe.model_validate(raw)
        except ValidationError as e:
            raise RecipeError(_format_errors(path, e, Recipe)) from None

    recipe = build(read_yaml(path))
    if not smoke:
        return recipe
    overrides = [o for o in overrides if not o.strip().startswith("hub.push")]  # a smoke run never pushes itself
    return build(smoke_recipe(recipe).model_dump(mode="json"))


def smoke_recipe(recipe: Recipe) -> Recipe:
    """The same pipeline on tiny local models and tiny splits: minutes -> seconds, no download."""
    r = recipe.model_copy(deep=True)
    if len(r.run.name) > 80 - len("-smoke"):
        raise RecipeError(f"run.name '{r.run.name}' is {len(r.run.name)} characters; a smoke run adds '-smoke' and a "
                          "run name has at most 80: shorten it")  # fmt: skip
    r.run.name = f"{r.run.name}-smoke"
    if r.data.hub_ids():  # a hub dataset: no download in a smoke run
        print(f"[w2s-trl] smoke: the data names hub datasets ({', '.join(r.data.hub_ids())}); using testbed:hh "
              "instead", flush=True)  # fmt: skip
        r.data.source, r.data.hub_data_dir, r.data.hub_name, r.data.datasets = "testbed:hh", None, None, None
        r.data.objectives = ["helpful", "harmless"] if r.probe is not None else r.data.objectives
    r.data.size = min(r.data.size, 120)
    r.data.max_rows = SplitLimits(weak_train=32, w2s_train=16, test=16)
    r.strong.model = "tiny:causal-lm"
    r.strong.quantization.load_in_4bit = r.strong.quantization.load_in_8bit = False  # tiny model in full precision
    r.weak.reward = smoke_reward(r.weak.reward)
    if r.probe is not None:
        smoke_probe(r.probe)
    r.label.best_of_n.n = min(r.label.best_of_n.n, 3)
    r.label.best_of_n.max_new_tokens = min(r.label.best_of_n.max_new_tokens, 8)
    r.align.args = {**r.align.args, **SMOKE_ALIGN_ARGS[r.align.trainer]}
    r.tracking.eval_curves = False
    if r.hub.push:  # tiny random adapters never go to a real repo; `w2s-trl push` still can, on purpose
        print("[w2s-trl] smoke: hub.push turned off (a smoke run's adapters are tiny random models)", flush=True)
        r.hub.push = False
    return r


_SMOKE_TRL = {"max_steps": 2, "per_device_train_batch_size": 4, "save_steps": 1, "logging_steps": 1}
SMOKE_ALIGN_ARGS = {
    "dpo": {**_SMOKE_TRL, "gradient_accumulation_steps": 1},
    "simpo": {**_SMOKE_TRL, "gradient_accumulation_steps": 1},
    "grpo": {**_SMOKE_TRL, "num_generations": 2, "max_completion_length": 8},
    "rloo": {**_SMOKE_TRL, "num_generations": 2, "max_completion_length": 8},
    "ppo": {"total_steps": 2, "batch_size": 4, "minibatch_size": 2, "max_completion_length": 8},
}


def smoke_probe(probe: ProbeSection) -> None:
    """Every model of the probe on tiny local ones; one strength per conflict kind (the sweep's shape stays)."""
    probe.weak_capacities = {name: spec.smoke() for name, spec in probe.weak_capacities.items()}
    probe.competing_reward = probe.competing_reward.smoke()
    m = probe.mitigations
    m.intermediate = m.intermediate.smoke() if m.intermediate else None
    m.weak_policy = m.weak_policy.smoke() if m.weak_policy else None
    c = probe.conflicts
    c.multi_objective, c.explicit = c.multi_objective[-1:], c.explicit[-1:]
    c.implicit = [min(4, n) for n in c.implicit[-1:]]  # smoke splits hold a handful of competing pairs


def smoke_reward(spec):
    """The same reward source on tiny local models."""
    return spec.smoke()


def dump_recipe(recipe: Recipe, transform=lambda d: d) -> str:
    """The recipe as YAML; `transform` edits its values first (redact.scrub for the run directory's copy)."""
    return yaml.safe_dump(transform(recipe.model_dump(mode="json")), sort_keys=False)
