"""Truncation keeps the response (SCIENCE.md 7): the prompt loses its oldest turns first, then the start of its
last turn; a response alone too long drops the row, counted. Lengths and `max_length: auto` by value."""

import pytest

from w2s_trl.truncation import (
    LeftCutter,
    TruncationCount,
    auto_max_length,
    causal_length,
    fit_prompt,
    fit_rows,
    percentiles,
    reward_length,
)


class WordTokenizer:
    """One token per whitespace-separated word; enough to test the cutting logic by hand."""

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": list(range(len(text.split())))}

    def decode(self, ids, skip_special_tokens=True):
        raise AssertionError("the word cutter below does not decode")


class WordCutter(LeftCutter):
    def __init__(self):
        super().__init__(WordTokenizer())

    def keep_last(self, text, keep):
        return " ".join(text.split()[len(text.split()) - keep :])


def words(messages):  # the "rendered" length: words of every message, one extra token per message
    return sum(len(m["content"].split()) + 1 for m in messages)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


PROMPT = [{"role": "system", "content": "be kind"}, user("one two three"), assistant("four five"),
          user("six seven eight nine")]  # fmt: skip
RESPONSE = [assistant("ten eleven")]  # 3 tokens


def test_a_prompt_that_fits_is_kept_whole():
    # lengths: system 3, user 4, assistant 3, user 5, response 3 = 18
    assert fit_prompt(words, WordCutter(), PROMPT, [RESPONSE], 18) == (PROMPT, False)


def test_oldest_turns_go_first_and_the_system_message_stays():
    # 17: drop the first user turn (4) -> 14 fits; the assistant turn stays
    prompt, cut = fit_prompt(words, WordCutter(), PROMPT, [RESPONSE], 17)
    assert cut and prompt == [PROMPT[0], PROMPT[2], PROMPT[3]]
    # 11: only system + last user turn fit (3 + 5 + 3)
    prompt, _ = fit_prompt(words, WordCutter(), PROMPT, [RESPONSE], 11)
    assert prompt == [PROMPT[0], PROMPT[3]]


def test_the_last_turn_loses_its_start_then_the_system_message_goes():
    # 9: system 3 + response 3 leave 3 for the user turn: its last 2 words (+1 per message)
    prompt, cut = fit_prompt(words, WordCutter(), PROMPT, [RESPONSE], 9)
    assert cut and prompt == [PROMPT[0], user("eight nine")]
    # 5: the system message goes too; the user turn keeps its last word
    prompt, _ = fit_prompt(words, WordCutter(), PROMPT, [RESPONSE], 5)
    assert prompt == [user("nine")]


def test_a_response_that_alone_does_not_fit_drops_the_row():
    assert fit_prompt(words, WordCutter(), PROMPT, [RESPONSE], 4) == (None, True)


def test_a_pair_shares_one_cut_fitted_to_its_longer_response():
    long_response = [assistant("a b c d e")]  # 6 tokens
    prompt, _ = fit_prompt(words, WordCutter(), PROMPT, [RESPONSE, long_response], 14)
    assert words(prompt + long_response) <= 14 and prompt == [PROMPT[0], PROMPT[3]]


def test_fit_rows_counts_and_names_what_it_drops():
    rows = [{"id": "keep", "prompt": PROMPT, "chosen": RESPONSE, "rejected": RESPONSE},
            {"id": "cut", "prompt": PROMPT, "chosen": RESPONSE, "rejected": [assistant("x " * 8)]},
            {"id": "drop", "prompt": PROMPT, "chosen": RESPONSE, "rejected": [assistant("x " * 20)]}]  # fmt: skip
    count = TruncationCount("test", 18)
    out = fit_rows(rows, words, WordCutter(), 18, count)
    assert [r["id"] for r in out] == ["keep", "cut"]
    assert out[1]["chosen"] == RESPONSE and out[1]["prompt"] != PROMPT  # the response is intact, the prompt cut
    assert (count.rows, count.truncated, count.dropped) == (3, 1, 1)
    assert count.examples == {"truncated": ["cut"], "dropped": ["drop"]}


def test_a_stage_losing_more_than_a_tenth_says_so(capsys):
    count = TruncationCount("label", 64)
    for i in range(10):
        count.add(str(i), truncated=i < 5, dropped=i < 2)
    count.report()
    out = capsys.readouterr().out
    assert "10 rows, 3 truncated" in out and "2 dropped" in out and "dropped ids: 0, 1" in out
    assert "WARNING: label lost 20% of its rows" in out


def test_percentiles_and_auto_by_value():
    values = list(range(1, 101))  # 1..100: nearest rank p50 = 50, p90 = 90, p95 = 95, p99 = 99
    assert percentiles(values) == {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "max": 100}
    assert auto_max_length(values, model_limit=512) == 95
    assert auto_max_length(values, model_limit=64) == 64  # bounded by the model


def test_real_tokenizers_never_lose_the_response(tiny_lm, tiny_rm):
    """Causal and reward renderings: a long multi-turn prompt is cut to fit; the response text survives whole."""
    _, causal_tok = tiny_lm
    _, reward_tok = tiny_rm
    prompt = []
    for i in range(12):
        prompt += [user(f"turn {i}: the weather was lovely and we walked by the river for an hour"),
                   assistant("That sounds like a very pleasant afternoon by the water.")]  # fmt: skip
    prompt.append(user("So how do I get into the car without the key?"))
    response = [assistant("Try every door and the boot first.")]
    for tok, length_of in ((causal_tok, causal_length(causal_tok)), (reward_tok, reward_length(reward_tok))):
        full = length_of(prompt + response)
        fitted, cut = fit_prompt(length_of, LeftCutter(tok), prompt, [response], full // 3)
        assert cut and length_of(fitted + response) <= full // 3
        assert fitted[-1] == prompt[-1]  # the request itself survives; older turns went
        # cut further: the request loses its start, never the response
        fitted, _ = fit_prompt(length_of, LeftCutter(tok), prompt, [response], length_of(response) + 8)
        assert fitted is not None and length_of(fitted + response) <= length_of(response) + 8
        assert prompt[-1]["content"].endswith(fitted[-1]["content"].strip()[-10:])


def test_scoring_cuts_the_prompt_not_the_response(tiny_rm, tiny_lm):
    from w2s_trl.scoring import response_logprobs, reward_scores

    model, tok = tiny_rm
    long_prompt = [user("background " * 300 + "final question?")]
    short_prompt = [user("final question?")]
    good, bad = [assistant("Yes, that is fine.")], [assistant("No, please do not.")]
    # a right-truncating scorer would see the same first 64 tokens for both responses: a tie
    count = TruncationCount("score", 64)
    a, b = reward_scores(model, tok, [long_prompt, long_prompt], [good, bad], max_length=64, count=count)
    assert a != b and count.truncated == 2
    # the response too long for the budget: None, counted
    (c,) = reward_scores(model, tok, [short_prompt], [[assistant("word " * 100)]], max_length=32, count=count)
    assert c is None and count.dropped == 1
    lm, ltok = tiny_lm
    sums, counts = response_logprobs(lm, ltok, [long_prompt, short_prompt], [good, good], max_length=64)
    assert counts[0] == counts[1]  # every response token is scored even when the prompt is cut
    assert sums[0] != pytest.approx(sums[1])  # ... in a context that still holds the end of the long prompt


def test_both_sides_of_a_pair_are_scored_with_one_cut_prompt(tiny_rm, tiny_lm):
    """A short and a long response: cut alone, the short side would keep more history than the long side, and the
    pair's margin would compare contexts. With partners both sides get the prompt that fits the longer one."""
    from w2s_trl.scoring import response_logprobs, reward_scores

    prompt = []
    for i in range(6):
        prompt += [user(f"turn {i}: we talked about the garden and the weather for a while"), assistant("Lovely.")]
    prompt.append(user("Which one should I pick?"))
    short, long = [assistant("The red one.")], [assistant("The blue one, " + "because it lasts longer " * 6)]
    for (model, tok), length_of, score in (
        (tiny_rm, reward_length(tiny_rm[1]), lambda *a, **k: reward_scores(*a, **k)),
        (tiny_lm, causal_length(tiny_lm[1]), lambda *a, **k: response_logprobs(*a, **k)[0]),
    ):
        budget = length_of(prompt + long) - 20
        alone, _ = fit_prompt(length_of, LeftCutter(tok), prompt, [short], budget)
        paired, _ = fit_prompt(length_of, LeftCutter(tok), prompt, [short, long], budget)
        assert len(alone) > len(paired)  # the setting bites: cut alone, the short side keeps more turns
        got = score(model, tok, [prompt, prompt], [short, long], max_length=budget, partners=[long, short])
        want = score(model, tok, [paired, paired], [short, long], max_length=budget)
        assert got == pytest.approx(want)
        unpaired = score(model, tok, [prompt, prompt], [short, long], max_length=budget)
        assert unpaired[0] != pytest.approx(want[0]) and unpaired[1] == pytest.approx(want[1])
