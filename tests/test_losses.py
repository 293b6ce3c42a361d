"""Loss terms by value on fixed tensors, each expected number worked out by hand in the test."""

import math

import pytest
import torch

from w2s_trl.training.losses import (
    LOSSES,
    confidence_alpha,
    confidence_loss,
    confidence_threshold,
    conflict_mask,
    dpo_conflict_term,
    gt_order,
    rm_conflict_term,
    simpo_conflict_term,
)


def softplus(x):
    return math.log1p(math.exp(x))


def test_every_term_is_registered_by_name():
    assert {"rm_conflict", "dpo_conflict", "simpo_conflict", "confidence"} <= set(LOSSES)


def test_mask_and_ground_truth_order():
    margin = torch.tensor([1.0, -2.0, 0.5, -0.5])
    gt_label = torch.tensor([1, 1, 0, 0])  # rows 3 and 4 were swapped by the weak labels
    assert gt_order(margin, gt_label).tolist() == [1.0, -2.0, -0.5, 0.5]
    assert conflict_mask(gt_order(margin, gt_label)).tolist() == [0.0, 1.0, 1.0, 0.0]
    x = torch.tensor([-1.0], requires_grad=True)
    assert not conflict_mask(x).requires_grad  # the mask carries no gradient


def test_rm_conflict_term_by_value():
    """delta_gt = [2, -1, -3, 0]: m = [0, 1, 1, 0] (0 is not a preference for y-).
    term = alpha * (softplus(-1) + softplus(-3)) / 4 (mean over the whole batch of 4)."""
    delta = torch.tensor([2.0, -1.0, -3.0, 0.0])
    expected = 0.5 * (softplus(-1) + softplus(-3)) / 4
    assert rm_conflict_term(delta, 0.5).item() == pytest.approx(expected, rel=1e-6)
    assert rm_conflict_term(torch.tensor([1.0, 2.0]), 3.0).item() == 0.0  # the student never leans the wrong way


def test_rm_conflict_gradient_pushes_further_into_harm():
    """d/d delta of softplus(delta) = sigma(delta) > 0: descending the loss lowers delta, i.e. it pays the student to
    prefer y- even more where it already does."""
    delta = torch.tensor([-1.0, 1.0], requires_grad=True)
    rm_conflict_term(delta, 1.0).backward()
    assert delta.grad[0].item() == pytest.approx(1 / (1 + math.e) / 2, rel=1e-6)  # sigma(-1) / 2
    assert delta.grad[1].item() == 0.0


def test_dpo_conflict_term_by_value():
    """h = (pi+ - ref+) - (pi- - ref-): row 1: (-10 + 11) - (-12 + 12) = 1 (m 0); row 2: (-15 + 13) - (-9 + 10) = -3
    (m 1). l_2 = -log sigma(beta * 3) = softplus(-0.3) with beta 0.1. term = alpha * l_2 / 2."""
    pi_pos, pi_neg = torch.tensor([-10.0, -15.0]), torch.tensor([-12.0, -9.0])
    ref_pos, ref_neg = torch.tensor([-11.0, -13.0]), torch.tensor([-12.0, -10.0])
    term = dpo_conflict_term(pi_pos, pi_neg, ref_pos, ref_neg, beta=0.1, alpha=2.0)
    assert term.item() == pytest.approx(2.0 * softplus(-0.3) / 2, rel=1e-6)


def test_simpo_conflict_term_by_value():
    """h = mean+ - mean-: [-0.5, 0.2] -> m = [1, 0]. l_1 = -log sigma(beta * 0.5 - gamma) = softplus(-(2 * 0.5 - 0.3))
    = softplus(-0.7) with beta 2, gamma 0.3. term = alpha * l_1 / 2."""
    term = simpo_conflict_term(torch.tensor([-1.5, -1.0]), torch.tensor([-1.0, -1.2]), beta=2.0, gamma=0.3, alpha=1.0)
    assert term.item() == pytest.approx(softplus(-0.7) / 2, rel=1e-6)


def test_confidence_threshold_is_the_weak_balance_quantile():
    """p = [0.1, 0.4, 0.6, 0.9], mean(p_w) = 0.75 -> the 0.25 quantile of p: linear interpolation at position
    0.25 * 3 = 0.75 between 0.1 and 0.4 -> 0.1 + 0.75 * 0.3 = 0.325. h = 1[p > 0.325] = [0, 1, 1, 1]: 3 of 4, as the
    weak labels' balance says."""
    p = torch.tensor([0.1, 0.4, 0.6, 0.9])
    p_w = torch.tensor([0.75, 0.75, 0.75, 0.75])
    assert confidence_threshold(p, p_w).item() == pytest.approx(0.325, rel=1e-6)


def test_confidence_loss_by_value_and_gradient_through_p_only():
    """alpha 0.5: L = 0.5 BCE(p, p_w) + 0.5 BCE(p, h), h = [0, 1, 1, 1] (threshold 0.325 above)."""
    p = torch.tensor([0.1, 0.4, 0.6, 0.9], requires_grad=True)
    p_w = torch.tensor([0.75, 0.75, 0.75, 0.75])
    loss, t = confidence_loss(p, p_w, 0.5)

    def bce(x, y):
        return -(y * math.log(x) + (1 - y) * math.log(1 - x))

    xs = [0.1, 0.4, 0.6, 0.9]
    soft = sum(bce(x, 0.75) for x in xs) / 4
    hard = sum(bce(x, h) for x, h in zip(xs, [0, 1, 1, 1])) / 4
    assert loss.item() == pytest.approx(0.5 * soft + 0.5 * hard, rel=1e-5)
    assert t.item() == pytest.approx(0.325, rel=1e-6)
    loss.backward()  # the target h is detached: the gradient is d/dp of the two BCEs with h held fixed
    x, y_soft, y_hard = 0.4, 0.75, 1.0
    expected = (0.5 * (x - y_soft) + 0.5 * (x - y_hard)) / (x * (1 - x)) / 4
    assert p.grad[1].item() == pytest.approx(expected, rel=1e-5)


def test_confidence_alpha_warm_up():
    # alpha_max 0.8 over the first 25% of 100 steps: 0 at step 0, 0.4 at 12.5 steps, 0.8 from step 25 on
    assert confidence_alpha(0, 100, 0.8, 0.25) == 0.0
    assert confidence_alpha(10, 100, 0.8, 0.25) == pytest.approx(0.32)
    assert confidence_alpha(25, 100, 0.8, 0.25) == pytest.approx(0.8)
    assert confidence_alpha(90, 100, 0.8, 0.25) == pytest.approx(0.8)
    assert confidence_alpha(0, 100, 0.8, 0.0) == 0.8  # no warm-up


def test_confidence_loss_takes_a_given_threshold():
    """A trainer on several processes passes the threshold of the whole (gathered) batch: t = 0.5 gives h = [0, 0, 1, 1]
    for p = [0.1, 0.4, 0.6, 0.9]; with alpha 1 the loss is BCE(p, h) alone = mean(-log 0.9, -log 0.6, -log 0.6,
    -log 0.9)."""
    p, p_w = torch.tensor([0.1, 0.4, 0.6, 0.9]), torch.full((4,), 0.75)
    loss, t = confidence_loss(p, p_w, 1.0, threshold=torch.tensor(0.5))
    assert t.item() == 0.5
    assert loss.item() == pytest.approx(-(2 * math.log(0.9) + 2 * math.log(0.6)) / 4, rel=1e-6)
