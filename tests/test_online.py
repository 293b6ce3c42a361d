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


class Constant:
    """A reward source returning fixed scores (for the pure glue)."""

    def __init__(self, *scores):
        self.scores = list(scores)

    def __call__(self, prompts, completions, **columns):
        return self.scores[: len(completions)]


def test_objective_rewards_reproduce_the_multi_objective_total():
    from w2s_trl.rewards import MultiObjectiveSource
    from w2s_trl.rewards.multi_objective import MultiObjectiveSpec
    from w2s_trl.training.online import WeightedSum, objective_rewards

    spec = MultiObjectiveSpec.model_validate({"aggregation": "normalize_then_sum", "objectives": {
        "helpful": {"weight": 2.0, "reward": {"type": "gold"}}, "harmless": {"weight": 0.5, "reward": {"type": "gold"}},
        "honest": {"weight": 0.0, "reward": {"type": "gold"}}}})  # fmt: skip
    stats = {"helpful": {"mean": 1.0, "std": 2.0}, "harmless": {"mean": 0.0, "std": 4.0}, "honest": {"mean": 0, "std": 1}}
    source = MultiObjectiveSource(spec, {"helpful": Constant(3.0, 1.0), "harmless": Constant(4.0, -8.0),
                                         "honest": Constant(9.0, 9.0)}, stats)  # fmt: skip
    funcs, weights = objective_rewards(source)
    # weight 0 is kept: logged and scored, not paid for
    assert [f.__name__ for f in funcs] == ["helpful", "harmless", "honest"] and weights == [2.0, 0.5, 0.0]
    assert funcs[0](["p", "p"], ["a", "b"]) == [1.0, 0.0]  # (3 - 1) / 2, (1 - 1) / 2
    total = WeightedSum(funcs, weights)
    assert total(["p", "p"], ["a", "b"]) == [2 * 1.0 + 0.5 * 1.0, 2 * 0.0 + 0.5 * -2.0]
    assert total.last == {"rewards/helpful/mean": 0.5, "rewards/harmless/mean": -0.5, "rewards/honest/mean": 9.0}
    single, w = objective_rewards(Constant(1.0))
    assert [f.__name__ for f in single] == ["weak"] and w == [1.0]


def test_prompts_are_distinct_and_cut_from_the_left():
    from w2s_trl.models import load_tokenizer
    from w2s_trl.training.online import generation_length, online_prompts

    tok = load_tokenizer("tiny:causal-lm")
    long_history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " + "word " * 30}
                    for i in range(6)] + [{"role": "user", "content": "the question"}]  # fmt: skip
    rows = [{"id": "a", "prompt": long_history}, {"id": "b", "prompt": long_history},
            {"id": "c", "prompt": [{"role": "user", "content": "short"}]}]  # fmt: skip
    out, count = online_prompts(rows, tok, 60, "student")
    assert [p["id"] for p in out] == ["a", "c"]  # one prompt, asked twice, is sampled once
    assert generation_length(tok)(out[0]["prompt"]) <= 60 and out[0]["prompt"][-1]["content"] == "the question"
    assert count.as_dict()["truncated"] == 1 and count.as_dict()["dropped"] == 0


def test_rloo_runs_the_multi_objective_recipe(tmp_path):
    """`align.trainer: rloo` on the GRPO recipe (the same arguments are RLOOConfig's): each objective logged."""
    import json
    from pathlib import Path

    from w2s_trl.cli import train_main

    recipe = Path(__file__).resolve().parent.parent / "recipes" / "grpo_multi_objective.yaml"
    assert train_main([str(recipe), "--smoke", f"run.output_dir={tmp_path}", "align.trainer=rloo",
                       "tracking.report_to=[]"]) == 0  # fmt: skip
    root = tmp_path / "grpo_multi_objective-smoke"
    history = [json.loads(x) for x in (root / "student" / "history.jsonl").read_text().splitlines()]
    logged = [h for h in history if "rewards/helpful/mean" in h and "rewards/harmless/mean" in h]
    assert len(logged) == 2
    online = json.loads((root / "metrics.json").read_text())["online"]
    assert set(online["rewards"]) == {"helpful", "harmless"}
