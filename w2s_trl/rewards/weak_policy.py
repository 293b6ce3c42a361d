"""`weak_policy`: a causal LM supervises through its own log-probs (SCIENCE.md 1, weak labels from a weak policy):
r(x, y) = logp_w(y | x), so a pair's delta = logp_w(a|x) - logp_w(b|x) (`sum`, DPO-style) or the difference of
per-token means (`mean`, SimPO-style). Any causal LM can supervise this way: a small instruct model, or one the user
aligned on `weak_train` ground truth (a path)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from w2s_trl.models import check_model_spec
from w2s_trl.rewards.base import RewardSource, RewardSpecBase, SourceContext, register_reward


class WeakPolicySpec(RewardSpecBase):
    type: Literal["weak_policy"] = "weak_policy"
    model: str = Field(description="causal LM spec: hub id, path, embedded:smollm2-135m-instruct, tiny:causal-lm")
    trust_remote_code: bool = False
    normalize: Literal["sum", "mean"] = Field("sum", description="sum: DPO-style; mean: per response token, SimPO-style")
    score_batch_size: int = Field(32, gt=0)
    precision: Literal["float32", "bfloat16"] = Field("float32", description="bfloat16: autocast, faster, less exact")

    @field_validator("model")
    @classmethod
    def _check_model(cls, v: str) -> str:
        return check_model_spec(v, kind="causal")

    def model_specs(self) -> list[str]:
        return [self.model]

    def smoke(self) -> "WeakPolicySpec":
        spec = self.model_copy(deep=True)
        spec.model = "tiny:causal-lm"
        return spec


def policy_rewards(sums, counts, normalize: str) -> list[float | None]:
    """Pure: logp (sum) or logp / response tokens (mean); None where the row could not be scored."""
    return [None if s is None else (s / n if normalize == "mean" else s) for s, n in zip(sums, counts)]


@register_reward("weak_policy", WeakPolicySpec)
class WeakPolicySource(RewardSource):
    def __init__(self, spec: WeakPolicySpec):
        from w2s_trl.models import load_causal_lm, load_tokenizer, model_limit

        self.spec = spec
        self.model = load_causal_lm(spec.model, trust_remote_code=spec.trust_remote_code)
        self.tokenizer = load_tokenizer(spec.model, spec.trust_remote_code)
        self.max_length = model_limit(self.model)  # the prompt is cut from the left to fit; the response never

    @classmethod
    def build(cls, spec: WeakPolicySpec, context: SourceContext, key: str) -> "WeakPolicySource":
        return cls(spec)

    def score(self, prompts, completions, ids=None, count=None, partners=None):
        from w2s_trl.scoring import autocast_for, response_logprobs

        sums, counts = response_logprobs(self.model, self.tokenizer, prompts, completions, self.spec.score_batch_size,
                                         ids=ids, desc="weak policy", autocast_dtype=autocast_for(self.spec.precision),
                                         max_length=self.max_length, count=count, partners=partners)  # fmt: skip
        return policy_rewards(sums, counts, self.spec.normalize)
