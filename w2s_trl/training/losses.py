"""Loss terms as pure functions of tensors (SCIENCE.md 1, 2), registered by name, tested by value in
tests/test_losses.py. Shapes: [B] = one value per preference pair of the batch.

Explicit conflict term (SCIENCE.md 2), weight alpha: m_i = 1[the student currently prefers y-_i over y+_i] in
GROUND-TRUTH order (the mask carries no gradient); added loss alpha * mean_i(m_i * l_i) over the WHOLE batch (pairs
with m_i = 0 count in the mean), l_i the task loss with the pair reversed. It pays the student for pushing further
into harm where it already leans that way.

Auxiliary confidence loss (SCIENCE.md 1, pairwise form): p = sigma(r_s(a) - r_s(b)); hardened target h = 1[p > t],
t = the (1 - mean(p_w)) quantile of p over the whole batch; L = (1 - alpha) BCE(p, p_w) + alpha BCE(p, h). It needs
batch statistics: the trainer that uses it refuses gradient accumulation (a micro-batch is not the batch).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

LOSSES: dict[str, Callable] = {}


def register_loss(name: str):
    def decorate(fn: Callable) -> Callable:
        if name in LOSSES:
            raise ValueError(f"loss '{name}' is registered twice")
        LOSSES[name] = fn
        return fn

    return decorate


def conflict_mask(gt_margin: torch.Tensor) -> torch.Tensor:
    """m_i = 1[gt_margin_i < 0]: the student's current margin, y+ minus y- in ground-truth order, is negative. [B]
    float, detached."""
    return (gt_margin.detach() < 0).float()


def gt_order(margin: torch.Tensor, gt_label: torch.Tensor) -> torch.Tensor:
    """A margin of the row's (chosen - rejected) in ground-truth order: as is where the row's chosen is the GT chosen
    (gt_label 1), negated where the weak labels swapped the pair (gt_label 0)."""
    return torch.where(gt_label.to(margin.device).bool(), margin, -margin)


@register_loss("rm_conflict")
def rm_conflict_term(delta_gt: torch.Tensor, alpha: float) -> torch.Tensor:
    """delta_gt = r(x, y+) - r(x, y-) [B]. Reversed BT loss: BCE(sigma(delta), 0) = -log(1 - sigma(delta)) =
    softplus(delta). Returns alpha * mean(m * softplus(delta_gt))."""
    return alpha * (conflict_mask(delta_gt) * F.softplus(delta_gt)).mean()


@register_loss("dpo_conflict")
def dpo_conflict_term(pi_pos: torch.Tensor, pi_neg: torch.Tensor, ref_pos: torch.Tensor, ref_neg: torch.Tensor,
                      beta: float, alpha: float) -> torch.Tensor:  # fmt: skip
    """Summed response log-probs [B] of y+ and y- (GT order) under the policy and the reference.
    h = (pi_pos - ref_pos) - (pi_neg - ref_neg); reversed DPO loss l = -log sigma(beta * (-h)).
    Returns alpha * mean(1[h < 0] * l)."""
    h = (pi_pos - ref_pos) - (pi_neg - ref_neg)
    return alpha * (conflict_mask(h) * -F.logsigmoid(-beta * h)).mean()


@register_loss("simpo_conflict")
def simpo_conflict_term(mean_pos: torch.Tensor, mean_neg: torch.Tensor, beta: float, gamma: float,
                        alpha: float) -> torch.Tensor:  # fmt: skip
    """Per-token mean response log-probs [B] of y+ and y- (GT order). h = mean_pos - mean_neg; reversed SimPO loss
    l = -log sigma(beta * (-h) - gamma). Returns alpha * mean(1[h < 0] * l)."""
    h = mean_pos - mean_neg
    return alpha * (conflict_mask(h) * -F.logsigmoid(-beta * h - gamma)).mean()


def confidence_threshold(p: torch.Tensor, p_w: torch.Tensor) -> torch.Tensor:
    """t = the (1 - mean(p_w)) quantile of p over the batch (so the share of h = 1 matches the weak labels' balance;
    linear interpolation between order statistics, torch.quantile's default). Detached."""
    q = (1 - p_w.detach().float().mean()).clamp(0.0, 1.0)
    return torch.quantile(p.detach().float(), q)


def confidence_alpha(step: int, total_steps: int, alpha_max: float, warmup_frac: float) -> float:
    """alpha rising linearly from 0 to alpha_max over the first warmup_frac of training, constant after."""
    warmup = warmup_frac * total_steps
    if warmup <= 0:
        return alpha_max
    return alpha_max * min(1.0, step / warmup)


@register_loss("confidence")
def confidence_loss(p: torch.Tensor, p_w: torch.Tensor, alpha: float,
                    threshold: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """p, p_w [B] probabilities (student, weak). Returns (loss, threshold t): (1 - alpha) BCE(p, p_w) + alpha BCE(p, h),
    h = 1[p > t] detached; the gradient flows through p only. t is `confidence_threshold(p, p_w)` of this batch unless
    given (a trainer on several processes passes the one of the whole batch, gathered)."""
    t = confidence_threshold(p, p_w) if threshold is None else threshold.detach()
    h = (p.detach() > t).float()
    p = p.clamp(1e-7, 1 - 1e-7)
    loss = (1 - alpha) * F.binary_cross_entropy(p, p_w.to(p.dtype)) + alpha * F.binary_cross_entropy(p, h.to(p.dtype))
    return loss, t
