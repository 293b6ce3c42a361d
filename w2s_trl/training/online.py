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


def objective_rewards(source, name: str = "weak") -> tuple[list[NamedReward], list[float]]:
    """A reward source as TRL's (`reward_funcs`, `reward_weights`): a multi-objective source gives one function per
    objective (normalised by the statistics fixed on weak_train under normalize_then_sum), so that sum_k w_k f_k is the
    source's own total; an objective of weight 0 is kept (logged, not paid for). Any other source is one function
    called `name`, weight 1."""
    from w2s_trl.rewards import MultiObjectiveSource

    if not isinstance(source, MultiObjectiveSource):
        return reward_funcs({name: source}), [1.0]
    parts = {}
    for objective, part in source.sources.items():
        stats = (source.stats or {}).get(objective) if source.spec.aggregation == "normalize_then_sum" else None
        if source.spec.aggregation == "normalize_then_sum" and stats is None:
            raise ValueError("normalize_then_sum needs statistics fixed on weak_train (the label stage fits them)")
        parts[objective] = part if stats is None else Normalized(part, stats)
    return reward_funcs(parts), [source.weights[o] for o in parts]


class Normalized:
    """(r - mu) / sd of a source, with mu and sd fixed on weak_train."""

    def __init__(self, source, stats: dict):
        self.source, self.mean, self.std = source, stats["mean"], stats["std"]

    def __call__(self, prompts, completions, **columns) -> list[float | None]:
        return [None if r is None else (r - self.mean) / self.std for r in self.source(prompts, completions, **columns)]


class WeightedSum:
    """One reward from named ones, sum_k w_k f_k (PPO takes a single reward); the last call's per-objective means are
    kept for the log (`rewards/<name>/mean`, the keys GRPO logs)."""

    def __init__(self, funcs: Sequence[NamedReward], weights: Sequence[float]):
        self.funcs, self.weights, self.last = list(funcs), list(weights), {}

    def __call__(self, prompts, completions, **columns) -> list[float]:
        from w2s_trl.rewards.multi_objective import aggregate

        parts = {f.__name__: f(prompts, completions, **columns) for f in self.funcs}
        self.last = {f"rewards/{name}/mean": sum(p) / len(p) for name, p in parts.items()}
        return aggregate(parts, dict(zip(parts, self.weights)), "weighted_sum")


def generation_length(tokenizer):
    """Tokens of a prompt as online trainers feed it: the chat template with the generation prompt."""
    from w2s_trl.scoring import render

    return lambda messages: len(tokenizer(render(tokenizer, list(messages), add_generation_prompt=True),
                                          add_special_tokens=False)["input_ids"])  # fmt: skip


def online_prompts(rows: Sequence[dict], tokenizer, budget: int, stage: str):
    """The distinct prompts of preference rows, each cut from the left to `budget` tokens (whole old turns first; None:
    no cut), and their TruncationCount. A prompt whose last turn alone does not fit is dropped and counted."""
    from w2s_trl.truncation import LeftCutter, TruncationCount, fit_prompt

    count, seen, out = TruncationCount(f"{stage} (prompts)", budget), set(), []
    length_of, cutter = generation_length(tokenizer), LeftCutter(tokenizer)
    for row in rows:
        key = repr(row["prompt"])
        if key in seen:
            continue
        seen.add(key)
        if budget is None:  # no limit: every prompt whole
            prompt, truncated = list(row["prompt"]), False
        else:
            prompt, truncated = fit_prompt(length_of, cutter, row["prompt"], [[]], budget)
        count.add(row["id"], truncated, prompt is None)
        if prompt is not None:
            out.append({"id": row["id"], "prompt": prompt})
    return out, count
