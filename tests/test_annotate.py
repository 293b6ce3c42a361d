"""Best-of-N pair selection by value, and resumable annotation."""

import copy
import json
import random

import pytest
import torch

from w2s_trl.annotate import best_of_n, prompt_cache, read_progress, sample, select_pair
from w2s_trl.recipe import BestOfNSection
from w2s_trl.scoring import render


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



PROMPTS = [[{"role": "user", "content": text}] for text in
           ("Hi?", "Tell me a long story about a dog and a cat on a boat.", "What is two plus two, exactly?")]


def left_padded(tok, prompts):
    tok.padding_side = "left"
    return tok([render(tok, p, add_generation_prompt=True) for p in prompts], return_tensors="pt", padding=True,
               add_special_tokens=False)  # fmt: skip


def test_prompt_cache_continues_each_padded_prompt_as_a_full_forward(tiny_lm):
    """The repeated cache plus the last prompt token predicts what the whole left-padded prompt predicts, row by row
    (positions counted as generate counts them, padding masked)."""
    model, tok = tiny_lm
    enc = left_padded(tok, PROMPTS)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    n = 2
    with torch.no_grad():
        cache = prompt_cache(model, ids, mask, n)
        full = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits[:, -1]
        rows = ids.repeat_interleave(n, dim=0)
        last = model(input_ids=rows[:, -1:], attention_mask=mask.repeat_interleave(n, dim=0),
                     position_ids=(mask.sum(-1, keepdim=True) - 1).repeat_interleave(n, dim=0), past_key_values=cache,
                     use_cache=True).logits[:, -1]  # fmt: skip
    assert mask[0].eq(0).any()  # the short prompt is padded
    torch.testing.assert_close(last, full.repeat_interleave(n, dim=0), atol=1e-5, rtol=1e-5)


def test_sample_draws_the_samples_of_generate_with_each_prompt_read_once(tiny_lm):
    """`sample` must give the samples of `generate(num_return_sequences=n)` with the same seed, on prompts of
    different lengths (left padding), and the prompt tokens must enter the model once per prompt, not n times."""
    model, tok = tiny_lm
    n, new = 3, 8
    seen = []
    hook = model.register_forward_hook(lambda m, args, kwargs, out: seen.append(kwargs["input_ids"].shape),
                                       with_kwargs=True)  # fmt: skip
    try:
        got = sample(model, tok, PROMPTS, n, new, temperature=1.0, top_p=1.0, seed=7)
    finally:
        hook.remove()

    enc = left_padded(tok, PROMPTS)
    torch.manual_seed(7)
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, num_return_sequences=n, max_new_tokens=new, temperature=1.0,
                             top_p=1.0, pad_token_id=tok.pad_token_id)  # fmt: skip
    texts = [t.strip() for t in tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)]
    assert got == [texts[i * n : (i + 1) * n] for i in range(len(PROMPTS))]
    assert len({s for group in got for s in group}) > len(PROMPTS)  # sampling, not n copies of one text

    width = enc["input_ids"].shape[1]
    assert seen[0] == (len(PROMPTS), width - 1)  # the prompts, once each, all but their last token
    assert seen[1] == (len(PROMPTS) * n, 1)  # then generate: the last prompt token of every row, from the cache
    assert all(shape[1] == 1 for shape in seen[1:])


def test_sample_leaves_a_model_with_its_own_cache_implementation_to_generate(tiny_lm):
    """generate refuses a passed cache when the generation config names one (static, offloaded): such a model
    samples through plain generate, with the same samples."""
    model, tok = tiny_lm
    static = copy.deepcopy(model)
    static.generation_config.cache_implementation = "static"
    assert prompt_cache(static, *left_padded(tok, PROMPTS[:2]).values(), 2) is None
    got = sample(static, tok, PROMPTS[:2], 2, 6, temperature=1.0, top_p=1.0, seed=3)
    assert got == sample(model, tok, PROMPTS[:2], 2, 6, temperature=1.0, top_p=1.0, seed=3)
