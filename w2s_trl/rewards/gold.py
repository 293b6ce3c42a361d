"""`gold`: ground truth as a reward, where the data has it (SCIENCE.md 2: an objective's reward can be its oracle).

A row knows its ground truth per objective in `preferences` ({objective: +1 if its `chosen` is preferred under that
objective, -1 if its `rejected` is}; data.py fills it, merging rows that share a prompt and both responses, and
PKU-SafeRLHF records carry both objectives). r(x, y) = +margin/2 for the preferred response, -margin/2 for the other,
0 on a row without that objective's ground truth (no signal there, not a guess).
"""

from __future__ import annotations

from typing import Literal, Sequence

from pydantic import Field

from w2s_trl.data import known_objectives
from w2s_trl.rewards.base import RewardSource, RewardSpecBase, SourceContext, register_reward


class GoldSpec(RewardSpecBase):
    type: Literal["gold"] = "gold"
    objective: str | None = Field(None, description="whose ground truth; default: the objective it is named under "
                                  "in a multi_objective reward")  # fmt: skip
    margin: float = Field(1.0, gt=0, description="r(preferred) - r(other) on a row with this objective's ground truth")


def gold_rewards(rows: Sequence[dict], objective: str, margin: float) -> list[float]:
    """Pure: one reward per scored side; each row carries `_side` ('chosen' or 'rejected') and `preferences`."""
    out = []
    for row in rows:
        pref = known_objectives(row).get(objective)
        if pref is None:
            out.append(0.0)
            continue
        sign = 1 if row["_side"] == "chosen" else -1
        out.append(sign * pref * margin / 2)
    return out


@register_reward("gold", GoldSpec)
class GoldSource(RewardSource):
    def __init__(self, spec: GoldSpec, objective: str):
        self.spec, self.objective = spec, objective

    @classmethod
    def build(cls, spec: GoldSpec, context: SourceContext, key: str) -> "GoldSource":
        objective = spec.objective or (key.rsplit(".", 1)[-1] if "." in key else None)
        if objective is None:
            raise ValueError("a gold reward outside a multi_objective reward needs `objective` (whose ground truth)")
        return cls(spec, objective)

    def score(self, prompts, completions, ids=None, count=None, partners=None):
        raise TypeError("a gold reward reads ground truth from data rows: score pairs (score_pairs), not free text")

    def score_components(self, prompts, completions, ids=None, count=None, partners=None, rows=None):
        if rows is None:
            raise TypeError("a gold reward reads ground truth from data rows: score pairs (score_pairs), not free text")
        return {"total": gold_rewards(rows, self.objective, self.spec.margin)}
