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
    assert "agree with ground truth on 0.500 of 2" in line and "1 ties left out (e.g. r1)" in line


def test_weak_labels_length_mismatch():
    with pytest.raises(ValueError, match="same length"):
        weak_label_rows([_row(0)], [1.0, 2.0], [0.0])
