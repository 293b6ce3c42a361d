"""Stage `weak`: train the weak reward model on `weak_train` ground truth with `trl.RewardTrainer`."""

from __future__ import annotations

from w2s_trl.recipe import RewardModelSpec
from w2s_trl.rundir import StageWork
from w2s_trl.scoring import reward_text


def reward_training_rows(tokenizer, rows: list[dict]) -> list[dict]:
    """Implicit-prompt text pairs, rendered exactly as `scoring.reward_scores` renders them."""
    return [
        {"chosen": reward_text(tokenizer, r["prompt"] + r["chosen"]), "rejected": reward_text(tokenizer, r["prompt"] + r["rejected"])}
        for r in rows
    ]


def train_reward_model(spec: RewardModelSpec, rows: list[dict], work: StageWork, seed: int, report_to: list[str],
                       run_name: str) -> dict:  # fmt: skip
    """Train, save to `work.out/model`, and return what stage.json should record."""
    from datasets import Dataset
    from transformers import set_seed
    from trl import RewardTrainer

    from w2s_trl.models import load_reward_model
    from w2s_trl.trainer_args import build_trl_config, run_training

    set_seed(seed)  # the new reward head is initialised at load time
    model, tok = load_reward_model(spec.model, spec.trust_remote_code)
    args = {"max_length": spec.max_length, **spec.train}
    config = build_trl_config("reward", args, str(work.checkpoints), seed, report_to, run_name)
    trainer = RewardTrainer(
        model=model, args=config, train_dataset=Dataset.from_list(reward_training_rows(tok, rows)), processing_class=tok
    )
    return run_training(trainer, work, "model", run_name)
