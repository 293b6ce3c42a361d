"""PPO's maths as pure functions of tensors (SCIENCE.md 5), tested by value in tests/test_ppo_math.py.

Shapes: [B, T] = one value per response token of each sampled completion, `mask` [B, T] 1 on response tokens and 0 on
padding (responses are left-aligned: token t of a row is real iff t < its length). All means are over masked tokens.

Per sampled completion y of prompt x: sequence reward R = r(x, y) from the reward source(s); per-token reward
r_t = -kl_coef * (logp_pi(y_t) - logp_ref(y_t)), plus R on the last response token. Advantages by GAE(gamma, lambda)
over response tokens (V after the last token is 0), whitened per batch; returns = advantages + V_t (before
whitening). Policy loss: mean of max(-A_t * ratio_t, -A_t * clip(ratio_t, 1 - eps, 1 + eps)), ratio_t =
exp(logp_new - logp_old). Value loss: 0.5 * mean of max((V_new - ret)^2, (clip(V_new, V_old - eps_v, V_old + eps_v)
- ret)^2).
"""

from __future__ import annotations

import torch

from w2s_trl.training.losses import register_loss


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The population variance of the masked values (divide by their count)."""
    mean = masked_mean(x, mask)
    return masked_mean((x - mean) ** 2, mask)


def whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over the masked values; 0 on padding."""
    out = (x - masked_mean(x, mask)) * torch.rsqrt(masked_var(x, mask) + eps)
    return out * mask.to(x.dtype)


def kl_penalized_rewards(score: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                         kl_coef: float) -> torch.Tensor:  # fmt: skip
    """score [B] (the sequence reward R), log-probs [B, T] of the sampled tokens under the policy and the reference.
    r_t = -kl_coef * (logp_t - ref_logp_t) on response tokens, plus R on each row's last response token. [B, T]"""
    mask = mask.to(logp.dtype)
    rewards = -kl_coef * (logp - ref_logp).detach() * mask
    lengths = mask.sum(dim=1).long()
    if (lengths == 0).any():
        raise ValueError("a sampled completion has no response token: it cannot carry a reward")
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, lengths - 1] += score.to(rewards.dtype)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Advantages and returns [B, T] by the backward recursion delta_t = r_t + gamma * V_{t+1} - V_t,
    A_t = delta_t + gamma * lam * A_{t+1}, with V and A after the last response token 0; returns = A + V. 0 on
    padding."""
    mask = mask.to(values.dtype)
    values, rewards = values.detach() * mask, rewards * mask
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])
    next_adv = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv = (delta + gamma * lam * next_adv) * m
        advantages[:, t] = adv
        next_value = torch.where(m.bool(), values[:, t], next_value)
        next_adv = torch.where(m.bool(), adv, next_adv)
    return advantages, (advantages + values) * mask


@register_loss("ppo_policy")
def clipped_policy_loss(logp_new: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                        eps: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """mean over response tokens of max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)); and the clip fraction (the
    share of tokens where the clipped branch is the larger one)."""
    ratio = torch.exp(logp_new - logp_old.detach())
    advantages = advantages.detach()
    unclipped, clipped = -advantages * ratio, -advantages * torch.clamp(ratio, 1.0 - eps, 1.0 + eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).to(logp_new.dtype), mask)
    return loss, clipfrac.detach()


@register_loss("ppo_value")
def clipped_value_loss(v_new: torch.Tensor, v_old: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       eps_v: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """0.5 * mean over response tokens of max((V_new - ret)^2, (clip(V_new, V_old - eps_v, V_old + eps_v) - ret)^2);
    and the value clip fraction."""
    v_old, returns = v_old.detach(), returns.detach()
    v_clipped = v_old + torch.clamp(v_new - v_old, -eps_v, eps_v)
    unclipped, clipped = (v_new - returns) ** 2, (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).to(v_new.dtype), mask)
    return loss, clipfrac.detach()


def approx_kl(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean over completions of the summed per-token log-ratio log pi - log ref (the sequence KL estimate TRL
    logged as objective/kl)."""
    return ((logp - ref_logp) * mask.to(logp.dtype)).sum(dim=1).mean()
