"""Trainers by name (`align.trainer`, and `reward` for reward models): TRL's own classes, or a small subclass that
adds one loss term (CONVENTIONS 5). The terms are the pure functions of losses.py.

  dpo     trl.DPOTrainer                        + ConflictDPOTrainer:    alpha * dpo_conflict_term
  simpo   trl.experimental.cpo.CPOTrainer        + ConflictCPOTrainer:    alpha * simpo_conflict_term
  reward  trl.RewardTrainer                     + ConflictRewardTrainer: alpha * rm_conflict_term
                                                + ConfidenceRewardTrainer: the auxiliary confidence loss on soft weak
                                                  labels (replaces Bradley-Terry; a reward-model student)

The conflict term needs each row's ground-truth order: a `gt_label` column (1 where the row's chosen is the
ground-truth chosen, 0 where the weak labels swapped the pair) travels through TRL's tokenization and collator
(`KeepColumns`) into the batch. The term reuses the forward pass the trainer already runs (`_FirstForward` keeps its
output); only DPO without precomputed reference log-probs runs one extra reference forward, under no_grad.
"""

from __future__ import annotations

import functools

import torch

from w2s_trl.training.losses import (
    confidence_alpha,
    confidence_loss,
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


class _FirstForward:
    """Stands in for the model in one compute_loss call and keeps the output of its first forward (the policy's)."""

    def __init__(self, model):
        self.model, self.output = model, None

    def __call__(self, *args, **kwargs):
        out = self.model(*args, **kwargs)
        if self.output is None:
            self.output = out
        return out

    def __getattr__(self, name):
        return getattr(self.model, name)


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

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            gt_label = inputs.pop("gt_label")
            first = _FirstForward(model)
            out = super().compute_loss(first, inputs, return_outputs, num_items_in_batch)
            seq_len = inputs["completion_mask"][..., 1:].size(1)
            logps = first.output.log_probs[:, -seq_len:].sum(dim=1)  # masked positions hold 0, as in TRL
            chosen, rejected = logps.chunk(2, dim=0)
            if "ref_chosen_logps" in inputs:
                ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref_chosen, ref_rejected = self.compute_ref_log_probs(self.model, inputs)
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

    class ConflictCPOTrainer(CPOTrainer):
        """SimPO (CPO with loss_type simpo) + alpha * mean(m_i * reversed SimPO loss_i) (SCIENCE.md 2). CPO keeps
        extra columns itself (remove_unused_columns off with its padding collator)."""

        def __init__(self, *args, conflict_alpha: float, **kwargs):
            self.conflict_alpha = conflict_alpha
            super().__init__(*args, **kwargs)
            if self.loss_type != "simpo":
                raise ValueError(f"the SimPO conflict term needs loss_type 'simpo', got {self.loss_type!r}")

        def concatenated_forward(self, model, batch):
            out = super().concatenated_forward(model, batch)
            self._policy_logps = out[0], out[1]  # per-token means for simpo
            return out

        def get_batch_loss_metrics(self, model, batch, train_eval="train"):
            loss, metrics = super().get_batch_loss_metrics(model, batch, train_eval)
            chosen, rejected = self._policy_logps
            gt = torch.as_tensor(batch["gt_label"], device=chosen.device).bool()
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
            gt_label = inputs.pop("gt_label")
            first = _FirstForward(model)
            out = super().compute_loss(first, inputs, return_outputs, num_items_in_batch)
            chosen, rejected = torch.chunk(first.output.logits.squeeze(-1), chunks=2)
            delta_gt = gt_order(chosen - rejected, gt_label)
            term = rm_conflict_term(delta_gt, self.conflict_alpha)
            self._log_term("conflict/term", term.item())
            self._log_term("conflict/mask_rate", (delta_gt.detach() < 0).float().mean().item())
            return (out[0] + term, out[1]) if return_outputs else out + term

    class ConfidenceRewardTrainer(_ExtraColumns, RewardTrainer):
        """A reward-model student on soft weak labels with the auxiliary confidence loss (SCIENCE.md 1): rows hold
        chosen (the weak-preferred response), rejected and p_w; loss = (1 - alpha) BCE(p, p_w) + alpha BCE(p, h).
        The threshold is a statistic of the batch each process sees, so gradient accumulation is refused (it would
        take the threshold over a micro-batch)."""

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
            p_w = inputs.pop("p_w")
            inputs.pop("margin", None)
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
            chosen, rejected = torch.chunk(outputs.logits.squeeze(-1).float(), chunks=2)
            p = torch.sigmoid(chosen - rejected)
            alpha = confidence_alpha(self.state.global_step, max(1, self.state.max_steps), self.alpha_max,
                                     self.warmup_frac)  # fmt: skip
            loss, threshold = confidence_loss(p, p_w.to(p.device), alpha)
            self._log_term("confidence/alpha", alpha)
            self._log_term("confidence/threshold", threshold.item())
            self._log_term("accuracy", (chosen > rejected).float().mean().item())
            return (loss, outputs) if return_outputs else loss

    return RewardTrainer, ConflictRewardTrainer, ConfidenceRewardTrainer


TRAINERS = {"dpo": _dpo, "simpo": _simpo, "reward": _reward}


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
