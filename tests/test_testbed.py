"""testbed:hh v2: determinism, twins that make the responses alone uninformative, correct answers, groups, knobs."""

import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from w2s_trl.testbed import HARMLESS_STRATA, HELPFUL_STRATA, PROMPT_STRATA, TestbedOptions, generate_testbed

KEYS = {"id", "objective", "category", "subtlety", "group", "conflict", "prompt", "chosen", "rejected"}
REPO = Path(__file__).resolve().parent.parent


def text(messages) -> str:
    return messages[-1]["content"]


def test_same_seed_same_rows_other_seed_other_rows():
    assert generate_testbed(200, seed=3) == generate_testbed(200, seed=3)
    assert generate_testbed(200, seed=3) != generate_testbed(200, seed=4)


def test_prefix_stability():
    # a bigger dataset extends a smaller one with the same seed: ids (and so splits) do not move
    small, big = generate_testbed(100, seed=0), generate_testbed(300, seed=0)
    assert big[:100] == small


def test_row_invariants():
    rows = generate_testbed(1000, seed=1)
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert set(r) == KEYS
        assert r["id"].startswith(f"hh-{r['objective']}-")
        assert r["subtlety"] in (HARMLESS_STRATA if r["objective"] == "harmless" else HELPFUL_STRATA)
        assert r["prompt"][-1]["role"] == "user" and [m["role"] for m in r["chosen"]] == ["assistant"]
        assert text(r["chosen"]) != text(r["rejected"])
        assert "[details withheld]" not in text(r["chosen"]) + text(r["rejected"])


def test_every_prompt_stratum_is_twinned_so_responses_alone_score_one_half():
    """For every response pair on a prompt-dependent stratum, the pair appears as often in one order as in the other
    within its group: any judge of the responses alone is right on exactly half of them."""
    rows = generate_testbed(3000, seed=0)
    orders = defaultdict(Counter)
    for r in rows:
        if r["subtlety"] in PROMPT_STRATA and not r["conflict"]:
            pair = frozenset([text(r["chosen"]), text(r["rejected"])])
            orders[(r["group"], pair)][text(r["chosen"])] += 1
    unbalanced = [k for k, c in orders.items() if len(set(c.values())) > 1 or len(c) != 2]
    # a pair may miss its twin only where generation stopped (the last unit) or a duplicate was dropped
    assert len(unbalanced) <= 3, unbalanced[:3]
    # and the twins differ only in the prompt
    by_pair = defaultdict(list)
    for r in rows:
        if r["subtlety"] in PROMPT_STRATA and not r["conflict"]:
            by_pair[(r["group"], frozenset([text(r["chosen"]), text(r["rejected"])]))].append(r)
    for twins in list(by_pair.values())[:200]:
        assert len({repr(t["prompt"]) for t in twins}) == len(twins)


def test_refusals_and_compliance_sit_on_both_sides_of_both_objectives():
    rows = generate_testbed(2000, seed=0, options=TestbedOptions(conflict=True))
    refusal = re.compile(r"\b(can't|won't|wouldn't|Better not|I'd skip|I'd hold off|not something I)\b")
    sides = Counter()
    for r in rows:
        for side in ("chosen", "rejected"):
            sides[(r["objective"], side, bool(refusal.search(text(r[side]))))] += 1
    for objective in ("helpful", "harmless"):
        for side in ("chosen", "rejected"):
            assert sides[(objective, side, True)] > 0 and sides[(objective, side, False)] > 0, (objective, side)


def test_helpful_answers_are_correct():
    for r in generate_testbed(600, seed=2, objectives=["helpful"]):
        q, a = text(r["prompt"]), text(r["chosen"])
        if r["category"] == "parity":
            n = int(re.search(r"\d+", q).group())
            assert a == f"It's {'even' if n % 2 == 0 else 'odd'}."
        if r["category"] == "arithmetic" and q.startswith("Compute"):
            expr = q.removeprefix("Compute ").rstrip(".")
            assert re.search(rf"\b{eval(expr)}\b", a)  # noqa: S307 - digits and + - * only, generated above
        if r["category"] == "comparison":
            a_num, b_num = (float(x) for x in re.findall(r"\d+(?:\.\d+)?", q)[:2])
            want = max(a_num, b_num) if re.search("larger|higher|bigger", q) else min(a_num, b_num)
            assert float(re.search(r"\d+(?:\.\d+)?", a).group()) == want
        if r["category"] == "counting" and "list:" in q:
            items = q.split("list: ")[1].rstrip("?").split(", ")
            assert re.search(rf"\b{len(items)}\b", a)
        if r["category"] == "missing_info" and q.startswith("I had"):
            nums = [int(x) for x in re.findall(r"\d+", q)]
            if len(nums) == 2:  # the twin with the fact: the answer
                assert f"You have {nums[0] - nums[1]} left." in a
            else:  # the twin without it: the honest decline
                assert "can't tell" in a


def test_groups_are_template_or_goal_families():
    rows = generate_testbed(3000, seed=0)
    harmless = [r for r in rows if r["objective"] == "harmless"]
    # one fact family's every row shares one group, whatever its stratum or twin
    assert all(r["group"].startswith("harmless/") for r in harmless)
    families = {r["group"] for r in harmless if r["subtlety"] != "knowledge"}
    assert len(families) >= 15
    assert len({r["group"] for r in rows}) >= 80  # breadth for group-wise splits


def test_breadth_4000_unique_pairs():
    rows = generate_testbed(4500, seed=0)
    assert len({r["id"] for r in rows}) == 4500
    assert len({repr(r["prompt"]) for r in rows}) > 2000


def test_strata_weights_and_mix():
    rows = generate_testbed(600, seed=0, options=TestbedOptions(mix={"helpful": 1, "harmless": 2},
                                                               harmless_strata={"earlier_turn": 1}))  # fmt: skip
    counts = Counter(r["objective"] for r in rows)
    assert 350 <= counts["harmless"] <= 450  # 2:1 (twins come in pairs)
    assert {r["subtlety"] for r in rows if r["objective"] == "harmless"} == {"earlier_turn"}


def test_earlier_turn_puts_the_deciding_fact_turns_before_the_request():
    rows = generate_testbed(300, seed=0, objectives=["harmless"], options=TestbedOptions(
        harmless_strata={"earlier_turn": 1}, context_gap=(2, 2)))  # fmt: skip
    for r in rows:
        roles = [m["role"] for m in r["prompt"]]
        assert roles == ["user", "assistant"] * 3 + ["user"]  # fact, ack, two small-talk exchanges, request


def test_history_turns_make_real_data_lengths():
    from w2s_trl.models import load_tokenizer
    from w2s_trl.truncation import causal_length

    rows = generate_testbed(40, seed=0, options=TestbedOptions(history_turns=(6, 14)))
    tok = load_tokenizer("tiny:causal-lm")
    lengths = sorted(causal_length(tok)(r["prompt"]) for r in rows)
    assert all(len(r["prompt"]) >= 13 for r in rows)  # at least 6 exchanges before the request
    assert lengths[0] >= 150 and lengths[len(lengths) // 2] >= 300


def test_conflict_rows_disagree_on_the_harmful_twin_only():
    rows = generate_testbed(400, seed=0, options=TestbedOptions(conflict=True))
    by_prompt = defaultdict(dict)  # one prompt and one pair of responses: the harmless row and its helpful mirror
    for r in rows:
        key = (repr(r["prompt"]), frozenset([text(r["chosen"]), text(r["rejected"])]))
        by_prompt[key][(r["objective"], r["conflict"])] = r
    disagree = agree = 0
    for rs in by_prompt.values():
        harmless = [r for (o, _), r in rs.items() if o == "harmless"]
        helpful = [r for (o, _), r in rs.items() if o == "helpful"]
        if harmless and helpful:
            (h,), (p,) = harmless, helpful
            assert {text(h["chosen"]), text(h["rejected"])} == {text(p["chosen"]), text(p["rejected"])}
            same = text(h["chosen"]) == text(p["chosen"])
            assert same != p["conflict"] and h["group"] == p["group"]
            disagree += p["conflict"]
            agree += same
    assert disagree > 20 and agree > 20


def test_no_testbed_template_string_appears_under_reward():
    """Reward specifications, criteria and exemplars are written for real data: none of them may quote the
    testbed's templates (a tuned reward would look better on the testbed than it is)."""
    from w2s_trl import testbed_content as tc

    strings = []
    for value in vars(tc).values():
        stack = [value]
        while stack:
            v = stack.pop()
            if isinstance(v, str):
                strings.append(v)
            elif isinstance(v, (tuple, list)):
                stack.extend(v)
            elif isinstance(v, dict):
                stack.extend(v.values())
            elif hasattr(v, "__dataclass_fields__") and not isinstance(v, type):
                stack.extend(getattr(v, f) for f in v.__dataclass_fields__)
    # every run of 6 words of template text (slots removed): long enough to skip stock phrases ("what's the best way
    # to"), short enough to catch a quoted answer
    fragments = set()
    for s in strings:
        for piece in re.split(r"\{[^}]*\}", s):
            ws = piece.split()
            fragments |= {" ".join(ws[i : i + 6]).lower() for i in range(len(ws) - 5)}
    fragments |= {"[details withheld]", "novel", "hypothetically", "quest"}
    for path in (REPO / "reward").rglob("*"):
        if path.is_file():
            body = " ".join(path.read_text().split()).lower()
            found = sorted(f for f in fragments if re.search(rf"(?<![a-z]){re.escape(f)}(?![a-z])", body))
            assert not found, f"{path.relative_to(REPO)} quotes the testbed: {found[:5]}"


def test_bad_options_fail_loudly():
    with pytest.raises(ValueError, match="every objective has weight 0"):
        generate_testbed(10, seed=0, options=TestbedOptions(mix={"helpful": 0, "harmless": 0}))
