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


# ---- paired bootstrap (SCIENCE.md 1) ----------------------------------------------------------------------------------

import numpy as np  # noqa: E402

from w2s_trl.metrics import (  # noqa: E402
    bootstrap_indices,
    cell_error_samples,
    interval,
    pair_score_summary,
    pgr_samples,
    resampled_mean,
)


def test_bootstrap_indices_are_fixed_by_the_seed_and_in_range():
    a, b = bootstrap_indices(5, 1000, seed=3), bootstrap_indices(5, 1000, seed=3)
    assert a.shape == (1000, 5) and (a == b).all()
    assert a.min() == 0 and a.max() == 4
    assert not (bootstrap_indices(5, 1000, seed=4) == a).all()


def test_resampled_mean_by_hand():
    values = [1.0, 0.0, 1.0, 1.0]
    idx = np.array([[0, 0, 1, 1], [2, 3, 2, 3], [1, 1, 1, 1]])
    # resample 0: values 1,1,0,0 -> 0.5; resample 1: 1,1,1,1 -> 1; resample 2: 0,0,0,0 -> 0
    assert resampled_mean(values, idx).tolist() == [0.5, 1.0, 0.0]
    # within a mask (examples 1 and 3): resample 0 holds example 1 twice -> 0/2 = 0; resample 1 holds 3 twice -> 1;
    # resample 2 holds example 1 four times -> 0
    mask = [False, True, False, True]
    assert resampled_mean(values, idx, mask).tolist() == [0.0, 1.0, 0.0]
    # a resample without any example of the mask is undefined (NaN), not 0
    out = resampled_mean(values, np.array([[0, 2, 0, 2]]), mask)
    assert np.isnan(out[0])


def test_interval_takes_the_percentiles_and_reports_dropped_resamples():
    samples = np.arange(1, 1001, dtype=float)  # 1..1000: 2.5th and 97.5th percentiles (linear) = 25.975, 975.025
    out = interval(0.5, samples)
    assert out["value"] == 0.5 and out["ci"] == pytest.approx([25.975, 975.025])
    assert "dropped_resamples" not in out
    with_nan = np.concatenate([samples, [np.nan] * 250])
    out = interval(0.5, with_nan)
    assert out["ci"] == pytest.approx([25.975, 975.025]) and out["dropped_resamples"] == 0.2  # 250 of 1250


def test_pgr_samples_drop_resamples_without_a_gap():
    student, weak, ceiling = np.array([0.7, 0.6, 0.8]), np.array([0.6, 0.6, 0.8]), np.array([0.8, 0.6, 0.7])
    out = pgr_samples(student, weak, ceiling)
    assert out[0] == pytest.approx(0.5)  # (0.7 - 0.6) / (0.8 - 0.6)
    assert np.isnan(out[1]) and np.isnan(out[2])  # ceiling == weak; ceiling < weak


def test_cell_error_moves_with_the_resampled_examples():
    correct = [True, False, False, True]
    cell = [True, True, False, False]
    idx = np.array([[0, 1, 2, 3], [1, 1, 2, 3], [2, 3, 2, 3]])
    # resample 0: cell holds 0 (right) and 1 (wrong) -> 1/2; resample 1: example 1 twice -> 1; resample 2: empty -> NaN
    out = cell_error_samples(correct, cell, idx)
    assert out[:2].tolist() == [0.5, 1.0] and np.isnan(out[2])


def test_macro_average_counts_each_section_once():
    # section a: 1 of 3 right; section b: 1 of 1 -> macro (1/3 + 1) / 2 = 2/3 (the overall accuracy would be 2/4)
    s = pair_score_summary([1, 0, 0, 1], [0, 1, 1, 0], ["a", "a", "a", "b"])
    assert s["sections"]["a"]["accuracy"] == pytest.approx(1 / 3)
    assert s["macro_accuracy"] == pytest.approx(2 / 3) and s["accuracy"] == 0.5
