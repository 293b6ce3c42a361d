"""Reward sources: one interface (base.py), one module per kind, registered by its spec's `type` tag.

  reward_model     a sequence classifier (the weak RM), trained by the weak stage on weak_train ground truth
  density_ratio    logp_S(y|c(x)) - logp_W(y|c(x)) (SCIENCE.md 3), with routers (routers.py) picking criteria
  weak_policy      a causal LM's own log-probs (weak labels from a weak policy, SCIENCE.md 1)
  gold             ground truth where the data has it
  multi_objective  a weighted mix of any of the above, per objective (SCIENCE.md 2)
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Discriminator, Tag

from w2s_trl.rewards import density_ratio, gold, multi_objective, reward_model, weak_policy  # noqa: F401 (registers)
from w2s_trl.rewards.base import (
    REWARD_KINDS,
    RewardSource,
    RewardSpecBase,
    SourceContext,
    as_completion,
    as_prompt,
    build_reward_source,
)
from w2s_trl.rewards.density_ratio import (
    CausalSide,
    DensityRatioSource,
    DensityRatioSpec,
    build_context,
    density_ratio as density_ratio_scores,
    load_exemplars,
    render_exemplars,
)
from w2s_trl.rewards.gold import GoldSource, GoldSpec
from w2s_trl.rewards.multi_objective import MultiObjectiveSource, MultiObjectiveSpec, ObjectiveSpec
from w2s_trl.rewards.reward_model import RewardModelSource, RewardModelSpec
from w2s_trl.rewards.routers import KeywordRouter, NoRouter, PromptedRouter, RouterSpec, build_router
from w2s_trl.rewards.weak_policy import WeakPolicySource, WeakPolicySpec


def reward_kind(value: Any) -> str:
    return value.get("type", "reward_model") if isinstance(value, dict) else getattr(value, "type", "reward_model")


RewardSpec = Annotated[
    Union[tuple(Annotated[kind.spec, Tag(name)] for name, kind in REWARD_KINDS.items())],
    Discriminator(reward_kind),
]
ObjectiveSpec.model_rebuild(_types_namespace={"RewardSpec": RewardSpec})
MultiObjectiveSpec.model_rebuild(force=True)
