"""Reward sources, one interface (CONVENTIONS.md 6), and the registry of reward kinds.

Every source is a TRL-style callable `f(prompts, completions, **columns) -> list[float]` (so online RL can take it
unchanged) and scores preference pairs in one batched call (`score_pairs`). A kind is one module of this package: its
specification (a pydantic model with a `type` tag, as written in `reward/*.yaml` or inline in a recipe) and its source
class, joined by `@register_reward(kind, Spec)`. Adding a kind touches that one module (and its import in
`rewards/__init__.py`).

A specification says what the pipeline must do for it:
  model_specs()        every model it names (the offline decision);
  files()              every file whose contents its scores depend on (cache keys);
  trained(key)         {key: RewardModelSpec} for each weak reward model the weak stage must train, keyed by where it
                       sits ("weak", "weak.helpful" inside a multi-objective reward);
  smoke()              the same source on tiny local models;
  resolve_files(raw, anchor)   make its file fields absolute (a classmethod on the raw mapping).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from w2s_trl.errors import W2SError
from w2s_trl.schema import Strict
from w2s_trl.scoring import Messages

# ----------------------------------------------------------------------------------------------------------------------
# Inputs in TRL's two formats -> messages


def as_prompt(prompt) -> Messages:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def as_completion(completion) -> Messages:
    return [{"role": "assistant", "content": completion}] if isinstance(completion, str) else list(completion)


# ----------------------------------------------------------------------------------------------------------------------
# Specifications


class RewardSpecBase(Strict):
    """What every reward specification answers; a kind overrides what differs."""

    def model_specs(self) -> list[str]:
        return []

    def files(self) -> list[str]:
        return []

    def trained(self, key: str = "weak") -> dict[str, Any]:
        return {}

    def smoke(self) -> "RewardSpecBase":
        return self.model_copy(deep=True)

    @classmethod
    def resolve_files(cls, raw: dict, anchor: Path) -> dict:
        return raw


@dataclasses.dataclass
class SourceContext:
    """What the pipeline resolved for a source: trained weights and token budgets per key (see `trained`), and
    statistics fixed on `weak_train` (multi-objective normalisation)."""

    trained: dict[str, str] = dataclasses.field(default_factory=dict)
    max_length: dict[str, int | None] = dataclasses.field(default_factory=dict)
    stats: dict[str, dict] = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------------
# Sources


class RewardSource:
    """Base class: subclasses implement `score(prompts, completions)` on message lists, and `build(spec, context,
    key)`; a source made of other sources also overrides `score_components`."""

    kind = "reward"

    @classmethod
    def build(cls, spec, context: SourceContext, key: str) -> "RewardSource":
        raise NotImplementedError

    def score(self, prompts: Sequence[Messages], completions: Sequence[Messages], ids: Sequence[str] | None = None,
              count=None, partners: Sequence[Messages] | None = None) -> list[float | None]:  # fmt: skip
        """One reward per (prompt, completion); None where the completion alone does not fit the model (the prompt
        is cut from the left otherwise; `count`, a truncation.TruncationCount, records both). `partners`: per row,
        the other response of its pair; the prompt is then cut so that both fit (one prompt for both sides)."""
        raise NotImplementedError

    def score_components(self, prompts, completions, ids=None, count=None, partners=None,
                         rows: Sequence[dict] | None = None) -> dict[str, list[float | None]]:  # fmt: skip
        """{"total": rewards, <component>: rewards, ...}: one entry per objective for a multi-objective source, only
        the total otherwise. `rows`: the data rows being scored (a `gold` reward reads their ground truth)."""
        return {"total": self.score(prompts, completions, ids, count, partners)}

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        scores = self.score([as_prompt(p) for p in prompts], [as_completion(c) for c in completions])
        check_finite(self.kind, "total", scores, [f"completion {i} of this batch" for i in range(len(scores))])
        return scores

    def score_pairs(self, rows: Sequence[dict], count=None) -> tuple[list[float | None], list[float | None]]:
        """r(x, chosen) and r(x, rejected) for preference rows, in one batched call."""
        parts = self.score_pair_components(rows, count)
        return parts["total"]

    def score_pair_components(self, rows: Sequence[dict], count=None) -> dict[str, tuple[list, list]]:
        """{component: (r(x, chosen), r(x, rejected))} for preference rows, in one batched call."""
        prompts = [r["prompt"] for r in rows]
        names = [str(r.get("id", i)) for i, r in enumerate(rows)]
        ids = [f"{n}/chosen" for n in names] + [f"{n}/rejected" for n in names]
        chosen, rejected = [r["chosen"] for r in rows], [r["rejected"] for r in rows]
        sides = [{**r, "_side": "chosen"} for r in rows] + [{**r, "_side": "rejected"} for r in rows]
        # partners: a pair's two sides are cut to one prompt, so its margin compares responses, not contexts
        parts = self.score_components(prompts + prompts, chosen + rejected, ids, count, partners=rejected + chosen,
                                      rows=sides)  # fmt: skip
        for name, scores in parts.items():
            check_finite(self.kind, name, scores, ids)
        n = len(rows)
        return {name: (scores[:n], scores[n:]) for name, scores in parts.items()}


def check_finite(kind: str, component: str, scores: Sequence[float | None], ids: Sequence[str]) -> None:
    """A NaN or infinite reward stops the run here, naming the source and the example: downstream it would flip every
    label (NaN compares false) or be skipped as a tie, and the run would report numbers with exit 0."""
    import math

    for score, name in zip(scores, ids):
        if score is not None and not math.isfinite(score):
            part = "" if component == "total" else f" (component '{component}')"
            raise W2SError(f"reward source '{kind}'{part} returned {score} for {name}: its model has NaN/inf weights or "
                           "its training diverged (see the weak stage's loss); retrain it with a lower learning rate or "
                           "check the weights it loads")  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# Registry


@dataclasses.dataclass(frozen=True)
class RewardKind:
    spec: type[RewardSpecBase]
    source: type[RewardSource]


REWARD_KINDS: dict[str, RewardKind] = {}


def register_reward(kind: str, spec: type[RewardSpecBase]):
    """Class decorator: `kind` (the spec's `type` tag) is scored by the decorated source class."""

    def decorate(source: type[RewardSource]) -> type[RewardSource]:
        if kind in REWARD_KINDS:
            raise ValueError(f"reward kind '{kind}' is registered twice")
        REWARD_KINDS[kind] = RewardKind(spec, source)
        source.kind = kind
        return source

    return decorate


def build_reward_source(spec, context: SourceContext | None = None, key: str = "weak") -> RewardSource:
    """A reward source from its specification. `context` carries what the pipeline resolved: a trained weak reward
    model's weights and each one's token budget (`max_length: auto` resolved from the data), by key."""
    return REWARD_KINDS[spec.type].source.build(spec, context or SourceContext(), key)
