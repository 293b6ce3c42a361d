"""Weak labels against hand-made rewards (SCIENCE.md 1)."""

import math

import pytest

from w2s_trl.label import weak_label_rows


def _row(i):
    return {
        "id": f"r{i}",
        "prompt": [{"role": "user", "content": f"q{i}"}],
        "chosen": [{"role": "assistant", "content": f"good{i}"}],
        "rejected": [{"role": "assistant", "content": f"bad{i}"}],
    }


def test_weak_labels_order_pw_and_correctness():
    rows = [_row(0), _row(1), _row(2), _row(3)]
    # delta = 2 - 0 = 2 (weak agrees); delta = 0 - 1 = -1 (weak flips); delta = 0 (tie); None (could not be scored)
    out, summary = weak_label_rows(rows, reward_gt_chosen=[2.0, 0.0, 0.5, None], reward_gt_rejected=[0.0, 1.0, 0.5, 1.0])
    agree, flip = out
    assert agree["chosen"][0]["content"] == "good0" and agree["weak_correct"] is True and agree["gt_label"] == 1
    assert agree["p_w"] == pytest.approx(1 / (1 + math.exp(-2)))  # sigma(2) = 0.8808
    assert agree["weak_margin"] == pytest.approx(2.0)
    # the flipped row puts the GT-rejected response in `chosen`
    assert flip["chosen"][0]["content"] == "bad1" and flip["rejected"][0]["content"] == "good1"
    assert flip["weak_correct"] is False and flip["gt_label"] == 0
    assert flip["p_w"] == pytest.approx(1 / (1 + math.exp(-1)))  # sigma(|-1|) = 0.7311
    assert rows[1]["chosen"][0]["content"] == "good1"  # inputs untouched
    # the tie carries no weak signal: left out of the student's rows (never ordered by GT or a fixed flip), counted
    assert [r["id"] for r in out] == ["r0", "r1"]
    assert summary["weak_ties"] == 1 and summary["tie_examples"] == ["r2"]
    assert summary["unscored"] == 1 and summary["unscored_examples"] == ["r3"]
    # accuracy as on test (a tie counts as wrong): 1 of 3 scored; among the labelled rows: 1 of 2
    assert summary["weak_label_accuracy"] == pytest.approx(1 / 3)
    assert summary["weak_label_accuracy_labelled"] == pytest.approx(1 / 2)
    assert summary["labelled"] == 2 and summary["rows"] == 4


def test_describe_prints_accuracy_and_ties():
    from w2s_trl.label import describe

    _, summary = weak_label_rows([_row(0), _row(1)], [1.0, 0.5], [0.0, 0.5])
    line = describe(summary)
    assert "agree with ground truth on 0.500 [0.000, 1.000] of 2" in line and "1 ties left out (e.g. r1)" in line


def test_weak_label_accuracy_carries_a_bootstrap_interval():
    """Over the scored pairs (a tie counts as wrong): no spread when every pair agrees or none does; a mixed set's
    interval holds its accuracy, is printed, and narrows with more pairs."""
    from w2s_trl.label import describe

    def summary(n, agree):
        rows = [_row(i) for i in range(n)]
        return weak_label_rows(rows, [1.0 if i < agree else 0.0 for i in range(n)], [0.5] * n)[1]

    assert summary(4, 4)["weak_label_accuracy_ci"] == [1.0, 1.0]
    assert summary(4, 0)["weak_label_accuracy_ci"] == [0.0, 0.0]
    small, large = summary(20, 10), summary(400, 200)
    for s in (small, large):
        lo, hi = s["weak_label_accuracy_ci"]
        assert lo < 0.5 < hi
    assert large["weak_label_accuracy_ci"][1] - large["weak_label_accuracy_ci"][0] < 0.15 < (
        small["weak_label_accuracy_ci"][1] - small["weak_label_accuracy_ci"][0])
    lo, hi = small["weak_label_accuracy_ci"]
    assert f"on 0.500 [{lo:.3f}, {hi:.3f}] of 20" in describe(small)
    _, tie = weak_label_rows([_row(0), _row(1)], [1.0, 0.5], [0.0, 0.5])
    assert tie["weak_label_accuracy"] == 0.5 and tie["weak_label_accuracy_ci"] == [0.0, 1.0]  # the tie is wrong


def test_weak_labels_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        weak_label_rows([_row(0)], [1.0, 2.0], [0.0])
