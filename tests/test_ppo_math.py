"""PPO's pure functions by value on fixed tensors (SCIENCE.md 5), each expected number worked out by hand here."""

import math

import pytest
import torch

from w2s_trl.training.losses import LOSSES
from w2s_trl.training.ppo_math import (
    approx_kl,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    kl_penalized_rewards,
    whiten,
)


def test_registered_by_name():
    assert {"ppo_policy", "ppo_value"} <= set(LOSSES)


def test_kl_penalized_rewards():
    """kl_coef 0.1. Row 0: logp - ref = [0.5, 0, -1] -> [-0.05, 0, 0.1], R = 2 on the last token -> 2.1.
    Row 1 (2 response tokens): [1, 0] -> [-0.1, 0], R = -1 on token 1; padding stays 0."""
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0], [-2.0, -1.0, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    r = kl_penalized_rewards(torch.tensor([2.0, -1.0]), logp, ref, mask, 0.1)
    assert torch.allclose(r, torch.tensor([[-0.05, 0.0, 2.1], [-0.1, -1.0, 0.0]]))
    with pytest.raises(ValueError, match="no response token"):
        kl_penalized_rewards(torch.tensor([1.0]), logp[:1], ref[:1], torch.zeros(1, 3), 0.1)


def test_gae_against_the_backward_recursion():
    """gamma 0.9, lambda 0.8 (gamma * lambda = 0.72).
    Row 0: r = [1, 0, 2], V = [0.5, 1, 1.5]: delta_2 = 2 - 1.5 = 0.5 = A_2; delta_1 = 0.9 * 1.5 - 1 = 0.35,
    A_1 = 0.35 + 0.72 * 0.5 = 0.71; delta_0 = 1 + 0.9 * 1 - 0.5 = 1.4, A_0 = 1.4 + 0.72 * 0.71 = 1.9112.
    Row 1, 2 response tokens (the padded 99s ignored): A_1 = 2 - 1 = 1; A_0 = 1.4 + 0.72 = 2.12."""
    rewards = torch.tensor([[1.0, 0.0, 2.0], [1.0, 2.0, 99.0]])
    values = torch.tensor([[0.5, 1.0, 1.5], [0.5, 1.0, 99.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    assert torch.allclose(adv, torch.tensor([[1.9112, 0.71, 0.5], [2.12, 1.0, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[2.4112, 1.71, 2.0], [2.62, 2.0, 0.0]]))


def test_whiten_over_masked_tokens():
    """[1, 2, 3] (100 is padding): mean 2, population variance 2/3 -> [-1.2247, 0, 1.2247]."""
    out = whiten(torch.tensor([[1.0, 2.0], [3.0, 100.0]]), torch.tensor([[1, 1], [1, 0]]))
    s = math.sqrt(2 / 3)
    assert torch.allclose(out, torch.tensor([[-1 / s, 0.0], [1 / s, 0.0]]), atol=1e-5)


def test_clipped_policy_loss_both_branches():
    """eps 0.2. ratio 1.5, A = 1: max(-1.5, -1.2) = -1.2 (clipped); ratio 0.5, A = 1: max(-0.5, -0.8) = -0.5;
    ratio 1.1, A = -1: 1.1 both; ratio 0.7, A = -1: max(0.7, 0.8) = 0.8 (clipped). Mean 0.2 / 4 = 0.05, clip
    fraction 2/4. Gradient only through the unclipped tokens: d/dlogp = -A * ratio / 4."""
    ratio = torch.tensor([[1.5, 0.5, 1.1, 0.7]])
    logp_new = ratio.log().clone().requires_grad_(True)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    loss, clipfrac = clipped_policy_loss(logp_new, torch.zeros(1, 4), adv, torch.ones(1, 4), eps=0.2)
    assert loss.item() == pytest.approx(0.05) and clipfrac.item() == pytest.approx(0.5)
    loss.backward()
    assert torch.allclose(logp_new.grad, torch.tensor([[0.0, -0.5 / 4, 1.1 / 4, 0.0]]))


def test_clipped_value_loss_both_branches():
    """eps_v 0.5. V_new 1, V_old 2, ret 0: (1 - 0)^2 = 1 vs clip -> 1.5, 2.25: 2.25 (clipped). V_new 3, V_old 2,
    ret 2.5: 0.25 vs clip -> 2.5, 0: 0.25. Loss 0.5 * (2.25 + 0.25) / 2 = 0.625; the padded token is ignored."""
    loss, clipfrac = clipped_value_loss(torch.tensor([[1.0, 3.0, 50.0]]), torch.tensor([[2.0, 2.0, 0.0]]),
                                        torch.tensor([[0.0, 2.5, 0.0]]), torch.tensor([[1, 1, 0]]), eps_v=0.5)
    assert loss.item() == pytest.approx(0.625) and clipfrac.item() == pytest.approx(0.5)


def test_approx_kl_sums_tokens_and_averages_completions():
    """Row sums of logp - ref over response tokens: 0.5 + 0 - 1 = -0.5 and 1 + 0 = 1; mean 0.25."""
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-1.5, -2.0, -2.0], [-2.0, -1.0, 5.0]])
    assert approx_kl(logp, ref, torch.tensor([[1, 1, 1], [1, 1, 0]])).item() == pytest.approx(0.25)
