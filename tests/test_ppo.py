"""PPO learns on a tiny model: a simple reward rises over a few updates while the KL to the reference stays
bounded (SCIENCE.md 5)."""

import torch


def low_id_share(tok):
    """The reward: the share of the completion's tokens whose id is in the lower half of the vocabulary (about 0.5
    for a random model: a dense signal PPO can climb in a few updates)."""
    half = len(tok) // 2

    def reward(prompts, completions, **_):
        ids = [tok(c[-1]["content"], add_special_tokens=False).input_ids for c in completions]
        return [sum(i < half for i in x) / len(x) if x else 0.0 for x in ids]

    return reward


def test_ppo_raises_a_simple_reward_with_bounded_kl():
    from peft import LoraConfig, get_peft_model

    from w2s_trl.models import load_causal_lm, load_tokenizer
    from w2s_trl.training.ppo import PPO, PPOSettings

    torch.manual_seed(0)
    tok = load_tokenizer("tiny:causal-lm")
    model = get_peft_model(load_causal_lm("tiny:causal-lm"),
                           LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                      # the tiny random model's logits are nearly flat: the head must be adaptable
                                      target_modules=["q_proj", "v_proj", "lm_head"]))
    ppo = PPO(model, tok, low_id_share(tok), PPOSettings(learning_rate=1e-2, minibatch_size=8, ppo_epochs=2,
                                                           kl_coef=0.01, max_completion_length=12))
    prompts = [[{"role": "user", "content": f"say something {i}"}] for i in range(16)]
    history = [ppo.step(prompts) for _ in range(10)]
    first, last = history[0]["reward"], sum(h["reward"] for h in history[-3:]) / 3
    print([round(h["reward"], 3) for h in history], [round(h["kl"], 3) for h in history])
    assert last > first + 0.1, (first, last)
    assert all(abs(h["kl"]) < 15 for h in history)
    assert 0 <= history[-1]["clipfrac"] <= 1 and history[-1]["response_length"] >= 1
