"""Metric maths by value against hand-computed numbers (SCIENCE.md 1, 2, 6)."""

import math

import pytest

from w2s_trl.metrics import knowledge_regions, pair_accuracy, pgr, sigmoid


def test_pair_accuracy_counts_ties_as_wrong():
    # margins: 2 right (0.5, 3), 1 tie (0), 1 wrong (-1) -> 2/4
    assert pair_accuracy([0.5, 0.0, -1.0, 3.0]) == 0.5


def test_pair_accuracy_empty_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        pair_accuracy([])


def test_pgr_by_value():
    # (0.70 - 0.60) / (0.80 - 0.60) = 0.5
    value, note = pgr(acc_student=0.70, acc_weak=0.60, acc_ceiling=0.80)
    assert value == pytest.approx(0.5) and note is None
    # a student below the weak model gives a negative PGR: (0.5 - 0.6) / 0.2 = -0.5
    assert pgr(0.5, 0.6, 0.8)[0] == pytest.approx(-0.5)


@pytest.mark.parametrize("ceiling", [0.6, 0.55])
def test_pgr_undefined_when_ceiling_does_not_beat_weak(ceiling):
    value, note = pgr(acc_student=0.7, acc_weak=0.6, acc_ceiling=ceiling)
    assert value is None and "undefined" in note


def test_pgr_without_ceiling():
    value, note = pgr(0.7, 0.6, None)
    assert value is None and "ceiling" in note


def test_sigmoid_values():
    assert sigmoid(0.0) == 0.5
    assert sigmoid(math.log(3)) == pytest.approx(0.75)  # 3 / (1 + 3)
    assert sigmoid(-800.0) == pytest.approx(0.0)  # no overflow


def test_knowledge_regions_by_hand():
    # 6 examples.            idx: 0  1  2  3  4  5
    weak_ok = [1, 1, 0, 0, 0, 1]  # K_w = {0,1,5}
    ref_ok = [1, 0, 1, 1, 0, 1]  # K_s = {0,2,3,5}
    student_ok = [1, 1, 0, 1, 0, 0]
    cells = knowledge_regions(weak_ok, ref_ok, {"student": student_ok, "weak": weak_ok})
    # K_w&K_s = {0,5}: student wrong on 5 -> 1/2; K_w&U_s = {1}: right -> 0
    # U_w&K_s = {2,3}: student wrong on 2 -> 1/2; U_w&U_s = {4}: wrong -> 1
    assert {c: v["n"] for c, v in cells.items()} == {"K_w&K_s": 2, "K_w&U_s": 1, "U_w&K_s": 2, "U_w&U_s": 1}
    assert cells["K_w&K_s"]["error"]["student"] == 0.5
    assert cells["K_w&U_s"]["error"]["student"] == 0.0
    assert cells["U_w&K_s"]["error"]["student"] == 0.5
    assert cells["U_w&U_s"]["error"]["student"] == 1.0
    assert cells["U_w&K_s"]["error"]["weak"] == 1.0 and cells["K_w&K_s"]["error"]["weak"] == 0.0
    assert all(c["small"] for c in cells.values())


def test_empty_cell_reports_none():
    cells = knowledge_regions([1, 1], [1, 1], {"s": [1, 0]})
    assert cells["U_w&U_s"] == {"n": 0, "small": True, "error": {"s": None}}
    assert cells["K_w&K_s"]["error"]["s"] == 0.5
