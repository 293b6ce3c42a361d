"""Truncation that keeps the response (SCIENCE.md 7), and token-length statistics.

When prompt + response is longer than a model's `max_length`, the prompt is cut from the left: whole turns first,
oldest first (a leading system message is kept until last), then the start of the earliest remaining turn, token by
token. The response is never cut: a row whose response alone does not fit is dropped and counted. Every path that
feeds a model uses this: reward-model training and scoring, DPO/SimPO rows (cut before TRL sees them, so its own
length filter never drops a row), policy and density-ratio scoring.

Counts per stage (`TruncationCount`) are printed and kept in the stage record; a stage that loses more than 10% of
its rows says so loudly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

Messages = list[dict[str, str]]
LOUD_LOSS = 0.10


def causal_length(tokenizer) -> Callable[[Messages], int]:
    """Tokens of a conversation as a causal LM (and TRL's DPO/SimPO) sees it: the chat template, no extra specials."""
    from w2s_trl.scoring import render

    return lambda messages: len(tokenizer(render(tokenizer, messages), add_special_tokens=False)["input_ids"])


def reward_length(tokenizer) -> Callable[[Messages], int]:
    """Tokens of a conversation as a reward model (and trl.RewardTrainer) sees it: the text plus EOS and specials."""
    from w2s_trl.scoring import reward_text

    return lambda messages: len(tokenizer(reward_text(tokenizer, messages))["input_ids"])


class LeftCutter:
    """Cuts a text from the left in tokens of the model's tokenizer."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def n_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def keep_last(self, text: str, keep: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer.decode(ids[len(ids) - keep :] if keep > 0 else [], skip_special_tokens=True).lstrip()


def fit_prompt(length_of: Callable[[Messages], int], cutter: LeftCutter, prompt: Messages,
               responses: Sequence[Messages], max_length: int) -> tuple[Messages | None, bool]:  # fmt: skip
    """The longest left part of `prompt` to drop so that prompt + every response fits `max_length` tokens.

    Returns (prompt, truncated) or (None, True) when even the last prompt turn cut to one token leaves no room for
    the longest response: the row is dropped, never its response.
    """
    longest = max(responses, key=lambda r: length_of(prompt + list(r)))

    def fits(p: Messages) -> bool:
        return length_of(p + list(longest)) <= max_length

    if fits(prompt):
        return list(prompt), False
    system = [prompt[0]] if prompt and prompt[0]["role"] == "system" else []
    turns = list(prompt[len(system) :])
    if not turns:
        return None, True
    # 1. whole turns, oldest first: the fewest dropped that fit (monotone, so a binary search)
    lo, hi = 1, len(turns) - 1  # keep at least the last turn
    if hi >= lo and fits(system + turns[hi:]):
        while lo < hi:
            mid = (lo + hi) // 2
            if fits(system + turns[mid:]):
                hi = mid
            else:
                lo = mid + 1
        return system + turns[lo:], True
    # 2. the last turn alone is too long: keep its last tokens (the most that fit), then drop the system message
    last = turns[-1]
    for head in (system, []):
        best, lo, hi = None, 1, cutter.n_tokens(last["content"])
        while lo <= hi:
            mid = (lo + hi) // 2
            candidate = head + [{**last, "content": cutter.keep_last(last["content"], mid)}]
            if fits(candidate):
                best, lo = candidate, mid + 1
            else:
                hi = mid - 1
        if best is not None:
            return best, True
    return None, True


@dataclass
class TruncationCount:
    """Rows seen, truncated (prompt cut) and dropped (response alone too long) at one stage, with a few ids."""

    stage: str
    max_length: int | None = None
    rows: int = 0
    truncated: int = 0
    dropped: int = 0
    examples: dict[str, list[str]] = field(default_factory=lambda: {"truncated": [], "dropped": []})

    def add(self, row_id: str, truncated: bool, dropped: bool) -> None:
        self.rows += 1
        for name, flag in (("dropped", dropped), ("truncated", truncated and not dropped)):
            if flag:
                setattr(self, name, getattr(self, name) + 1)
                if len(self.examples[name]) < 5:
                    self.examples[name].append(row_id)

    def as_dict(self) -> dict:
        return {"max_length": self.max_length, "rows": self.rows, "truncated": self.truncated, "dropped": self.dropped,
                "examples": self.examples}  # fmt: skip

    def report(self) -> str:
        """One line for the log; loud when more than 10% of the rows are lost."""
        line = (f"[w2s-trl] {self.stage}: {self.rows} rows, {self.truncated} truncated (prompt cut from the left to "
                f"{self.max_length} tokens), {self.dropped} dropped (response alone too long)")  # fmt: skip
        if self.dropped:
            line += f"; dropped ids: {', '.join(self.examples['dropped'])}"
        if self.rows and self.dropped / self.rows > LOUD_LOSS:
            line += (f"\n[w2s-trl] WARNING: {self.stage} lost {self.dropped / self.rows:.0%} of its rows (more than "
                     f"{LOUD_LOSS:.0%}): raise max_length or filter long responses")  # fmt: skip
        print(line, flush=True)
        return line


def fit_rows(rows: Sequence[dict], length_of, cutter: LeftCutter, max_length: int, count: TruncationCount,
             responses=("chosen", "rejected")) -> list[dict]:  # fmt: skip
    """Preference rows whose prompt is cut so that prompt + each response fits; dropped rows are left out."""
    out = []
    for row in rows:
        prompt, truncated = fit_prompt(length_of, cutter, row["prompt"], [row[k] for k in responses], max_length)
        count.add(row["id"], truncated, prompt is None)
        if prompt is not None:
            out.append({**row, "prompt": prompt} if truncated else row)
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Lengths


PERCENTILES = (50, 90, 95, 99)


def percentiles(values: Sequence[int]) -> dict[str, float]:
    """p50/p90/p95/p99 and max of token lengths (nearest-rank on the sorted values: real token counts)."""
    if not len(values):
        return {}
    v = np.sort(np.asarray(values))
    out = {f"p{p}": int(v[min(len(v) - 1, int(np.ceil(p / 100 * len(v))) - 1)]) for p in PERCENTILES}
    out["max"] = int(v[-1])
    return out


def auto_max_length(full_lengths: Sequence[int], model_limit: int | None) -> int:
    """`max_length: auto`: the 95th percentile of prompt + response tokens, bounded by the model's limit."""
    return auto_from_p95(percentiles(full_lengths)["p95"], model_limit)


def auto_from_p95(p95: int, model_limit: int | None) -> int:
    """`max_length: auto` from an already computed 95th percentile (the data stage's length statistics)."""
    return min(p95, model_limit) if model_limit else p95


def length_stats(rows: Sequence[dict], tokenizer, kind: str) -> dict:
    """Token-length percentiles of prompts, responses (chosen and rejected) and prompt + response, as a model with
    this tokenizer reads them (`kind`: causal or reward)."""
    length_of = (causal_length if kind == "causal" else reward_length)(tokenizer)
    prompts, responses, full = [], [], []
    for r in rows:
        p = length_of(r["prompt"])
        prompts.append(p)
        for side in ("chosen", "rejected"):
            n = length_of(r["prompt"] + r[side])
            full.append(n)
            responses.append(max(0, n - p))
    return {"prompt": percentiles(prompts), "response": percentiles(responses), "full": percentiles(full)}
