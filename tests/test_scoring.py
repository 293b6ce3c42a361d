"""Batched scoring: log-probs by hand on a tiny model, batch/padding invariance, the prefix check."""

import pytest
import torch

from w2s_trl.errors import DataError
from w2s_trl.scoring import encode_prompt_response, response_logprobs, reward_scores

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
    prompts = [[system] + p for p in PROMPTS] * 4  # 8 rows
    responses = (RESPONSES + [[{"role": "assistant", "content": "No."}], [{"role": "assistant", "content": "Hey."}]]) * 2
    calls = []
    real_forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(k["input_ids"].shape) or real_forward(*a, **k))
    shared, _ = response_logprobs(model, tok, prompts, responses, batch_size=8, share_prefix=True)
    # one batch: the shared system prefix once ([1, P]), each of the 2 distinct prompts once, then the 8 responses in
    # two length buckets of 4
    assert [c[0] for c in calls] == [1, 2, 4, 4] and calls[0][1] >= 16
    calls.clear()
    plain, _ = response_logprobs(model, tok, prompts, responses, batch_size=8, share_prefix=False)
    assert [c[0] for c in calls] == [8]
    assert shared == pytest.approx(plain, abs=1e-4)
    alone = [response_logprobs(model, tok, [p], [r], share_prefix=False)[0][0] for p, r in zip(prompts, responses)]
    assert shared == pytest.approx(alone, abs=1e-4)
