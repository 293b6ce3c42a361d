"""`reward_model`: a sequence classifier with one output (the weak RM), trained by the weak stage on `weak_train`
ground truth (w2s_trl/weak.py), or scored as it is when nothing trains it (`w2s-trl-score`)."""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import Field, field_validator
from typing_extensions import Annotated

from w2s_trl.models import check_model_spec
from w2s_trl.rewards.base import RewardSource, RewardSpecBase, SourceContext, register_reward
from w2s_trl.schema import check_trainer_args


class RewardModelSpec(RewardSpecBase):
    """A weak reward model: a sequence classifier with one output, trained on `weak_train` ground truth."""

    type: Literal["reward_model"] = "reward_model"
    model: str = Field(description="model spec: hub id, local path, embedded:minilm-l6, embedded:minilm-l2, "
                       "tiny:reward-model")  # fmt: skip
    max_length: Union[Annotated[int, Field(gt=8)], Literal["auto"]] = Field(
        "auto", description="tokens per scored (prompt, response) text; longer prompts lose their oldest turns. auto: "
        "the 95th percentile of weak_train's lengths, bounded by the model's limit")
    trust_remote_code: bool = False
    train: dict[str, Any] = Field(default_factory=dict, description="trl.RewardConfig arguments")
    length_grouping: bool = Field(
        True, description="training batches of texts of similar length, in a seeded random order (as "
        "align.length_grouping)"
    )
    score_batch_size: int = Field(32, gt=0, description="pairs per forward pass when labelling/scoring")

    @field_validator("model")
    @classmethod
    def _check_model(cls, v: str) -> str:
        return check_model_spec(v, kind="reward")

    @field_validator("train")
    @classmethod
    def _check_train(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_trainer_args(v, "reward")

    def model_specs(self) -> list[str]:
        return [self.model]

    def trained(self, key: str = "weak") -> dict[str, "RewardModelSpec"]:
        return {key: self}

    def smoke(self) -> "RewardModelSpec":
        spec = self.model_copy(deep=True)
        spec.model = "tiny:reward-model"
        if isinstance(spec.max_length, int):  # the tiny tokenizer spends ~2x the tokens on the same text
            spec.max_length *= 2
        spec.train = {**spec.train, "max_steps": 2, "per_device_train_batch_size": 8, "save_steps": 1}
        return spec


@register_reward("reward_model", RewardModelSpec)
class RewardModelSource(RewardSource):
    def __init__(self, spec: RewardModelSpec, model_path: str | None = None, max_length: int | None = None):
        from w2s_trl.models import load_reward_model, model_limit

        self.spec = spec
        self.model, self.tokenizer = load_reward_model(model_path or spec.model, spec.trust_remote_code)
        # `auto` resolves from the data (pipeline); scored alone, the model's own limit
        self.max_length = max_length or (spec.max_length if spec.max_length != "auto" else model_limit(self.model))

    @classmethod
    def build(cls, spec: RewardModelSpec, context: SourceContext, key: str) -> "RewardModelSource":
        return cls(spec, context.trained.get(key), context.max_length.get(key))

    def score(self, prompts, completions, ids=None, count=None, partners=None):
        from w2s_trl.scoring import reward_scores

        return reward_scores(self.model, self.tokenizer, prompts, completions, self.spec.score_batch_size,
                             self.max_length, "reward model", ids=ids, count=count, partners=partners)  # fmt: skip
