"""TRL's fused LM head on a CPU through `compact_on_cpu`: only labelled positions go through the head, with the
per-token outputs and gradients of TRL's every-position path; other forwards are untouched."""

import pytest
import torch

from w2s_trl.training.fused_head import compact_on_cpu

FIELDS = ("log_probs", "entropy", "mean_logits", "is_top1")  # what TRL's DPO asks its fused head for


def fused_model():
    from tests.test_shared_prompt import fused_lora_model

    return fused_lora_model(FIELDS)


@pytest.fixture(scope="module")
def batch():
    """Two right-padded rows: 7 and 5 prompt positions without labels, 4 and 3 labelled, 0 and 3 padding."""
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 200, (2, 11), generator=g)
    attention = torch.ones_like(input_ids)
    attention[1, 8:] = 0
    labels = input_ids.clone()
    labels[0, :7] = -100
    labels[1, :5] = -100
    labels[1, 8:] = -100
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


@pytest.fixture
def projected(monkeypatch):
    """Rows that go through the LM head, per call of TRL's chunked log-prob function."""
    import trl.trainer.utils as trl_utils

    seen, apply = [], trl_utils._ChunkedLogProbFunction.apply

    def spy(hidden, *args):
        seen.append(hidden.shape[0])
        return apply(hidden, *args)

    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply", spy)
    return seen


def run(model, batch):
    model.zero_grad()
    out = model(**batch, fused_lm_head=True, use_cache=False)
    (out.log_probs.sum() + out.entropy.sum()).backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_compact_head_projects_only_labelled_positions_with_the_same_values_and_gradients(batch, projected):
    full_model, compact_model = fused_model(), fused_model()
    full, full_grads = run(full_model, batch)
    assert compact_on_cpu(compact_model) and compact_on_cpu(compact_model)  # idempotent
    compact, compact_grads = run(compact_model, batch)
    labelled = int((batch["labels"][:, 1:] != -100).sum())  # the head scores position t for label t + 1
    assert labelled == 4 + 3
    assert projected == [2 * 10, labelled]
    mask = batch["labels"][:, 1:] != -100
    for field in FIELDS:
        a, b = getattr(full, field), getattr(compact, field)
        assert a.shape == b.shape == mask.shape
        if field == "is_top1":
            assert torch.equal(a[mask], b[mask])
        else:
            torch.testing.assert_close(a[mask], b[mask], rtol=1e-5, atol=1e-6)
            assert torch.all(b[~mask] == 0)  # unlabelled positions: zeros, as on TRL's Triton path
    assert full_grads.keys() == compact_grads.keys() and full_grads
    for name in full_grads:
        torch.testing.assert_close(full_grads[name], compact_grads[name], rtol=1e-4, atol=1e-6)


def test_other_forwards_and_other_models_are_untouched(batch, projected):
    import trl.trainer.utils as trl_utils

    model, other = fused_model(), fused_model()
    compact_on_cpu(model)
    with torch.no_grad():  # a plain forward (generation, SimPO's logits) goes straight to the model
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        expected = other(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(logits, expected)
    run(other, batch)  # a model that was not wrapped keeps TRL's every-position path on a CPU
    assert projected == [20]
    assert not trl_utils._use_triton(torch.device("cpu"))  # outside a wrapped forward TRL's own answer


def test_dpo_training_and_its_reference_pass_score_only_labelled_positions(tmp_path, projected):
    """Through make_trainer: the reference log-probs DPO precomputes in its constructor and the training steps (packed
    prompt-once rows, TRL's shift_labels) both project only response positions."""
    from tests.test_trainers import labelled_rows, recipe_for
    from w2s_trl.align import make_trainer

    recipe = recipe_for("dpo_weak_rm.yaml", "align.args.max_steps=1", "align.args.per_device_train_batch_size=4")
    trainer, _ = make_trainer(recipe, labelled_rows(4), str(tmp_path), "t", max_length=256)
    ds = trainer.train_dataset
    responses = sum(len(c) + len(r) for c, r in zip(ds["chosen_ids"], ds["rejected_ids"]))  # labelled positions
    prompts = sum(len(p) for p in ds["prompt_ids"])
    assert prompts > 0 and sum(projected) == responses  # the reference pass: 4 pairs in one batch
    projected.clear()
    trainer.train()
    assert sum(projected) == responses
