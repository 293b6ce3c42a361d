"""Trainers by name (`align.trainer`, and `reward` for reward models): TRL's own classes, or a small subclass that
adds one loss term (CONVENTIONS 5). The terms are the pure functions of losses.py.

  dpo     trl.DPOTrainer                        + ConflictDPOTrainer:    alpha * dpo_conflict_term
  simpo   trl.experimental.cpo.CPOTrainer        + ConflictCPOTrainer:    alpha * simpo_conflict_term
  reward  trl.RewardTrainer                     + ConflictRewardTrainer: alpha * rm_conflict_term
                                                + ConfidenceRewardTrainer: the auxiliary confidence loss on soft weak
                                                  labels (replaces Bradley-Terry; a reward-model student)

The conflict term needs each row's ground-truth order: a `gt_label` column (1 where the row's chosen is the
ground-truth chosen, 0 where the weak labels swapped the pair) travels through TRL's tokenization and collator
(`KeepColumns`) into the batch. The term reuses the forward passes the trainer already runs (`_recorded_forwards` keeps
their outputs, the reference's included): no extra forward.
"""

from __future__ import annotations

import contextlib
import functools

import torch

from w2s_trl.training.losses import (
    confidence_alpha,
    confidence_loss,
    confidence_threshold,
    dpo_conflict_term,
    gt_order,
    rm_conflict_term,
    simpo_conflict_term,
)


class KeepColumns:
    """A data collator that adds per-row numeric columns (as a tensor) to what the wrapped collator builds."""

    def __init__(self, collator, columns: tuple[str, ...]):
        self.collator, self.columns = collator, columns

    def __call__(self, examples):
        batch = self.collator(examples)
        for c in self.columns:
            if c in examples[0]:
                batch[c] = torch.tensor([float(e[c]) for e in examples])
        return batch


@contextlib.contextmanager
def _recorded_forwards(*modules):
    """While the block runs, record the output of every forward of `modules` (None skipped), in call order: the
    policy's forward first, then the reference's when the trainer runs one. The outputs keep their autograd graph."""
    seen, handles = [], []
    for m in modules:
        if m is not None:
            handles.append(m.register_forward_hook(lambda module, args, output: seen.append(output)))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


class _ExtraColumns:
    """Mixin: keep `extra_columns` through column removal and collation."""

    extra_columns: tuple[str, ...] = ()

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = list(self._signature_columns) + [
            c for c in self.extra_columns if c not in self._signature_columns
        ]

    def _keep_columns(self):
        self.data_collator = KeepColumns(self.data_collator, self.extra_columns)
        names = getattr(self.train_dataset, "column_names", None)  # None for an IterableDataset: checked per batch
        missing = [c for c in self.extra_columns if names is not None and c not in names]
        if missing:
            raise ValueError(f"{type(self).__name__} needs the column(s) {missing} on every training row (gt_label: 1 "
                             f"where the row's chosen is the ground-truth chosen, 0 where the weak labels swapped it; "
                             f"p_w: the weak probability that chosen beats rejected); the dataset has {names}")  # fmt: skip

    def _pop_columns(self, inputs: dict) -> tuple[dict, list[torch.Tensor]]:
        """The batch without the extra columns (the model must not see them), and those columns; the caller's dict is
        left as it was."""
        missing = [c for c in self.extra_columns if c not in inputs]
        if missing:
            raise ValueError(f"{type(self).__name__}: the batch has no {missing} column(s); a custom data_collator must "
                             "keep them (wrap it in training.trainers.KeepColumns)")  # fmt: skip
        rest = {k: v for k, v in inputs.items() if k not in self.extra_columns}
        return rest, [torch.as_tensor(inputs[c]) for c in self.extra_columns]

    def _log_term(self, name: str, value: float) -> None:
        mode = "train" if self.model.training else "eval"
        self._metrics[mode][name].append(value)


@functools.cache
def _dpo():
    from trl import DPOTrainer

    class ConflictDPOTrainer(_ExtraColumns, DPOTrainer):
        """DPO + alpha * mean(m_i * reversed DPO loss_i) (SCIENCE.md 2)."""

        extra_columns = ("gt_label",)

        def __init__(self, *args, conflict_alpha: float, **kwargs):
            self.conflict_alpha = conflict_alpha
            super().__init__(*args, **kwargs)
            if self.ld_alpha is not None:
                raise ValueError("the explicit conflict term uses summed log-probs: unset ld_alpha")
            self._keep_columns()

        def compute_ref_log_probs(self, model, inputs):
            # `evaluate` with precomputed reference log-probs collates through KeepColumns: keep gt_label from the model
            return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k not in self.extra_columns})

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs, (gt_label,) = self._pop_columns(inputs)
            self.policy_output = None  # set by the shared-prompt forward (training/shared_prompt.py), in TRL's layout
            with _recorded_forwards(self.model, self.ref_model) as forwards:
                out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # TRL's DPO sums the fused head's per-token log-probs of the response (masked positions hold 0); the policy
            # forward comes first, the reference forward (adapter off, or ref_model) second unless precomputed
            seq_len = inputs["completion_mask"][..., 1:].size(1)
            policy = self.policy_output if self.policy_output is not None else forwards[0]
            chosen, rejected = policy.log_probs[:, -seq_len:].sum(dim=1).chunk(2, dim=0)
            if self.precompute_ref_logps:
                ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref_chosen, ref_rejected = forwards[1].log_probs[:, -seq_len:].sum(dim=1).chunk(2, dim=0)
            ref_chosen, ref_rejected = ref_chosen.to(chosen.device), ref_rejected.to(chosen.device)
            gt = gt_label.to(chosen.device).bool()
            # ground-truth order: y+ is the row's chosen where gt_label = 1, its rejected where the labels swapped it
            pos, neg = torch.where(gt, chosen, rejected), torch.where(gt, rejected, chosen)
            ref_pos, ref_neg = torch.where(gt, ref_chosen, ref_rejected), torch.where(gt, ref_rejected, ref_chosen)
            term = dpo_conflict_term(pos, neg, ref_pos, ref_neg, self.beta, self.conflict_alpha)
            h = (pos - ref_pos) - (neg - ref_neg)
            self._log_term("conflict/term", term.item())
            self._log_term("conflict/mask_rate", (h.detach() < 0).float().mean().item())
            return (out[0] + term, out[1]) if return_outputs else out + term

    return DPOTrainer, ConflictDPOTrainer


@functools.cache
def _simpo():
    from trl.experimental.cpo import CPOTrainer

    class ConflictCPOTrainer(_ExtraColumns, CPOTrainer):
        """SimPO (CPO with loss_type simpo) + alpha * mean(m_i * reversed SimPO loss_i) (SCIENCE.md 2). The term uses
        the per-token mean log-probs of CPO's one concatenated forward."""

        extra_columns = ("gt_label",)

        def __init__(self, *args, conflict_alpha: float, **kwargs):
            self.conflict_alpha = conflict_alpha
            super().__init__(*args, **kwargs)
            if self.loss_type != "simpo":
                raise ValueError(f"the SimPO conflict term needs loss_type 'simpo', got {self.loss_type!r}")
            self._keep_columns()

        def cpo_loss(self, policy_chosen_logps, policy_rejected_logps):
            # the policy's per-token mean log-probs (simpo), whichever forward produced them (TRL's or prompt-once)
            self._policy_logps = policy_chosen_logps, policy_rejected_logps
            return super().cpo_loss(policy_chosen_logps, policy_rejected_logps)

        def get_batch_loss_metrics(self, model, batch, train_eval="train"):
            loss, metrics = super().get_batch_loss_metrics(model, batch, train_eval)
            chosen, rejected = self._policy_logps
            gt = self._pop_columns(batch)[1][0].to(chosen.device).bool()
            pos, neg = torch.where(gt, chosen, rejected), torch.where(gt, rejected, chosen)
            term = simpo_conflict_term(pos, neg, self.beta, self.simpo_gamma, self.conflict_alpha)
            prefix = "eval_" if train_eval == "eval" else ""
            metrics[f"{prefix}conflict/term"] = term.item()
            metrics[f"{prefix}conflict/mask_rate"] = ((pos - neg).detach() < 0).float().mean().item()
            return loss + term, metrics

    return CPOTrainer, ConflictCPOTrainer


@functools.cache
def _reward():
    from trl import RewardTrainer

    class ConflictRewardTrainer(_ExtraColumns, RewardTrainer):
        """Bradley-Terry + alpha * mean(m_i * BCE(sigma(delta_i), 0)) in ground-truth order (SCIENCE.md 2)."""

        extra_columns = ("gt_label",)

        def __init__(self, *args, conflict_alpha: float, **kwargs):
            self.conflict_alpha = conflict_alpha
            super().__init__(*args, **kwargs)
            self._keep_columns()

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs, (gt_label,) = self._pop_columns(inputs)
            with _recorded_forwards(self.model) as forwards:
                out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            chosen, rejected = torch.chunk(forwards[0].logits.squeeze(-1), chunks=2)
            delta_gt = gt_order(chosen - rejected, gt_label)
            term = rm_conflict_term(delta_gt, self.conflict_alpha)
            self._log_term("conflict/term", term.item())
            self._log_term("conflict/mask_rate", (delta_gt.detach() < 0).float().mean().item())
            return (out[0] + term, out[1]) if return_outputs else out + term

    class ConfidenceRewardTrainer(_ExtraColumns, RewardTrainer):
        """A reward-model student on soft weak labels with the auxiliary confidence loss (SCIENCE.md 1): rows hold
        chosen (the weak-preferred response), rejected and p_w; loss = (1 - alpha) BCE(p, p_w) + alpha BCE(p, h), in
        place of Bradley-Terry (TRL's forward and reward metrics are kept). The threshold t is a statistic of the
        whole batch: it is taken over every process's rows (gathered), and gradient accumulation is refused, since a
        micro-batch is not the batch."""

        extra_columns = ("p_w",)

        def __init__(self, *args, alpha_max: float, warmup_frac: float, **kwargs):
            self.alpha_max, self.warmup_frac = alpha_max, warmup_frac
            super().__init__(*args, **kwargs)
            if self.args.gradient_accumulation_steps > 1:
                raise ValueError(
                    f"the auxiliary confidence loss takes its threshold over the whole batch; gradient_accumulation_steps "
                    f"is {self.args.gradient_accumulation_steps}, so each micro-batch would have its own threshold. Set "
                    "gradient_accumulation_steps: 1 and raise per_device_train_batch_size instead")  # fmt: skip
            self._keep_columns()

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs, (p_w,) = self._pop_columns(inputs)
            inputs.pop("margin", None)  # a Bradley-Terry margin has no meaning here
            _, outputs = super().compute_loss(model, inputs, return_outputs=True)  # TRL's forward and metrics
            chosen, rejected = torch.chunk(outputs.logits.squeeze(-1).float(), chunks=2)
            p, p_w = torch.sigmoid(chosen - rejected), p_w.to(chosen.device, torch.float32)
            alpha = confidence_alpha(self.state.global_step, max(1, self.state.max_steps), self.alpha_max,
                                     self.warmup_frac)  # fmt: skip
            threshold = confidence_threshold(self.accelerator.gather(p.detach()), self.accelerator.gather(p_w))
            loss, threshold = confidence_loss(p, p_w, alpha, threshold)
            if self.args.center_rewards_coefficient is not None:
                loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
            self._log_term("confidence/alpha", alpha)
            self._log_term("confidence/threshold", threshold.item())
            return (loss, outputs) if return_outputs else loss

    return RewardTrainer, ConflictRewardTrainer, ConfidenceRewardTrainer


def _grpo():
    from trl import GRPOTrainer

    return (GRPOTrainer,)


def _rloo():
    from trl import RLOOTrainer

    return (RLOOTrainer,)


TRAINERS = {"dpo": _dpo, "simpo": _simpo, "reward": _reward, "grpo": _grpo, "rloo": _rloo}


def trainer_class(kind: str, conflict_alpha: float = 0.0, confidence: bool = False) -> type:
    """The TRL class for `kind`, or its subclass when a term is added (imported lazily: nothing at import time)."""
    if kind not in TRAINERS:
        raise KeyError(f"unknown trainer '{kind}'; known: {', '.join(TRAINERS)}")
    classes = TRAINERS[kind]()
    if confidence:
        if kind != "reward":
            raise ValueError("the auxiliary confidence loss is for reward-model students (trainer 'reward')")
        if conflict_alpha:
            raise ValueError("the confidence loss and the explicit conflict term do not combine in one trainer")
        return classes[2]
    return classes[1] if conflict_alpha else classes[0]


def trainer_kwargs(conflict_alpha: float = 0.0, confidence: dict | None = None) -> dict:
    """The constructor arguments the chosen class takes beyond TRL's."""
    if confidence:
        return {"alpha_max": confidence["alpha_max"], "warmup_frac": confidence["warmup_frac"]}
    return {"conflict_alpha": conflict_alpha} if conflict_alpha else {}
