"""Reward sources as TRL reward functions for online RL (GRPOTrainer, RLOOTrainer; SCIENCE.md 5): f(prompts,
completions, **columns) -> list[float], one per objective, each named by its objective so TRL logs it under
`rewards/<name>/mean` (TRL names a callable by its `__name__`, else its class: two density-ratio sources would share a
key)."""

from __future__ import annotations

from typing import Sequence


class NamedReward:
    """One reward source under its objective's name. A completion the source cannot score (longer than its window)
    is an error, never a silent 0: every completion of a GRPO group must carry a reward."""

    def __init__(self, name: str, source):
        self.__name__ = name
        self.source = source

    def __call__(self, prompts: Sequence, completions: Sequence, **columns) -> list[float]:
        scores = self.source(prompts, completions, **columns)
        missing = sum(s is None for s in scores)
        if missing:
            raise ValueError(f"reward '{self.__name__}' could not score {missing} of {len(scores)} sampled "
                             "completions (longer than its window): lower max_completion_length or raise its "
                             "max_length")  # fmt: skip
        return [float(s) for s in scores]


def reward_funcs(sources: dict[str, object]) -> list[NamedReward]:
    """{objective: reward source} -> TRL's `reward_funcs`, in the same order as the recipe's weights."""
    if not sources:
        raise ValueError("online RL needs at least one reward source")
    bad = [n for n in sources if not n or "/" in n]
    if bad:
        raise ValueError(f"reward names must be non-empty and free of '/' (they become W&B keys): {bad}")
    return [NamedReward(name, source) for name, source in sources.items()]
