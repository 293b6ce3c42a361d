"""Best-of-N pair selection by value, and resumable annotation."""

import json
import random

import pytest

from w2s_trl.annotate import best_of_n, read_progress, select_pair
from w2s_trl.recipe import BestOfNSection


def test_argmax_and_argmin():
    assert select_pair(["a", "b", "c", "d"], [0.1, 0.9, -0.5, 0.9], "argmin", random.Random(0)) == (1, 2)  # first max


def test_random_non_best_draws_only_below_the_max():
    picks = {select_pair(["a", "b", "c", "d"], [0.1, 0.9, -0.5, 0.9], "random_non_best", random.Random(s))[1]
             for s in range(50)}  # fmt: skip
    assert picks == {0, 2}  # never index 1 or 3 (both hold the max)


def test_ties_and_identical_texts_are_skipped():
    assert select_pair(["a", "b"], [1.0, 1.0], "argmin", random.Random(0)).startswith("tie")
    assert select_pair(["same", "same"], [2.0, 1.0], "argmin", random.Random(0)).startswith("identical")


class CountingSource:
    """A reward source that scores by length and counts what it is asked."""

    def __init__(self):
        self.calls = 0

    def __call__(self, prompts, completions, **columns):
        self.calls += len(completions)
        return [float(len(c)) for c in completions]


def test_annotation_resumes_without_regenerating_finished_prompts(tiny_lm, tmp_path):
    model, tok = tiny_lm
    rows = [{"id": f"p{i}", "objective": "helpful", "category": "x", "subtlety": "overt",
             "prompt": [{"role": "user", "content": f"Question number {i}?"}]} for i in range(5)]  # fmt: skip
    cfg = BestOfNSection(n=3, max_new_tokens=6, prompts_per_batch=2)
    progress = tmp_path / "progress.jsonl"
    full = CountingSource()
    best_of_n(model, tok, rows, full, cfg, seed=0, progress=progress)
    reference = read_progress(progress)
    assert set(reference) == {r["id"] for r in rows} and full.calls == 15
    for rec in reference.values():
        assert len(rec["samples"]) == len(rec["scores"]) == 3
        assert rec["scores"] == [float(len(s)) for s in rec["samples"]]

    # simulate a kill after the first batch: keep two finished prompts and half a line
    lines = progress.read_text().splitlines()
    progress.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][:20])
    resumed = CountingSource()
    counts = best_of_n(model, tok, rows, resumed, cfg, seed=0, progress=progress)
    assert resumed.calls == 9  # only the 3 unfinished prompts were sampled and scored
    assert counts["resumed_with"] == 2 and counts["prompts"] == 5
    after = read_progress(progress)
    for done_id in (json.loads(lines[0])["id"], json.loads(lines[1])["id"]):
        assert after[done_id] == reference[done_id]  # finished prompts untouched
