"""Stage `align` (student and ceiling): preference-train the strong model with LoRA through TRL.

- `dpo`: `trl.DPOTrainer`; the reference is the base model with the LoRA adapter disabled (SCIENCE.md 5).
- `simpo`: `trl.experimental.cpo.CPOTrainer` with loss_type="simpo", cpo_alpha=0.0, the recipe's beta and simpo_gamma
  (the absolute margin gamma): loss = -log sigma(beta * (mean_logp(y_w) - mean_logp(y_l)) - gamma). Reference-free.
The student trains on the labels of `w2s_train`, the ceiling on its ground truth: same code, other rows.
"""

from __future__ import annotations

from pathlib import Path

from w2s_trl.recipe import Recipe
from w2s_trl.rundir import StageWork

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")


def lora_config(recipe: Recipe):
    from peft import LoraConfig

    lora = recipe.strong.lora
    return LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )  # fmt: skip


def load_strong_base(recipe: Recipe):
    from w2s_trl.models import load_causal_lm, load_tokenizer

    strong = recipe.strong
    model = load_causal_lm(strong.model, strong.quantization, strong.trust_remote_code)
    if strong.quantization.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model, load_tokenizer(strong.model, strong.trust_remote_code)


def make_trainer(recipe: Recipe, rows: list[dict], output_dir: str, run_name: str, model=None, tokenizer=None):
    """The TRL trainer for `align.trainer`, ready to `.train()` (also used by bench/align_step.py)."""
    from datasets import Dataset
    from transformers import set_seed

    from w2s_trl.trainer_args import build_trl_config

    set_seed(recipe.run.seed)  # LoRA weights are initialised when the trainer wraps the model, before its own seeding
    if model is None:
        model, tokenizer = load_strong_base(recipe)
    dataset = Dataset.from_list([{k: r[k] for k in PREFERENCE_COLUMNS} for r in rows])
    config = build_trl_config(recipe.align.trainer, recipe.align.trl_args(), output_dir, recipe.run.seed,
                              recipe.tracking.report_to, run_name)  # fmt: skip
    if recipe.align.trainer == "simpo":
        from trl.experimental.cpo import CPOTrainer as Trainer
    else:
        from trl import DPOTrainer as Trainer
    return Trainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=lora_config(recipe)
    )


def train_policy(recipe: Recipe, rows: list[dict], work: StageWork, run_name: str) -> dict:
    from w2s_trl.trainer_args import run_training

    return run_training(make_trainer(recipe, rows, str(work.checkpoints), run_name), work, "adapter", run_name)


def adapter_dir(stage_dir: Path) -> Path:
    return stage_dir / "adapter"
