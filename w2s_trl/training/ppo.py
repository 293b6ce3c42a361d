"""A small PPO on transformers + PEFT parts (SCIENCE.md 5; TRL deleted its PPO trainer): sample completions from a
LoRA policy, score them with any reward callable (TRL's signature: f(prompts, completions) -> list[float]), the
reference is the same model with the adapter off, a value head on the policy's last hidden states is the critic.
The maths is in ppo_math.py (pure, tested by value); this module only moves tensors between the pieces.

One `step(prompts)`: a rollout (generate, log-probs under policy and reference, values, sequence rewards), per-token
KL-penalised rewards, GAE, whitened advantages, then `ppo_epochs` passes of minibatch updates with the clipped policy
and value losses. It returns what is logged: mean reward, KL, clip fractions, losses, response length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch

from w2s_trl.training.ppo_math import (
    approx_kl,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    kl_penalized_rewards,
    masked_mean,
    whiten,
)

RewardFn = Callable[..., Sequence[float | None]]


@dataclass
class PPOSettings:
    """`align.args` of `align.trainer: ppo` (names follow TRL's old PPOConfig where it had one)."""

    total_steps: int = 20  # rollouts (each followed by ppo_epochs passes of minibatch updates)
    batch_size: int = 8  # prompts per rollout
    learning_rate: float = 1.0e-5
    minibatch_size: int = 4
    ppo_epochs: int = 2
    kl_coef: float = 0.05
    gamma: float = 1.0
    lam: float = 0.95
    cliprange: float = 0.2
    cliprange_value: float = 0.2
    vf_coef: float = 0.1
    max_grad_norm: float = 1.0
    max_completion_length: int = 32
    temperature: float = 1.0
    logging_steps: int = 1

    def __post_init__(self):
        for name in ("total_steps", "batch_size", "minibatch_size", "ppo_epochs", "max_completion_length",
                     "logging_steps"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1 (got {getattr(self, name)})")
        if not 0 < self.minibatch_size <= self.batch_size:
            raise ValueError(f"minibatch_size {self.minibatch_size} must lie in [1, batch_size {self.batch_size}]")
        if self.kl_coef < 0 or self.cliprange <= 0 or self.temperature <= 0:
            raise ValueError("kl_coef must be >= 0, cliprange and temperature > 0")


class ValueHead(torch.nn.Module):
    """V(s_t) from the policy's last hidden state at the position that predicts token t."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


def response_mask(response: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """1 on each completion's tokens up to and including its first EOS (every completion has at least one token)."""
    if eos_id is None:
        return torch.ones_like(response)
    is_eos = (response == eos_id).long()
    after = torch.cumsum(is_eos, dim=1) - is_eos  # EOS tokens before this one
    return (after == 0).long()


class PPO:
    def __init__(self, model, tokenizer, reward_fn: RewardFn, settings: PPOSettings | None = None):
        """`model`: a PEFT model with a trainable adapter (the policy; `disable_adapter()` gives the reference)."""
        self.model, self.tokenizer, self.reward_fn = model, tokenizer, reward_fn
        self.s = settings or PPOSettings()
        self.value_head = ValueHead(model.config.hidden_size).to(model.device)
        policy = [p for p in model.parameters() if p.requires_grad]
        if not policy:
            raise ValueError("PPO needs a policy with trainable parameters (a LoRA adapter): none found")
        self.params = policy + list(self.value_head.parameters())
        self.optimizer = torch.optim.AdamW(self.params, lr=self.s.learning_rate)

    def _encode(self, prompts: Sequence) -> dict[str, torch.Tensor]:
        from w2s_trl.scoring import render

        tok = self.tokenizer
        texts = [render(tok, list(p), add_generation_prompt=True) if not isinstance(p, str) else p for p in prompts]
        side, tok.padding_side = tok.padding_side, "left"  # generation continues every row at the same column
        try:
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tok.padding_side = side
        return {k: v.to(self.model.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def _forward(self, ids: torch.Tensor, attention: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs [B, T] of the response tokens (ids[:, start:]) and the values at the positions predicting them."""
        from w2s_trl.scoring import left_padded_positions

        positions = left_padded_positions(attention)
        out = self.model(input_ids=ids, attention_mask=attention, position_ids=positions, output_hidden_states=True)
        logits = out.logits[:, start - 1 : -1].float() / self.s.temperature
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1)
        return logp, self.value_head(out.hidden_states[-1][:, start - 1 : -1])

    @torch.no_grad()
    def rollout(self, prompts: Sequence) -> dict:
        enc = self._encode(prompts)
        start = enc["input_ids"].shape[1]
        self.model.eval()
        ids = self.model.generate(**enc, do_sample=True, max_new_tokens=self.s.max_completion_length,
                                  temperature=self.s.temperature, top_k=0, top_p=1.0,
                                  pad_token_id=self.tokenizer.pad_token_id)  # fmt: skip
        response = ids[:, start:]
        mask = response_mask(response, self.tokenizer.eos_token_id)
        attention = torch.cat([enc["attention_mask"], mask], dim=1)
        logp, values = self._forward(ids, attention, start)
        with self.model.disable_adapter():
            ref_logp, _ = self._forward(ids, attention, start)
        texts = [self.tokenizer.decode(r[m.bool()], skip_special_tokens=True) for r, m in zip(response, mask)]
        completions = [[{"role": "assistant", "content": t}] for t in texts]
        scores = self.reward_fn(list(prompts), completions)
        if any(s is None for s in scores):
            raise ValueError("the reward source could not score a sampled completion (too long for its window?): "
                             "lower max_completion_length or raise the reward model's max_length")  # fmt: skip
        score = torch.tensor([float(s) for s in scores], device=logp.device)
        self.last_completions, self.last_scores = texts, [float(s) for s in scores]
        return {"ids": ids, "attention": attention, "start": start, "mask": mask.float(), "logp": logp,
                "ref_logp": ref_logp, "values": values, "score": score, "completions": texts}  # fmt: skip

    def step(self, prompts: Sequence) -> dict[str, float]:
        b = self.rollout(prompts)
        s, mask = self.s, b["mask"]
        rewards = kl_penalized_rewards(b["score"], b["logp"], b["ref_logp"], mask, s.kl_coef)
        advantages, returns = gae(rewards, b["values"], mask, s.gamma, s.lam)
        advantages = whiten(advantages, mask)
        self.model.train()
        stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "clipfrac": [], "value_clipfrac": []}
        n = len(prompts)
        for _ in range(s.ppo_epochs):
            for mb in torch.randperm(n).split(s.minibatch_size):
                logp, values = self._forward(b["ids"][mb], b["attention"][mb], b["start"])
                pl, cf = clipped_policy_loss(logp, b["logp"][mb], advantages[mb], mask[mb], s.cliprange)
                vl, vcf = clipped_value_loss(values, b["values"][mb], returns[mb], mask[mb], s.cliprange_value)
                self.optimizer.zero_grad()
                (pl + s.vf_coef * vl).backward()
                torch.nn.utils.clip_grad_norm_(self.params, s.max_grad_norm)
                self.optimizer.step()
                for k, v in zip(stats, (pl, vl, cf, vcf)):
                    stats[k].append(float(v.detach()))
        return {
            "reward": float(b["score"].mean()),
            "kl": float(approx_kl(b["logp"], b["ref_logp"], mask)),
            "non_score_reward": float(masked_mean(rewards, mask) * mask.sum() / n - b["score"].mean()),
            "response_length": float(mask.sum(dim=1).mean()),
            **{k: sum(v) / len(v) for k, v in stats.items()},
        }

    def settings(self) -> dict:
        return asdict(self.s)


def run_ppo(recipe, model, tokenizer, prompts: list[dict], funcs, weights, work, run_name: str, peft_config) -> list:
    """`align.trainer: ppo`: `total_steps` rollouts of `batch_size` prompts (shuffled by run.seed, reshuffled after
    each pass), reward sum_k w_k f_k, a log line per `logging_steps`, W&B (metrics and a completions table) when
    tracking is on. Saves the LoRA adapter and the value head into work.out/adapter. Returns the per-step log."""
    import random
    import time

    from peft import get_peft_model

    from w2s_trl.training.online import WeightedSum

    settings = PPOSettings(**recipe.align.online_args())
    policy = get_peft_model(model, peft_config)
    reward = WeightedSum(funcs, weights)
    ppo = PPO(policy, tokenizer, reward, settings)
    wandb = None
    if "wandb" in recipe.tracking.report_to:
        from w2s_trl.tracking import start_stage_run

        wandb = start_stage_run(work, run_name, {"ppo": asdict(settings)})
    rng, order, history, start = random.Random(recipe.run.seed), [], [], time.time()
    for step in range(1, settings.total_steps + 1):
        while len(order) < settings.batch_size:  # a full batch even from fewer prompts than batch_size
            more = list(range(len(prompts)))
            rng.shuffle(more)
            order += more
        batch, order = order[: settings.batch_size], order[settings.batch_size :]
        stats = ppo.step([prompts[i]["prompt"] for i in batch])
        stats = {"step": step, **stats, **reward.last, "elapsed_s": round(time.time() - start, 1)}
        history.append(stats)
        logged = step % settings.logging_steps == 0 or step == settings.total_steps
        if logged:
            parts = " ".join(f"{k[len('rewards/') : -len('/mean')]} {v:+.3f}" for k, v in reward.last.items())
            print(f"[w2s-trl] ppo step {step}/{settings.total_steps}: reward {stats['reward']:+.3f} ({parts}) "
                  f"kl {stats['kl']:.3f} clipfrac {stats['clipfrac']:.2f} length {stats['response_length']:.1f} "
                  f"[{stats['elapsed_s']:.0f} s]", flush=True)  # fmt: skip
        if wandb is not None:
            wandb.log({f"train/{k}": v for k, v in stats.items() if k != "step"}, step=step)
            if logged:  # the sampled completions, as GRPO's log_completions table
                import wandb as wb

                table = wb.Table(columns=["step", "prompt", "completion", "reward"])
                for i, text, score in zip(batch, ppo.last_completions, ppo.last_scores):
                    table.add_data(step, prompts[i]["prompt"][-1]["content"], text, score)
                wandb.log({"completions": table}, step=step)
    if wandb is not None:
        wandb.finish()
    out = work.out / "adapter"
    policy.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    torch.save(ppo.value_head.state_dict(), out / "value_head.pt")
    return history

