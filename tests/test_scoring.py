"""Batched scoring: log-probs by hand on a tiny model, batch/padding invariance, the prefix check."""

import pytest
import torch

from w2s_trl.errors import DataError
from w2s_trl.scoring import (
    _length_chunks,
    _prefix_batches,
    _PrefixStore,
    _shared_prefix_pass,
    encode_prompt_response,
    response_logprobs,
    reward_scores,
)

PROMPTS = [[{"role": "user", "content": "What is 2 plus 2?"}], [{"role": "user", "content": "Hi"}]]
RESPONSES = [[{"role": "assistant", "content": "4."}], [{"role": "assistant", "content": "Hello! How can I help you today?"}]]


def test_logprobs_match_a_hand_computed_sum(tiny_lm):
    model, tok = tiny_lm
    ids, n_prompt = encode_prompt_response(tok, PROMPTS[0], RESPONSES[0], "ex0")
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    # log p(y|x) = sum over response positions t of log p(ids[t] | ids[:t]) = logits row t-1
    expected = sum(logp[t - 1, ids[t]].item() for t in range(n_prompt, len(ids)))
    sums, counts = response_logprobs(model, tok, PROMPTS[:1], RESPONSES[:1])
    assert counts == [len(ids) - n_prompt]
    assert sums[0] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_rows_score_does_not_depend_on_its_batch_or_padding_side(tiny_lm, side):
    model, tok = tiny_lm
    alone = [response_logprobs(model, tok, [p], [r])[0][0] for p, r in zip(PROMPTS, RESPONSES)]
    together, _ = response_logprobs(model, tok, PROMPTS, RESPONSES, batch_size=2, padding_side=side)  # one padded row
    assert together == pytest.approx(alone, abs=1e-4)


def test_response_tokens_follow_the_rendered_prompt(tiny_lm):
    _, tok = tiny_lm
    ids, n_prompt = encode_prompt_response(tok, PROMPTS[0], RESPONSES[0], "ex0")
    assert tok.decode(ids[n_prompt:]) == "4.<|im_end|>\n"


def test_prompt_that_is_not_a_prefix_names_the_example(tiny_lm):
    _, tok = tiny_lm

    class Shifty:  # renders the prompt differently alone than inside the full conversation
        chat_template = "x"
        pad_token_id = 0

        def apply_chat_template(self, messages, tokenize, add_generation_prompt=False):
            return ("A" if add_generation_prompt else "B") + messages[0]["content"]

        def __call__(self, text, add_special_tokens=False):
            return tok(text, add_special_tokens=add_special_tokens)

    with pytest.raises(DataError, match="example hh-7: the tokenized prompt is not a prefix"):
        encode_prompt_response(Shifty(), PROMPTS[0], RESPONSES[0], "example hh-7")


def test_reward_scores_are_batch_invariant(tiny_rm):
    model, tok = tiny_rm
    alone = [reward_scores(model, tok, [p], [r])[0] for p, r in zip(PROMPTS, RESPONSES)]
    together = reward_scores(model, tok, PROMPTS, RESPONSES, batch_size=2)
    assert together == pytest.approx(alone, abs=1e-5)


def test_shared_context_prefix_runs_once_and_changes_nothing(tiny_lm, monkeypatch):
    model, tok = tiny_lm
    system = {"role": "system", "content": "You are a careful assistant. Answer correctly, refuse harm, and be brief."}
    prompts = [[system] + p for p in PROMPTS] * 4  # 8 rows, 2 distinct prompts
    responses = (RESPONSES + [[{"role": "assistant", "content": "No."}], [{"role": "assistant", "content": "Hey."}]]) * 2
    calls = []  # (rows, tokens per row, kind)
    real_forward = model.forward

    def forward(*a, **k):
        kind = "prefix" if k.get("attention_mask") is None else "context" if k.get("logits_to_keep") == 1 else "tail"
        calls.append((*k["input_ids"].shape, kind))
        return real_forward(*a, **k)

    monkeypatch.setattr(model, "forward", forward)
    shared, _ = response_logprobs(model, tok, prompts, responses, batch_size=8, share_prefix=True)
    # the system prefix once at batch 1, each distinct prompt once, each of the 8 responses once
    assert [(r, kind) for r, _, kind in calls if kind == "prefix"] == [(1, "prefix")] and calls[0][1] >= 16
    assert sum(r for r, _, kind in calls if kind == "context") == 2
    assert sum(r for r, _, kind in calls if kind == "tail") == 8
    calls.clear()
    plain, _ = response_logprobs(model, tok, prompts, responses, batch_size=8, share_prefix=False)
    assert [c[0] for c in calls] == [8]
    assert shared == pytest.approx(plain, abs=1e-4)
    alone = [response_logprobs(model, tok, [p], [r], share_prefix=False)[0][0] for p, r in zip(prompts, responses)]
    assert shared == pytest.approx(alone, abs=1e-4)


def _plain_logp(model, ids, n_prompt):
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    return sum(logp[t - 1, ids[t]].item() for t in range(n_prompt, len(ids)))


def test_prefix_tree_pass_equals_plain_forwards_for_any_lengths(tiny_lm):
    """Contexts of different lengths (left padded), responses of 1 to 9 tokens (a one-token response is scored
    from its context alone), several responses per context."""
    model, _ = tiny_lm
    g = torch.Generator().manual_seed(0)
    prefix = torch.randint(5, 500, (20,), generator=g).tolist()
    seqs, n_prompts = [], []
    for ctx_len, resp_len in [(3, 1), (3, 4), (7, 9), (1, 2), (7, 1), (12, 5)]:
        ctx = torch.randint(5, 500, (ctx_len,), generator=torch.Generator().manual_seed(ctx_len)).tolist()
        seqs.append(prefix + ctx + torch.randint(5, 500, (resp_len,), generator=g).tolist())
        n_prompts.append(len(prefix) + ctx_len)
    store = _PrefixStore(model, torch.device("cpu"))
    with torch.no_grad():
        got = _shared_prefix_pass(model, seqs, n_prompts, store.get(prefix), len(prefix), 0, torch.device("cpu"))
    assert got == pytest.approx([_plain_logp(model, x, n) for x, n in zip(seqs, n_prompts)], abs=1e-4)


def test_prefix_store_runs_only_what_it_has_not_seen(tiny_lm, monkeypatch):
    model, _ = tiny_lm
    a = list(range(10, 40))
    b = a[:20] + list(range(100, 112))  # shares 20 tokens with a
    runs = []
    real_forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *x, **k: runs.append(k["input_ids"].shape[1]) or real_forward(*x, **k))
    store = _PrefixStore(model, torch.device("cpu"))
    with torch.no_grad():
        store.get(a), store.get(b), store.get(a[:25])
        fresh = real_forward(input_ids=torch.tensor([b]), use_cache=True).past_key_values
    assert runs == [30, 12]  # b runs its 12 new tokens on a's first 20; a[:25] is a cut of a, nothing runs
    assert torch.allclose(store.get(b).layers[-1].keys, fresh.layers[-1].keys, atol=1e-5)
    assert store.get(a[:25]).layers[0].keys.shape[2] == 25 and store.get(a).layers[0].keys.shape[2] == 30


def test_length_chunks_minimise_padding_plus_call_cost():
    lengths = [1, 1, 1, 10]
    # one run: 2 + 4*10 = 42; [1,1,1] + [10]: (2 + 3) + (2 + 10) = 17; all apart: 4*2 + 13 = 21
    assert _length_chunks([0, 1, 2, 3], lengths, call_cost=2) == [[0, 1, 2], [3]]
    assert _length_chunks([0, 1, 2, 3], lengths, call_cost=100) == [[0, 1, 2, 3]]  # calls dearer than padding
    assert _length_chunks([0, 1, 2, 3], lengths, call_cost=0) == [[0, 1, 2], [3]]  # ties keep the fewer runs


def test_batches_are_cut_where_one_domain_context_ends():
    domain_a, domain_b = list(range(100, 130)), list(range(200, 230))
    system = [1, 2, 3]  # shared by all, shorter than min_shared
    rows = [(system + d + [p, p + 1] + [9, 9], len(system) + len(d) + 2) for d in (domain_a, domain_b) for p in (5, 7, 11)]
    rows = rows + rows  # two responses per prompt, same context
    batches = _prefix_batches(rows, batch_size=64, min_shared=16)
    assert [sorted(rows[i][0][3] for i in b) for b in batches] == [[100] * 6, [200] * 6]
    assert [len(b) for b in _prefix_batches(rows, batch_size=4, min_shared=16)] == [4, 2, 4, 2]


def test_sliding_window_models_are_scored_plainly(tiny_lm):
    """A sliding-window cache keeps only the last positions, so prefix sharing does not apply: same numbers as
    scoring each row alone."""
    from transformers import MistralConfig, MistralForCausalLM

    _, tok = tiny_lm
    torch.manual_seed(0)
    config = MistralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=8)  # fmt: skip
    model = MistralForCausalLM(config).eval()
    system = {"role": "system", "content": "You are a careful assistant. Answer correctly, refuse harm, and be brief."}
    prompts = [[system] + p for p in PROMPTS] * 2
    responses = RESPONSES * 2
    together, _ = response_logprobs(model, tok, prompts, responses, batch_size=4)
    alone = [response_logprobs(model, tok, [p], [r], share_prefix=False)[0][0] for p, r in zip(prompts, responses)]
    assert together == pytest.approx(alone, abs=1e-4)
