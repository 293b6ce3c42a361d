"""`multi_objective` (SCIENCE.md 2): r = sum_k w_k * r_k over named objectives, each r_k any reward source (a weak
reward model, a density ratio, `gold` ground truth, ...). The weight of the competing objective is the conflict
strength. Every objective's reward is kept (`score_components`) so the label stage stores and logs each one.

Aggregation:
  weighted_sum        r = sum_k w_k r_k;
  normalize_then_sum  r = sum_k w_k (r_k - mu_k) / sd_k: each r_k z-scored first, so objectives on different scales
                      (a reward model's logits, a log-likelihood ratio, gold +-0.5) weigh what their weights say.
                      mu_k, sd_k are statistics FIXED on `weak_train` (`fit_normalization`, done by the label stage),
                      so a pair's score does not depend on the other rows of its batch. Without fixed statistics
                      (online RL calling the source on a batch of completions) it z-scores over the batch: that
                      breaks batch independence (a completion's reward moves with its batch mates) and is only
                      allowed on batches of at least two completions.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

from pydantic import Field, field_validator

from w2s_trl.rewards.base import (
    RewardSource,
    RewardSpecBase,
    SourceContext,
    build_reward_source,
    register_reward,
)
from w2s_trl.schema import Strict


class ObjectiveSpec(Strict):
    weight: float = Field(1.0, description="w_k; the competing objective's weight is the conflict strength")
    reward: "RewardSpec" = Field(description="any reward source: a file under reward/ or an inline mapping")


class MultiObjectiveSpec(RewardSpecBase):
    type: Literal["multi_objective"] = "multi_objective"
    aggregation: Literal["weighted_sum", "normalize_then_sum"] = "weighted_sum"
    objectives: dict[str, ObjectiveSpec] = Field(description="objective name -> {weight, reward}")

    @field_validator("objectives")
    @classmethod
    def _some(cls, v: dict) -> dict:
        if not v:
            raise ValueError("needs at least one objective (name -> {weight, reward})")
        if all(o.weight == 0 for o in v.values()):
            raise ValueError("every objective has weight 0: the reward would be 0 everywhere")
        for name, o in v.items():
            if o.reward.type == "multi_objective":
                raise ValueError(f"objective '{name}' is itself multi_objective: list its objectives here instead")
        return v

    def model_specs(self) -> list[str]:
        return [m for o in self.objectives.values() for m in o.reward.model_specs()]

    def files(self) -> list[str]:
        return [f for o in self.objectives.values() for f in o.reward.files()]

    def trained(self, key: str = "weak") -> dict:
        return {k: s for name, o in self.objectives.items() for k, s in o.reward.trained(f"{key}.{name}").items()}

    def smoke(self) -> "MultiObjectiveSpec":
        spec = self.model_copy(deep=True)
        for o in spec.objectives.values():
            o.reward = o.reward.smoke()
        return spec

    @classmethod
    def resolve_files(cls, raw: dict, anchor) -> dict:
        from w2s_trl.recipe import resolve_reward_raw

        for name, obj in (raw.get("objectives") or {}).items():
            if isinstance(obj, dict) and "reward" in obj:
                obj["reward"] = resolve_reward_raw(obj["reward"], anchor, f"objectives.{name}.reward")
        return raw


# ----------------------------------------------------------------------------------------------------------------------
# Aggregation (pure, tested by value)


def fit_stats(values: Sequence[float | None]) -> dict:
    """mu and sd of the defined values (sd 1 when they are all equal: the objective then adds a constant)."""
    v = [x for x in values if x is not None]
    if not v:
        raise ValueError("no defined rewards to fix normalisation statistics on")
    mu = sum(v) / len(v)
    sd = math.sqrt(sum((x - mu) ** 2 for x in v) / len(v))
    return {"mean": mu, "std": sd if sd > 0 else 1.0, "n": len(v)}


def aggregate(components: dict[str, Sequence[float | None]], weights: dict[str, float], aggregation: str,
              stats: dict[str, dict] | None = None) -> list[float | None]:  # fmt: skip
    """sum_k w_k r_k, or sum_k w_k (r_k - mu_k) / sd_k with fixed `stats`; without stats, normalize_then_sum uses
    batch statistics (breaks batch independence; see the module docstring). None where an objective with a non-zero
    weight could not score the row."""
    names = [k for k in weights if weights[k] != 0]
    if aggregation == "normalize_then_sum" and stats is None:
        if len(next(iter(components.values()))) < 2:
            raise ValueError("normalize_then_sum without fixed statistics needs a batch of at least 2 completions")
        stats = {k: fit_stats(components[k]) for k in names}
    out = []
    for i in range(len(components[names[0]])):
        values = {k: components[k][i] for k in names}
        if any(v is None for v in values.values()):
            out.append(None)
        elif aggregation == "normalize_then_sum":
            out.append(sum(weights[k] * (values[k] - stats[k]["mean"]) / stats[k]["std"] for k in names))
        else:
            out.append(sum(weights[k] * values[k] for k in names))
    return out


@register_reward("multi_objective", MultiObjectiveSpec)
class MultiObjectiveSource(RewardSource):
    def __init__(self, spec: MultiObjectiveSpec, sources: dict[str, RewardSource], stats: dict | None = None):
        self.spec, self.sources, self.stats = spec, sources, stats
        self.weights = {name: o.weight for name, o in spec.objectives.items()}

    @classmethod
    def build(cls, spec: MultiObjectiveSpec, context: SourceContext, key: str) -> "MultiObjectiveSource":
        sources = {name: build_reward_source(o.reward, context, f"{key}.{name}") for name, o in spec.objectives.items()}
        return cls(spec, sources, context.stats.get(key))

    def objective_rewards(self, prompts, completions, ids=None, count=None, partners=None, rows=None):
        """{objective: rewards}, each from its own source."""
        parts = {}
        for i, (name, source) in enumerate(self.sources.items()):
            counted = count if i == 0 else None  # one row count per stage, from the first objective
            parts[name] = source.score_components(prompts, completions, ids, counted, partners, rows)["total"]
        return parts

    def score_components(self, prompts, completions, ids=None, count=None, partners=None, rows=None):
        if self.spec.aggregation == "normalize_then_sum" and self.stats is None and rows is not None:
            raise ValueError("normalize_then_sum scores pairs with statistics fixed on weak_train: call "
                             "fit_normalization(weak_train rows) first (the label stage does)")  # fmt: skip
        parts = self.objective_rewards(prompts, completions, ids, count, partners, rows)
        return {"total": aggregate(parts, self.weights, self.spec.aggregation, self.stats), **parts}

    def score(self, prompts, completions, ids=None, count=None, partners=None):
        return self.score_components(prompts, completions, ids, count, partners)["total"]

    def fit_normalization(self, rows: Sequence[dict]) -> dict | None:
        """mu_k, sd_k of each objective's rewards over both responses of `rows` (weak_train), kept on the source and
        returned for the stage record; None for weighted_sum (nothing to fix)."""
        if self.spec.aggregation != "normalize_then_sum":
            return None
        prompts = [r["prompt"] for r in rows]
        sides = [{**r, "_side": "chosen"} for r in rows] + [{**r, "_side": "rejected"} for r in rows]
        completions = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
        parts = self.objective_rewards(prompts + prompts, completions, partners=completions[len(rows):] +
                                       completions[: len(rows)], rows=sides)  # fmt: skip
        self.stats = {k: fit_stats(v) for k, v in parts.items()}
        return self.stats
