"""SimPO through TRL's CPO trainer: the loss on a fixed batch against the formula, by value (SCIENCE.md 5).

loss = mean_i -log sigma(beta * (mean_logp(y_w,i) - mean_logp(y_l,i)) - gamma), with mean_logp the per-token mean of
the response tokens' log-probs and gamma TRL's absolute `simpo_gamma`.
"""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from w2s_trl.align import make_trainer
from w2s_trl.recipe import load_recipe
from w2s_trl.testbed import generate_testbed

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "simpo_density_ratio.yaml"


def mean_response_logp(model, input_ids, attention_mask, labels) -> torch.Tensor:
    """Per-row mean log p of the label tokens (labels -100 on prompt and padding), computed from scratch."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    logp = torch.log_softmax(logits[:, :-1], -1)
    targets = labels[:, 1:]
    mask = targets != -100
    token_logp = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (token_logp * mask).sum(-1) / mask.sum(-1)


def test_simpo_loss_matches_the_formula(tmp_path):
    beta, gamma = 2.5, 0.7
    recipe = load_recipe(RECIPE, [f"align.args.beta={beta}", f"align.args.simpo_gamma={gamma}", "align.args.bf16=false",
                                  "tracking.report_to=[]"], smoke=True)  # fmt: skip
    rows = generate_testbed(8, seed=5)
    trainer, _ = make_trainer(recipe, rows, str(tmp_path), "simpo-test")
    assert trainer.loss_type == "simpo" and trainer.cpo_alpha == 0.0
    assert trainer.beta == beta and trainer.simpo_gamma == gamma
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model
    model.eval()  # no dropout: the same numbers twice
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch).item()
        chosen = mean_response_logp(model, batch["chosen_input_ids"], batch["chosen_attention_mask"], batch["chosen_labels"])
        rejected = mean_response_logp(model, batch["rejected_input_ids"], batch["rejected_attention_mask"],
                                      batch["rejected_labels"])  # fmt: skip
    expected = (-F.logsigmoid(beta * (chosen - rejected) - gamma)).mean().item()
    assert loss == pytest.approx(expected, rel=1e-4)
    # and the formula is not trivially satisfied: a different gamma gives a different loss
    assert expected != pytest.approx((-F.logsigmoid(beta * (chosen - rejected))).mean().item(), rel=1e-3)
