"""Test session: offline, a private model cache, tiny models built locally from a config."""

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["WANDB_MODE"] = "disabled"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("W2S_TRL_CACHE", str(Path(__file__).resolve().parent.parent / ".cache" / "test-models"))

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_lm():
    from w2s_trl.models import load_causal_lm, load_tokenizer

    return load_causal_lm("tiny:causal-lm"), load_tokenizer("tiny:causal-lm")


@pytest.fixture(scope="session")
def tiny_rm():
    from w2s_trl.models import load_reward_model

    return load_reward_model("tiny:reward-model")
