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


def test_sample_reads_each_prompt_once_and_draws_generates_samples(tiny_lm):
    """`sample` runs each prompt once and repeats its cache n times: the samples must be those of
    `generate(num_return_sequences=n)` with the same seed, on prompts of different lengths (left padding), and the
    prompt tokens must enter the model once per prompt, not n times."""
    import torch

    from w2s_trl.annotate import sample
    from w2s_trl.scoring import render

    model, tok = tiny_lm
    prompts = [[{"role": "user", "content": text}] for text in
               ("Hi?", "Tell me a long story about a dog and a cat on a boat.", "What is two plus two, exactly?")]
    n, new = 3, 8
    seen = []
    hook = model.register_forward_hook(lambda m, args, kwargs, out: seen.append(kwargs["input_ids"].shape),
                                       with_kwargs=True)  # fmt: skip
    try:
        got = sample(model, tok, prompts, n, new, temperature=1.0, top_p=1.0, seed=7)
    finally:
        hook.remove()

    tok.padding_side = "left"
    enc = tok([render(tok, p, add_generation_prompt=True) for p in prompts], return_tensors="pt", padding=True,
              add_special_tokens=False)  # fmt: skip
    torch.manual_seed(7)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, num_return_sequences=n, max_new_tokens=new, temperature=1.0,
                             top_p=1.0, pad_token_id=tok.pad_token_id)  # fmt: skip
    texts = [t.strip() for t in tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)]
    assert got == [texts[i * n : (i + 1) * n] for i in range(len(prompts))]
    assert len({s for group in got for s in group}) > len(prompts)  # sampling, not n copies of one text

    width = enc["input_ids"].shape[1]
    assert seen[0] == (len(prompts), width - 1)  # the prompts, once each, all but their last token
    assert seen[1] == (len(prompts) * n, 1)  # then generate: the last prompt token of every row, from the cache
    assert all(shape[1] == 1 for shape in seen[1:])


def test_sample_leaves_a_model_with_its_own_cache_implementation_to_generate(tiny_lm):
    """generate refuses a cache passed to a model whose generation config names one (Gemma's hybrid, static): such
    a model samples through plain generate, with the same samples."""
    import copy

    from w2s_trl.annotate import sample

    model, tok = tiny_lm
    prompts = [[{"role": "user", "content": "Hi?"}], [{"role": "user", "content": "What is two plus two, exactly?"}]]
    static = copy.deepcopy(model)
    static.generation_config.cache_implementation = "static"
    got = sample(static, tok, prompts, 2, 6, temperature=1.0, top_p=1.0, seed=3)
    assert got == sample(model, tok, prompts, 2, 6, temperature=1.0, top_p=1.0, seed=3)
