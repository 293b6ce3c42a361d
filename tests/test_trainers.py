"""The trainer subclasses add exactly their term: on a fixed batch, loss(alpha) - loss(0) equals the pure function
of losses.py on log-probs computed from scratch, and so does the logged term; with alpha 0 the loss is TRL's own;
gt_label and p_w reach the batch; each subclass runs a training step and logs its term."""

from pathlib import Path

import pytest
import torch

from w2s_trl.align import make_trainer
from w2s_trl.recipe import load_recipe
from w2s_trl.testbed import generate_testbed
from w2s_trl.training.losses import (
    confidence_loss,
    confidence_threshold,
    dpo_conflict_term,
    rm_conflict_term,
    simpo_conflict_term,
)
from w2s_trl.training.trainers import trainer_class

REPO = Path(__file__).resolve().parent.parent


def labelled_rows(n=8, seed=3):
    """Testbed pairs, every other one swapped as weak labels would (gt_label 0)."""
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


def gt_ordered(gt_label, chosen, rejected):
    gt = torch.as_tensor(gt_label).bool()
    return torch.where(gt, chosen, rejected), torch.where(gt, rejected, chosen)


def recipe_for(name, *overrides):
    return load_recipe(REPO / "recipes" / name, ["align.args.bf16=false", "tracking.report_to=[]",
                                                 "align.args.max_steps=1", *overrides], smoke=True)  # fmt: skip


def logged_keys(trainer):
    return {k for entry in trainer.state.log_history for k in entry}


def test_trainer_class_is_trl_own_unless_a_term_is_added():
    from trl import DPOTrainer, RewardTrainer
    from trl.experimental.cpo import CPOTrainer

    assert trainer_class("dpo") is DPOTrainer and trainer_class("simpo") is CPOTrainer
    assert trainer_class("reward") is RewardTrainer
    assert trainer_class("dpo", 0.5).__name__ == "ConflictDPOTrainer"
    assert issubclass(trainer_class("simpo", 0.5), CPOTrainer)
    assert trainer_class("reward", 0.5).__name__ == "ConflictRewardTrainer"
    assert trainer_class("reward", confidence=True).__name__ == "ConfidenceRewardTrainer"
    with pytest.raises(KeyError, match="unknown trainer 'ppo'"):
        trainer_class("ppo")
    with pytest.raises(ValueError, match="reward-model students"):
        trainer_class("dpo", confidence=True)
    with pytest.raises(ValueError, match="do not combine"):
        trainer_class("reward", 0.5, confidence=True)


@pytest.mark.parametrize("precompute", [False, True])
def test_dpo_conflict_term_is_exactly_the_added_loss(tmp_path, precompute):
    """Reference log-probs come from TRL's own reference forward (precompute off) or the precomputed columns (on)."""
    recipe = recipe_for("dpo_weak_rm.yaml", f"align.args.precompute_ref_log_probs={str(precompute).lower()}")
    trainer, _ = make_trainer(recipe, labelled_rows(), str(tmp_path), "t", max_length=256, conflict_alpha=1.5)
    # packed pairs (each prompt once) with a precomputed reference; the conflict term reads the unpacked output
    assert type(trainer).__name__ == ("SharedPromptConflictDPOTrainer" if precompute else "ConflictDPOTrainer")
    batch = next(iter(trainer.get_train_dataloader()))
    assert set(batch["gt_label"].tolist()) == {0.0, 1.0}  # the weak labels' swaps reach the batch
    model = trainer.model
    perturb_adapter(model)
    model.eval()
    with torch.no_grad():
        with_term = trainer.compute_loss(model, batch).item()
        logged = trainer._metrics["eval"]["conflict/term"][-1], trainer._metrics["eval"]["conflict/mask_rate"][-1]
        trainer.conflict_alpha = 0.0
        without = trainer.compute_loss(model, batch).item()
        plain = trainer_class("dpo").compute_loss(trainer, model, {k: v for k, v in batch.items() if k != "gt_label"})
        pi = sum_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        with model.disable_adapter():
            ref = sum_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    assert "gt_label" in batch  # compute_loss leaves the caller's batch as it was
    assert without == pytest.approx(plain.item(), rel=1e-6)  # alpha 0: TRL's DPO loss
    pos, neg = gt_ordered(batch["gt_label"], *pi.chunk(2))
    rpos, rneg = gt_ordered(batch["gt_label"], *ref.chunk(2))
    expected = dpo_conflict_term(pos, neg, rpos, rneg, trainer.beta, 1.5).item()
    h = (pos - rpos) - (neg - rneg)
    assert 0 < (h < 0).sum() < len(h)  # some pairs lean the wrong way after the perturbation, some not
    assert with_term - without == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert logged == (pytest.approx(expected, rel=1e-4), pytest.approx((h < 0).float().mean().item()))
    if precompute:  # the recipes' setting: one training step runs and logs the term
        trainer.conflict_alpha = 1.5
        model.train()
        trainer.train()
        assert trainer.state.global_step == 1
        assert {"conflict/term", "conflict/mask_rate", "loss"} <= logged_keys(trainer)


def test_simpo_conflict_term_is_exactly_the_added_loss(tmp_path):
    from trl.experimental.cpo import CPOTrainer

    recipe = recipe_for("simpo_density_ratio.yaml", "align.args.beta=2.0", "align.args.simpo_gamma=0.5")
    trainer, _ = make_trainer(recipe, labelled_rows(), str(tmp_path), "t", max_length=256, conflict_alpha=0.7)
    assert type(trainer).__name__ == "SharedPromptConflictCPOTrainer"
    batch = next(iter(trainer.get_train_dataloader()))
    assert set(int(x) for x in batch["gt_label"]) == {0, 1}
    model = trainer.model
    perturb_adapter(model, seed=1)
    model.eval()
    with torch.no_grad():
        with_term = trainer.compute_loss(model, batch).item()
        logged = trainer._stored_metrics["train"]["conflict/term"][-1]
        chosen, rejected = trainer._policy_logps  # per-token means from the trainer's one forward
        trainer.conflict_alpha = 0.0
        without = trainer.compute_loss(model, batch).item()
        plain, _ = CPOTrainer.get_batch_loss_metrics(trainer, model, batch)
        # the per-token means, from scratch: response tokens are those with a label (prompt and padding are -100)
        means = []
        for side in ("chosen", "rejected"):
            ids, labels = batch[f"{side}_input_ids"], batch[f"{side}_labels"]
            logits = model(input_ids=ids, attention_mask=batch[f"{side}_attention_mask"]).logits.float()
            mask = labels[:, 1:] != -100
            logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            means.append((logp * mask).sum(-1) / mask.sum(-1))
    assert torch.allclose(chosen, means[0], atol=1e-5) and torch.allclose(rejected, means[1], atol=1e-5)
    assert without == pytest.approx(plain.item(), rel=1e-6)  # alpha 0: TRL's SimPO loss
    pos, neg = gt_ordered(batch["gt_label"], *means)
    expected = simpo_conflict_term(pos, neg, 2.0, 0.5, 0.7).item()
    assert 0 < (pos < neg).sum() < len(pos)
    assert with_term - without == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert logged == pytest.approx(expected, rel=1e-4)
    trainer.conflict_alpha = 0.7
    model.train()
    trainer.train()
    assert trainer.state.global_step == 1
    assert {"conflict/term", "conflict/mask_rate", "loss"} <= logged_keys(trainer)


def rm_trainer(tmp_path, rows, **kw):
    from datasets import Dataset

    from w2s_trl.models import load_reward_model
    from w2s_trl.trainer_args import build_trl_config
    from w2s_trl.training.trainers import trainer_kwargs
    from w2s_trl.weak import reward_training_rows

    model, tok = load_reward_model("tiny:reward-model")
    conflict_alpha, confidence = kw.get("conflict_alpha", 0.0), kw.get("confidence")
    columns = kw.get("columns", ("p_w",) if confidence else ("gt_label",) if conflict_alpha else ())
    pairs = reward_training_rows(tok, rows, 128, None, columns)
    args = {"max_steps": 2, "per_device_train_batch_size": 4, "bf16": False, "max_length": 128, "logging_steps": 1,
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
        logged = trainer._metrics["eval"]["conflict/term"][-1]
        trainer.conflict_alpha = 0.0
        without = trainer.compute_loss(model, dict(batch)).item()
        plain = trainer_class("reward").compute_loss(trainer, model, {k: v for k, v in batch.items() if k != "gt_label"})
        scores = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
    c, r = scores.chunk(2)
    delta_gt = torch.where(batch["gt_label"].bool(), c - r, r - c)
    expected = rm_conflict_term(delta_gt, 2.0).item()
    assert (delta_gt < 0).any()
    assert without == pytest.approx(plain.item(), rel=1e-6)  # alpha 0: TRL's Bradley-Terry loss
    assert with_term - without == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert logged == pytest.approx(expected, rel=1e-4)
    trainer.conflict_alpha = 2.0
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert {"conflict/term", "conflict/mask_rate", "accuracy"} <= logged_keys(trainer)


def test_reward_conflict_trainer_needs_gt_label(tmp_path):
    with pytest.raises(ValueError, match=r"needs the column\(s\) \['gt_label'\]"):
        rm_trainer(tmp_path, labelled_rows(4), conflict_alpha=1.0, columns=())


def test_confidence_trainer_trains_on_soft_labels_and_refuses_accumulation(tmp_path):
    rows = labelled_rows()
    for i, r in enumerate(rows):
        r["p_w"] = 0.6 + 0.05 * i
    with pytest.raises(ValueError, match="gradient_accumulation_steps is 2.*Set gradient_accumulation_steps: 1"):
        rm_trainer(tmp_path / "a", rows, confidence={"alpha_max": 0.5, "warmup_frac": 0.5}, accumulation=2)
    trainer = rm_trainer(tmp_path / "b", rows, confidence={"alpha_max": 0.5, "warmup_frac": 0.5})
    assert type(trainer).__name__ == "ConfidenceRewardTrainer"
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["p_w"].tolist() == pytest.approx([0.6, 0.65, 0.7, 0.75])
    model = trainer.model
    model.eval()
    with torch.no_grad():  # at step 0 alpha is 0: the loss is BCE(p, p_w); the threshold is logged all the same
        loss = trainer.compute_loss(model, dict(batch)).item()
        scores = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.squeeze(-1)
    c, r = scores.float().chunk(2)
    p = torch.sigmoid(c - r)
    assert loss == pytest.approx(confidence_loss(p, batch["p_w"], 0.0)[0].item(), rel=1e-5)
    assert trainer._metrics["eval"]["confidence/threshold"][-1] == pytest.approx(
        confidence_threshold(p, batch["p_w"]).item(), rel=1e-5)  # fmt: skip
    assert trainer._metrics["eval"]["confidence/alpha"][-1] == 0.0
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    alphas = [e["confidence/alpha"] for e in trainer.state.log_history if "confidence/alpha" in e]
    assert alphas == [0.0, 0.5]  # 2 steps, warm-up over the first half: 0 at step 0, alpha_max from step 1
    assert "confidence/threshold" in logged_keys(trainer)


@pytest.mark.parametrize("targets", [["q_proj"], ["q_proj", "v_proj"], "all-linear"])
def test_lora_config_is_trls_and_one_target_module_still_matches(tmp_path, targets):
    """TRL's get_peft_config builds the LoRA config; its ModelConfig collapses ['q_proj'] to the regex 'q_proj',
    which PEFT full-matches against 'model.layers.0.self_attn.q_proj' (nothing): w2s-trl keeps the list."""
    from peft import get_peft_model

    from w2s_trl.align import lora_config
    from w2s_trl.models import load_causal_lm
    from w2s_trl.recipe import Recipe

    recipe = Recipe.model_validate({"run": {"name": "x"}, "strong": {"model": "tiny:causal-lm", "lora": {
        "r": 4, "target_modules": targets, "use_rslora": True}}, "weak": {"reward": {"type": "gold"}}})
    config = lora_config(recipe)
    assert config.use_rslora and config.r == 4 and config.bias == "none"
    model = get_peft_model(load_causal_lm("tiny:causal-lm"), config)
    names = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if "lora_A" in n}
    assert names == ({"q_proj"} if targets == ["q_proj"] else {"q_proj", "v_proj"} if len(targets) == 2 else
                     {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})


def test_precomputed_and_cached_reference_give_the_same_training(tmp_path):
    """DPO with the reference log-probs precomputed (the project's default) trains exactly as with a reference forward
    in every step; a second training on the same responses in another order and orientation (the ceiling after the
    student) reads all of them from the cache, and they equal what TRL computed."""
    from w2s_trl.training.reference import REF_COLUMNS

    rows = labelled_rows(8)
    losses = {}
    for mode in ("per_step", "precomputed"):
        recipe = recipe_for("dpo_weak_rm.yaml", "align.args.max_steps=2",
                            f"align.args.precompute_ref_log_probs={str(mode == 'precomputed').lower()}")
        trainer, _ = make_trainer(recipe, rows, str(tmp_path / mode), "ref", max_length=512)
        trainer.train()
        losses[mode] = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses["precomputed"] == pytest.approx(losses["per_step"], rel=1e-5)

    recipe = recipe_for("dpo_weak_rm.yaml")
    first, _ = make_trainer(recipe, rows, str(tmp_path / "a"), "a", max_length=512, ref_cache_dir=tmp_path / "cache")
    swapped = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in reversed(rows)]
    second, _ = make_trainer(recipe, swapped, str(tmp_path / "b"), "b", max_length=512, ref_cache_dir=tmp_path / "cache")
    assert first.ref_cache_hits == 0 and second.ref_cache_hits == len(rows)
    from w2s_trl.training.reference import sequence_key

    def by_sequence(trainer):  # {token ids of prompt + response: reference log-prob} (rows are length-grouped)
        d = trainer.train_dataset
        return {sequence_key(p, r): v for side, column in zip(("chosen", "rejected"), REF_COLUMNS)
                for p, r, v in zip(d["prompt_ids"], d[f"{side}_ids"], d[column])}  # fmt: skip

    assert by_sequence(second) == by_sequence(first) and len(by_sequence(first)) == 2 * len(rows)
    plain, _ = make_trainer(recipe, swapped, str(tmp_path / "p"), "p", max_length=512)  # TRL's own pass, no cache
    computed, cached = by_sequence(plain), by_sequence(second)
    assert computed.keys() == cached.keys()
    assert [cached[k] for k in computed] == pytest.approx([computed[k] for k in computed], rel=1e-5)
    other = recipe_for("dpo_weak_rm.yaml", "align.args.bf16=true")  # another numeric mode: another cache file
    third, _ = make_trainer(other, rows, str(tmp_path / "c"), "c", max_length=512, ref_cache_dir=tmp_path / "cache")
    assert third.ref_cache_hits == 0 and len(list((tmp_path / "cache").glob("ref_logps-*.json"))) == 2


def test_a_diverging_training_stops_with_a_clear_error(tmp_path):
    """Weights that turn NaN after the first step (what a diverging update leaves): TRL's DPO then logs a loss of 0.0
    but a NaN gradient norm, and the stage stops there with one message; it is never saved as a finished model."""
    from transformers import TrainerCallback

    from w2s_trl.errors import W2SError
    from w2s_trl.rundir import StageWork
    from w2s_trl.trainer_args import run_training

    class PoisonAfterFirstStep(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 1:
                with torch.no_grad():
                    next(p for n, p in model.named_parameters() if "lora_B" in n).fill_(float("nan"))

    recipe = recipe_for("dpo_weak_rm.yaml", "align.args.max_steps=4", "align.args.logging_steps=1")
    trainer, _ = make_trainer(recipe, labelled_rows(16), str(tmp_path / "ck"), "diverge", max_length=512)
    trainer.add_callback(PoisonAfterFirstStep())
    work = StageWork(out=tmp_path / "out", checkpoints=tmp_path / "ck")
    work.out.mkdir()
    with pytest.raises(W2SError, match=r"diverge: the training diverged \(grad_norm nan at step 2\)"):
        run_training(trainer, work, "adapter", "diverge")
    assert not (work.out / "adapter").exists()


def test_a_reward_source_returning_nan_names_itself_and_the_example():
    from w2s_trl.errors import W2SError
    from w2s_trl.rewards.base import RewardSource

    class Broken(RewardSource):
        kind = "broken"

        def score(self, prompts, completions, ids=None, count=None, partners=None):
            return [float("nan") if "bad" in c[-1]["content"] else 1.0 for c in completions]

    rows = [{"id": "r1", "prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "ok"}],
             "rejected": [{"role": "assistant", "content": "bad"}]}]
    with pytest.raises(W2SError, match=r"reward source 'broken' returned nan for r1/rejected"):
        Broken().score_pairs(rows)
    with pytest.raises(W2SError, match=r"returned nan for completion 1 of this batch"):
        Broken()(["q", "q"], ["ok", "bad"])  # TRL's reward-function call (best-of-N, online RL)


def test_length_grouped_training_batches_similar_lengths_in_seeded_order():
    from w2s_trl.trainer_args import length_grouped_training

    lengths = [50, 10, 40, 20, 60, 30, 80, 70, 15, 5]
    rows = [{"i": i} for i in range(len(lengths))]
    out, args = length_grouped_training(rows, lengths, {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2}, 0)
    assert args["train_sampling_strategy"] == "sequential"  # the trainer reads the rows in this order
    assert sorted(r["i"] for r in out) == list(range(10))  # nothing lost or repeated
    # global batch 4: sorted lengths 5 10 15 20 | 30 40 50 60 | 70 80, each batch whole, batches shuffled
    batches = [sorted(lengths[r["i"]] for r in out[k : k + 4]) for k in range(0, 10, 4)]
    assert sorted(batches) == [[5, 10, 15, 20], [30, 40, 50, 60], [70, 80]]
    again, _ = length_grouped_training(rows, lengths, {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 2}, 0)
    assert again == out  # seeded
    orders = {tuple(r["i"] for r in length_grouped_training(rows, lengths, {"per_device_train_batch_size": 4}, s)[0])
              for s in range(8)}
    assert len(orders) > 1  # the batch order follows the seed, so training does not run from short to long
    kept, _ = length_grouped_training(rows, lengths, {"train_sampling_strategy": "random"}, 0)
    assert _["train_sampling_strategy"] == "random"  # a recipe's explicit choice wins
