"""The trainer subclasses add exactly their term: on a fixed batch, loss(alpha) - loss(0) equals the pure function
of losses.py on log-probs computed from scratch; with alpha 0 the loss is TRL's own; gt_label reaches the batch."""

from pathlib import Path

import pytest
import torch

from w2s_trl.align import make_trainer
from w2s_trl.recipe import load_recipe
from w2s_trl.testbed import generate_testbed
from w2s_trl.training.losses import dpo_conflict_term, rm_conflict_term, simpo_conflict_term

REPO = Path(__file__).resolve().parent.parent


def labelled_rows(n=8, seed=3):
    """Testbed pairs, half of them swapped as weak labels would (gt_label 0)."""
    rows = generate_testbed(n, seed=seed)
    for i, r in enumerate(rows):
        if i % 2:
            r["chosen"], r["rejected"] = r["rejected"], r["chosen"]
        r["gt_label"] = 0 if i % 2 else 1
    return rows


def perturb_adapter(model, seed=0):
    """A fresh LoRA adapter is the reference exactly (B = 0): give it random weights so margins are not all 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def sum_logps(model, input_ids, attention_mask, completion_mask):
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return (logp * completion_mask[:, 1:]).sum(-1)


def recipe_for(name, *overrides):
    return load_recipe(REPO / "recipes" / name, ["align.args.bf16=false", "tracking.report_to=[]", *overrides],
                       smoke=True)  # fmt: skip


def test_dpo_conflict_term_is_exactly_the_added_loss(tmp_path):
    recipe = recipe_for("dpo_weak_rm.yaml", "align.args.precompute_ref_log_probs=false")
    trainer, _ = make_trainer(recipe, labelled_rows(), str(tmp_path), "t", max_length=256, conflict_alpha=1.5)
    assert type(trainer).__name__ == "ConflictDPOTrainer"
    batch = next(iter(trainer.get_train_dataloader()))
    assert set(batch["gt_label"].tolist()) == {0.0, 1.0}  # the weak labels' swaps reach the batch
    model = trainer.model
    perturb_adapter(model)
    model.eval()
    with torch.no_grad():
        with_term = trainer.compute_loss(model, dict(batch)).item()
        trainer.conflict_alpha = 0.0
        without = trainer.compute_loss(model, dict(batch)).item()
        plain = super(type(trainer), trainer).compute_loss(model, {k: v for k, v in batch.items() if k != "gt_label"})
        pi = sum_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        with model.disable_adapter():
            ref = sum_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    assert without == pytest.approx(plain.item(), rel=1e-6)  # alpha 0: TRL's DPO loss
    (c, r), (rc, rr) = pi.chunk(2), ref.chunk(2)
    gt = batch["gt_label"].bool()
    pos, neg, rpos, rneg = (torch.where(gt, c, r), torch.where(gt, r, c), torch.where(gt, rc, rr),
                            torch.where(gt, rr, rc))  # fmt: skip
    expected = dpo_conflict_term(pos, neg, rpos, rneg, trainer.beta, 1.5).item()
    assert expected > 0  # some pair leans the wrong way after the perturbation: the test can fail
    assert with_term - without == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_simpo_conflict_term_is_exactly_the_added_loss(tmp_path):
    recipe = recipe_for("simpo_density_ratio.yaml", "align.args.beta=2.0", "align.args.simpo_gamma=0.5")
    trainer, _ = make_trainer(recipe, labelled_rows(), str(tmp_path), "t", max_length=256, conflict_alpha=0.7)
    assert type(trainer).__name__ == "ConflictCPOTrainer"
    batch = next(iter(trainer.get_train_dataloader()))
    assert set(int(x) for x in batch["gt_label"]) == {0, 1}
    model = trainer.model
    perturb_adapter(model, seed=1)
    model.eval()
    with torch.no_grad():
        with_term = trainer.compute_loss(model, batch).item()
        chosen, rejected = trainer._policy_logps
        trainer.conflict_alpha = 0.0
        without = trainer.compute_loss(model, batch).item()
    gt = torch.as_tensor(batch["gt_label"]).bool()
    pos, neg = torch.where(gt, chosen, rejected), torch.where(gt, rejected, chosen)
    expected = simpo_conflict_term(pos, neg, 2.0, 0.5, 0.7).item()
    assert expected > 0
    assert with_term - without == pytest.approx(expected, rel=1e-4, abs=1e-6)


def rm_trainer(tmp_path, rows, **kw):
    from datasets import Dataset

    from w2s_trl.models import load_reward_model
    from w2s_trl.trainer_args import build_trl_config
    from w2s_trl.training.trainers import trainer_class, trainer_kwargs
    from w2s_trl.weak import reward_training_rows

    model, tok = load_reward_model("tiny:reward-model")
    conflict_alpha, confidence = kw.get("conflict_alpha", 0.0), kw.get("confidence")
    columns = ("p_w",) if confidence else ("gt_label",) if conflict_alpha else ()
    pairs = reward_training_rows(tok, rows, 128, None, columns)
    args = {"max_steps": 2, "per_device_train_batch_size": 4, "bf16": False, "max_length": 128,
            "gradient_accumulation_steps": kw.get("accumulation", 1), "train_sampling_strategy": "sequential"}  # fmt: skip
    config = build_trl_config("reward", args, str(tmp_path), 0, [], "t")
    cls = trainer_class("reward", conflict_alpha, confidence=bool(confidence))
    return cls(model=model, args=config, train_dataset=Dataset.from_list(pairs), processing_class=tok,
               **trainer_kwargs(conflict_alpha, confidence))  # fmt: skip


def test_reward_conflict_term_is_exactly_the_added_loss(tmp_path):
    trainer = rm_trainer(tmp_path, labelled_rows(), conflict_alpha=2.0)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["gt_label"].tolist() == [1.0, 0.0, 1.0, 0.0]
    model = trainer.model
    model.eval()
    with torch.no_grad():
        with_term = trainer.compute_loss(model, dict(batch)).item()
        trainer.conflict_alpha = 0.0
        without = trainer.compute_loss(model, dict(batch)).item()
        scores = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
    c, r = scores.chunk(2)
    delta_gt = torch.where(batch["gt_label"].bool(), c - r, r - c)
    expected = rm_conflict_term(delta_gt, 2.0).item()
    assert (delta_gt < 0).any()
    assert with_term - without == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_confidence_trainer_trains_on_soft_labels_and_refuses_accumulation(tmp_path):
    rows = labelled_rows()
    for i, r in enumerate(rows):
        r["p_w"] = 0.6 + 0.05 * i
    with pytest.raises(ValueError, match="gradient_accumulation_steps is 2"):
        rm_trainer(tmp_path / "a", rows, confidence={"alpha_max": 0.5, "warmup_frac": 0.5}, accumulation=2)
    trainer = rm_trainer(tmp_path / "b", rows, confidence={"alpha_max": 0.5, "warmup_frac": 0.5})
    assert type(trainer).__name__ == "ConfidenceRewardTrainer"
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["p_w"].shape == (4,) and (batch["p_w"] >= 0.6).all()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.model.parameters()))
    logged = {k for entry in trainer.state.log_history for k in entry}
    assert {"confidence/alpha", "confidence/threshold"} <= logged
