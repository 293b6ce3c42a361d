"""Online RL with reward sources (SCIENCE.md 5): two GRPO and two RLOO steps on tiny models with two reward sources
(a reward model whose tokenizer is not the policy's, and a weak policy's log-probs); the rewards TRL logs per
objective equal what the sources return for the same completions."""

import pytest
import torch


class Recording:
    """Wraps a NamedReward and keeps every call's completions and returned rewards."""

    def __init__(self, fn):
        self.fn, self.__name__, self.calls = fn, fn.__name__, []

    def __call__(self, prompts, completions, **columns):
        out = self.fn(prompts, completions, **columns)
        self.calls.append((list(prompts), list(completions), out))
        return out


def sources():
    from w2s_trl.rewards import build_reward_source
    from w2s_trl.rewards.reward_model import RewardModelSource, RewardModelSpec
    from w2s_trl.rewards.weak_policy import WeakPolicySpec

    torch.manual_seed(0)
    rm = RewardModelSource(RewardModelSpec(type="reward_model", model="tiny:reward-model", max_length=256))
    policy = build_reward_source(WeakPolicySpec(model="tiny:causal-lm-b", normalize="mean"))
    return {"harmless": rm, "helpful": policy}


@pytest.mark.parametrize("kind", ["grpo", "rloo"])
def test_two_steps_log_each_objective_as_the_sources_score_it(kind, tmp_path):
    from datasets import Dataset
    from peft import LoraConfig

    from w2s_trl.models import load_causal_lm, load_tokenizer
    from w2s_trl.trainer_args import build_trl_config
    from w2s_trl.training.online import reward_funcs

    srcs = sources()
    funcs = [Recording(f) for f in reward_funcs(srcs)]
    prompts = Dataset.from_list([{"prompt": [{"role": "user", "content": f"tell me about item {i}"}]}
                                 for i in range(4)])  # fmt: skip
    args = {"per_device_train_batch_size": 4, "num_generations": 2, "max_completion_length": 8, "max_steps": 2,
            "logging_steps": 1, "reward_weights": [1.0, 0.5], "learning_rate": 1e-3, "bf16": False}  # fmt: skip
    config = build_trl_config(kind, args, str(tmp_path), 0, [], f"online-{kind}")
    from trl import GRPOTrainer, RLOOTrainer

    Trainer = {"grpo": GRPOTrainer, "rloo": RLOOTrainer}[kind]
    trainer = Trainer(model=load_causal_lm("tiny:causal-lm"), reward_funcs=funcs, args=config, train_dataset=prompts,
                      processing_class=load_tokenizer("tiny:causal-lm", padding_side="left"),
                      peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))  # fmt: skip
    trainer.train()
    logs = [h for h in trainer.state.log_history if "rewards/harmless/mean" in h]
    assert len(logs) == 2
    for name, fn, src in zip(("harmless", "helpful"), funcs, srcs.values()):
        assert len(fn.calls) == 2
        for log, (p, c, returned) in zip(logs, fn.calls):
            assert log[f"rewards/{name}/mean"] == pytest.approx(sum(returned) / len(returned), abs=1e-4)
            again = src(p, c)  # the same completions scored again, outside the trainer
            assert again == pytest.approx(returned, abs=1e-4)
    with pytest.raises(ValueError, match="could not score 1 of 2 sampled completions"):
        from w2s_trl.training.online import NamedReward

        NamedReward("harmless", lambda p, c: [1.0, None])(["a", "b"], ["c", "d"])
