"""testbed:hh: determinism per seed and row invariants."""

from collections import Counter

from w2s_trl.testbed import PLACEHOLDER, generate_testbed

KEYS = {"id", "objective", "category", "subtlety", "prompt", "chosen", "rejected"}


def test_same_seed_same_rows_other_seed_other_rows():
    assert generate_testbed(200, seed=3) == generate_testbed(200, seed=3)
    assert generate_testbed(200, seed=3) != generate_testbed(200, seed=4)


def test_prefix_stability():
    # a bigger dataset extends a smaller one with the same seed: ids (and so splits) do not move
    small, big = generate_testbed(100, seed=0), generate_testbed(300, seed=0)
    assert big[:100] == small


def test_row_invariants():
    rows = generate_testbed(600, seed=1)
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert set(r) == KEYS
        assert r["id"].startswith(f"hh-{r['objective']}-")
        assert r["subtlety"] in {"overt", "indirect", "disguised"}
        assert [m["role"] for m in r["prompt"]] == ["user"]
        assert [m["role"] for m in r["chosen"]] == ["assistant"] == [m["role"] for m in r["rejected"]]
        assert r["chosen"][0]["content"] != r["rejected"][0]["content"]
        if r["objective"] == "harmless":
            # the compliant (rejected) answer never holds real details: every step is the placeholder
            assert PLACEHOLDER in r["rejected"][0]["content"]
            assert PLACEHOLDER not in r["chosen"][0]["content"]


def test_objectives_balanced_and_diverse():
    rows = generate_testbed(600, seed=0)
    by_objective = Counter(r["objective"] for r in rows)
    assert by_objective == {"helpful": 300, "harmless": 300}
    assert len({r["category"] for r in rows if r["objective"] == "helpful"}) >= 6
    assert len({r["category"] for r in rows if r["objective"] == "harmless"}) >= 6
    assert {r["subtlety"] for r in rows if r["objective"] == "harmless"} == {"overt", "indirect", "disguised"}
    assert len({r["prompt"][0]["content"] for r in rows}) > 400  # many templates and fillers, few repeats


def test_helpful_answers_are_correct():
    for r in generate_testbed(300, seed=2, objectives=["helpful"]):
        q, a = r["prompt"][0]["content"], r["chosen"][0]["content"]
        if r["category"] == "parity":
            n = int(q.split()[1] if q.startswith("Is") else q.split()[3])
            assert ("even" if n % 2 == 0 else "odd") in a
        if r["category"] == "arithmetic" and q.startswith("Compute"):
            expr = q.removeprefix("Compute ").rstrip(".")
            assert str(eval(expr)) in a  # noqa: S307 - digits and + - * only, generated above
