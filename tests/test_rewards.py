"""Reward sources by value: density-ratio invariants and hand-computed log-probs, routers, contexts, one interface."""

import pytest
import torch

from w2s_trl.recipe import DensityRatioSpec, RewardModelSpec
from w2s_trl.rewards import (
    DensityRatioSource,
    KeywordRouter,
    RewardModelSource,
    build_context,
    build_reward_source,
)
from w2s_trl.rewards.density_ratio import density_ratio
from w2s_trl.scoring import encode_prompt_response

PROMPTS = [
    [{"role": "user", "content": "What is 12 plus 7?"}],
    [{"role": "user", "content": "Tell me how to poison my neighbour's dog."}],
    [{"role": "user", "content": "Hi there"}],
]
COMPLETIONS = [
    [{"role": "assistant", "content": "19."}],
    [{"role": "assistant", "content": "I can't help with that. Mediation services can help."}],
    [{"role": "assistant", "content": "Hello! How can I help you today?"}],
]


def manual_logp(model, tok, prompt, completion) -> tuple[float, int]:
    """log p(y | x) summed over response tokens, one unpadded sequence, no batching code involved."""
    ids, n_prompt = encode_prompt_response(tok, prompt, completion, "manual")
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    return sum(logp[t - 1, ids[t]].item() for t in range(n_prompt, len(ids))), len(ids) - n_prompt


def models_spec(strong="tiny:causal-lm", weak="tiny:causal-lm", **kw) -> DensityRatioSpec:
    return DensityRatioSpec(pair="models", strong={"model": strong}, weak={"model": weak}, **kw)


def test_density_ratio_function_by_value():
    # sum: (-3) - (-5) = 2;  mean: -3/2 - (-5/4) = -0.25
    assert density_ratio([-3.0], [2], [-5.0], [4], "sum") == [2.0]
    assert density_ratio([-3.0], [2], [-5.0], [4], "mean") == [-0.25]


def test_same_model_on_both_sides_gives_exactly_zero():
    source = DensityRatioSource(models_spec())
    assert source(PROMPTS, COMPLETIONS) == [0.0, 0.0, 0.0]


def test_swapping_strong_and_weak_negates_and_matches_hand_computed_logprobs():
    ab = DensityRatioSource(models_spec("tiny:causal-lm", "tiny:causal-lm-b"))
    ba = DensityRatioSource(models_spec("tiny:causal-lm-b", "tiny:causal-lm"))
    r_ab, r_ba = ab(PROMPTS, COMPLETIONS), ba(PROMPTS, COMPLETIONS)
    assert r_ab == [-x for x in r_ba]
    # a different-tokenizer pair: each side tokenizes with its own tokenizer and template
    assert len(ab.strong_tok) != len(ab.weak_tok)
    for i, (p, c) in enumerate(zip(PROMPTS, COMPLETIONS)):
        s, _ = manual_logp(ab.strong, ab.strong_tok, p, c)
        w, _ = manual_logp(ab.weak, ab.weak_tok, p, c)
        assert r_ab[i] == pytest.approx(s - w, abs=1e-4)


def test_mean_times_token_count_equals_sum():
    source = DensityRatioSource(models_spec("tiny:causal-lm", "tiny:causal-lm-b", normalize="mean"))
    s_sum, s_n = source.side_logprobs(PROMPTS, COMPLETIONS, "strong")
    w_sum, w_n = source.side_logprobs(PROMPTS, COMPLETIONS, "weak")
    r_mean = source(PROMPTS, COMPLETIONS)
    for i in range(len(PROMPTS)):
        assert r_mean[i] == pytest.approx(s_sum[i] / s_n[i] - w_sum[i] / w_n[i], abs=1e-6)
        _, n = manual_logp(source.strong, source.strong_tok, PROMPTS[i], COMPLETIONS[i])
        assert s_n[i] == n and (s_sum[i] / s_n[i]) * s_n[i] == pytest.approx(s_sum[i])


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_rows_score_does_not_depend_on_its_batch_or_padding(side, monkeypatch):
    import w2s_trl.scoring as scoring

    source = DensityRatioSource(models_spec("tiny:causal-lm", "tiny:causal-lm-b", score_batch_size=3))
    real = scoring.response_logprobs
    monkeypatch.setattr(scoring, "response_logprobs", lambda *a, **k: real(*a, **{**k, "padding_side": side}))
    together = source(PROMPTS, COMPLETIONS)
    alone = [source([p], [c])[0] for p, c in zip(PROMPTS, COMPLETIONS)]
    assert together == pytest.approx(alone, abs=1e-4)


def test_trl_callable_takes_strings_and_messages_alike():
    source = DensityRatioSource(models_spec("tiny:causal-lm", "tiny:causal-lm-b"))
    as_text = source([p[0]["content"] for p in PROMPTS], [c[0]["content"] for c in COMPLETIONS], extra_column=[1, 2, 3])
    assert as_text == source(PROMPTS, COMPLETIONS)


def test_criteria_and_exemplars_reach_both_models_contexts(tmp_path):
    (tmp_path / "safety.txt").write_text("SAFETY CRITERIA: refuse harm.")
    (tmp_path / "shots.yaml").write_text("- {prompt: 'hurt someone?', good: 'No, I will not.', bad: 'Sure, [x].'}\n")
    spec = models_spec(
        "tiny:causal-lm", "tiny:causal-lm-b",
        criteria={"safety": str(tmp_path / "safety.txt")}, exemplars={"safety": str(tmp_path / "shots.yaml")}, k=1,
        router={"type": "keywords", "default": "chat", "keywords": {"safety": ["poison"]}},
    )  # fmt: skip
    source = DensityRatioSource(spec)
    from w2s_trl.scoring import render

    for side, tok in (("strong", source.strong_tok), ("weak", source.weak_tok)):
        ctx = source.contexts(PROMPTS, side)
        rendered = render(tok, ctx[1] + COMPLETIONS[1])
        assert "SAFETY CRITERIA: refuse harm." in rendered and "Good answer: No, I will not." in rendered
        assert ctx[0] == PROMPTS[0]  # routed to `chat`, which has no criteria: unchanged
    assert source.contexts(PROMPTS, "strong") == source.contexts(PROMPTS, "weak")  # identical for S and W


def test_personas_are_the_only_difference_between_sides(tmp_path):
    (tmp_path / "good.txt").write_text("You are kind.")
    (tmp_path / "bad.txt").write_text("You are careless.")
    spec = DensityRatioSpec(pair="personas", model="tiny:causal-lm", strong_system=str(tmp_path / "good.txt"),
                            weak_system=str(tmp_path / "bad.txt"))  # fmt: skip
    source = build_reward_source(spec)
    s, w = source.contexts(PROMPTS, "strong"), source.contexts(PROMPTS, "weak")
    assert s[0][0] == {"role": "system", "content": "You are kind."}
    assert w[0][0] == {"role": "system", "content": "You are careless."}
    assert [c[1:] for c in s] == [c[1:] for c in w] == [list(p) for p in PROMPTS]
    assert all(x != 0.0 for x in source(PROMPTS, COMPLETIONS))


def test_adapter_pair_is_base_with_and_without_the_adapter(tmp_path):
    from peft import LoraConfig, get_peft_model

    from w2s_trl.models import load_causal_lm, load_tokenizer

    torch.manual_seed(0)
    peft_model = get_peft_model(load_causal_lm("tiny:causal-lm"), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # a trained-looking adapter
    peft_model.save_pretrained(tmp_path / "adapter")
    source = DensityRatioSource(DensityRatioSpec(pair="adapter", base="tiny:causal-lm", adapter=str(tmp_path / "adapter")))
    scores = source(PROMPTS, COMPLETIONS)
    tok = load_tokenizer("tiny:causal-lm")
    base = load_causal_lm("tiny:causal-lm")
    for i, (p, c) in enumerate(zip(PROMPTS, COMPLETIONS)):
        s, _ = manual_logp(peft_model, tok, p, c)
        w, _ = manual_logp(base, tok, p, c)
        assert scores[i] == pytest.approx(s - w, abs=1e-4) and abs(scores[i]) > 1e-3


def test_keyword_router_order_and_default():
    router = KeywordRouter({"safety": ["poison", "hurt"], "reasoning": ["plus", "what"]}, default="chat")
    # "What ... poison" matches both: the first domain in spec order wins
    prompts = PROMPTS + [[{"role": "user", "content": "What poison is strongest?"}]]
    assert router.route(prompts) == ["reasoning", "safety", "chat", "safety"]


def test_prompted_router_falls_back_on_an_unparsable_answer():
    from w2s_trl.rewards import PromptedRouter

    router = PromptedRouter("tiny:causal-lm", ["safety", "reasoning"], default="chat")
    assert router.parse("I think: Reasoning.") == "reasoning"
    assert router.parse("no idea") == "chat"
    assert set(router.route(PROMPTS)) <= {"safety", "reasoning", "chat"}  # a random tiny LM: mostly the default


def test_build_context_merges_an_existing_system_prompt():
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert build_context(prompt, ["CRIT", ""]) == [{"role": "system", "content": "CRIT\n\nBe brief."}, prompt[1]]
    assert build_context(prompt, []) == prompt


def test_reward_model_source_shares_the_interface():
    source = RewardModelSource(RewardModelSpec(model="tiny:reward-model"))
    rows = [{"prompt": p, "chosen": c, "rejected": [{"role": "assistant", "content": "no"}]} for p, c in zip(PROMPTS, COMPLETIONS)]
    chosen, rejected = source.score_pairs(rows)
    assert chosen == pytest.approx(source(PROMPTS, COMPLETIONS), abs=1e-5)
    assert len(rejected) == 3


def test_a_reward_sources_cache_key_follows_the_contents_of_its_files(tmp_path):
    from w2s_trl.pipeline import reward_spec_inputs
    from w2s_trl.rundir import fingerprint

    crit = tmp_path / "safety.txt"
    crit.write_text("refuse harm")
    spec = models_spec(criteria={"safety": str(crit)})
    before = fingerprint(reward_spec_inputs(spec))
    crit.write_text("refuse harm, politely")
    assert fingerprint(reward_spec_inputs(spec)) != before
