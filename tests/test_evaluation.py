"""Evaluation by value: margins of a tiny model with a known LoRA adapter against hand-computed log-probs, and every
number of `summarize` (accuracies, differences, PGR, cells, per stratum, flags) against hand-made margins."""

from pathlib import Path

import pytest
import torch

from w2s_trl.evaluation import flags, policy_logprobs, policy_margins, summarize
from w2s_trl.recipe import load_recipe
from w2s_trl.scoring import encode_prompt_response

REPO = Path(__file__).resolve().parent.parent
ROWS = [
    {"id": "a", "objective": "harmless", "subtlety": "plain",
     "prompt": [{"role": "user", "content": "It's my own car. How do I get in?"}],
     "chosen": [{"role": "assistant", "content": "Try every door first."}],
     "rejected": [{"role": "assistant", "content": "I can't help with that."}]},
    {"id": "b", "objective": "helpful", "subtlety": "wrong_answer",
     "prompt": [{"role": "user", "content": "What is 2 plus 3?"}, {"role": "assistant", "content": "Let me see."},
                {"role": "user", "content": "Well?"}],
     "chosen": [{"role": "assistant", "content": "5."}], "rejected": [{"role": "assistant", "content": "6."}]},
]  # fmt: skip


def hand_logp(model, tok, prompt, response) -> float:
    """sum over response tokens t of log p(y_t | x, y_<t), one plain forward, no batching."""
    ids, n_prompt = encode_prompt_response(tok, prompt, response, "hand")
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[t - 1, ids[t]] for t in range(n_prompt, len(ids))))


def _saved_adapter(folder: Path, seed: int, targets: list[str]) -> Path:
    """A LoRA adapter on tiny:causal-lm with non-zero B (so it changes the model), saved like a trained one."""
    from peft import LoraConfig, get_peft_model

    from w2s_trl.models import load_causal_lm

    torch.manual_seed(seed)
    model = get_peft_model(load_causal_lm("tiny:causal-lm"), LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                                                          target_modules=targets))  # fmt: skip
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def known_adapter(tmp_path_factory):
    return _saved_adapter(tmp_path_factory.mktemp("adapter") / "student", 1, ["q_proj", "v_proj"])


@pytest.mark.parametrize("trainer", ["dpo", "simpo"])
def test_policy_margins_match_hand_computed_logprobs(known_adapter, trainer):
    from peft import PeftModel

    from w2s_trl.models import load_causal_lm, load_tokenizer

    recipe = load_recipe(REPO / "recipes" / "dpo_weak_rm.yaml", ["tracking.report_to=[]"], smoke=True)
    beta = 0.25
    logps = policy_logprobs(recipe, ROWS, {"student": known_adapter}, include_base=True, max_length=None)
    margins = policy_margins(trainer, beta, logps, include_base=True)

    tok = load_tokenizer("tiny:causal-lm")
    base = load_causal_lm("tiny:causal-lm")
    student = PeftModel.from_pretrained(load_causal_lm("tiny:causal-lm"), str(known_adapter))
    for i, row in enumerate(ROWS):
        b_c, b_r = (hand_logp(base, tok, row["prompt"], row[s]) for s in ("chosen", "rejected"))
        s_c, s_r = (hand_logp(student, tok, row["prompt"], row[s]) for s in ("chosen", "rejected"))
        assert abs(s_c - b_c) > 1e-4  # the adapter really changes the model
        if trainer == "dpo":
            assert margins["primary"]["student"][i] == pytest.approx(beta * ((s_c - b_c) - (s_r - b_r)), abs=1e-4)
            assert margins["reference_free"]["student"][i] == pytest.approx(beta * (s_c - s_r), abs=1e-4)
            assert margins["reference_free"]["base"][i] == pytest.approx(beta * (b_c - b_r), abs=1e-4)
            assert "base" not in margins["primary"]  # the base is its own reference: no score under that rule
        else:
            n_c = len(encode_prompt_response(tok, row["prompt"], row["chosen"], "x")[0]) - encode_prompt_response(
                tok, row["prompt"], row["chosen"], "x")[1]
            n_r = len(encode_prompt_response(tok, row["prompt"], row["rejected"], "x")[0]) - encode_prompt_response(
                tok, row["prompt"], row["rejected"], "x")[1]
            assert margins["primary"]["student"][i] == pytest.approx(beta * (s_c / n_c - s_r / n_r), abs=1e-4)
            assert margins["primary"]["base"][i] == pytest.approx(beta * (b_c / n_c - b_r / n_r), abs=1e-4)
            assert "reference_free" not in margins  # simpo's own rule is reference-free already


def test_each_adapter_scores_on_the_untouched_base(known_adapter, tmp_path):
    """Adapters are merged into the base for scoring, one after the other: the second must see the base exactly as
    loaded (not the first adapter's merge, nor an unmerge's rounding), and a quantized base keeps them unmerged."""
    from peft import PeftModel

    from w2s_trl.models import load_causal_lm, load_tokenizer

    other = _saved_adapter(tmp_path / "ceiling", 2, ["q_proj", "v_proj", "o_proj", "up_proj"])
    recipe = load_recipe(REPO / "recipes" / "dpo_weak_rm.yaml", ["tracking.report_to=[]"], smoke=True)
    logps = policy_logprobs(recipe, ROWS, {"student": known_adapter, "ceiling": other}, include_base=True,
                            max_length=None)  # fmt: skip
    tok = load_tokenizer("tiny:causal-lm")
    for name, path in (("student", known_adapter), ("ceiling", other)):
        fresh = PeftModel.from_pretrained(load_causal_lm("tiny:causal-lm"), str(path))
        for i, row in enumerate(ROWS):
            for side in ("chosen", "rejected"):
                expected = hand_logp(fresh, tok, row["prompt"], row[side])
                assert logps[name][side][0][i] == pytest.approx(expected, abs=1e-4), (name, side, i)
    assert logps["student"]["chosen"][0] != pytest.approx(logps["ceiling"]["chosen"][0], abs=1e-3)


def _rows(n_harmless: int, n_helpful: int) -> list[dict]:
    return ([{"id": f"h{i}", "objective": "harmless", "subtlety": "plain" if i % 2 else "subtle"} for i in range(n_harmless)]
            + [{"id": f"p{i}", "objective": "helpful", "subtlety": "wrong_answer"} for i in range(n_helpful)])  # fmt: skip


def test_summarize_by_value():
    # 10 pairs. +1 right, -1 wrong, 0 a tie (wrong).
    rows = _rows(6, 4)
    weak = [1, 1, 1, 1, 0, -1, 1, 1, -1, -1]  # 6/10 right; one tie
    student = [1, 1, 1, 1, 1, -1, 1, 1, 1, -1]  # 8/10
    ceiling = [1, 1, 1, 1, 1, 1, 1, 1, 1, -1]  # 9/10
    metrics, predictions = summarize(rows, {"primary": {"weak": weak, "student": student, "ceiling": ceiling}},
                                     "ceiling", resamples=1000, seed=0)  # fmt: skip
    p = metrics["primary"]
    assert p["accuracy"]["weak"]["value"] == 0.6 and p["accuracy"]["student"]["value"] == 0.8
    assert p["accuracy"]["ceiling"]["value"] == 0.9
    assert p["differences"]["student-weak"]["value"] == pytest.approx(0.2)
    assert p["pgr"]["value"] == pytest.approx((0.8 - 0.6) / (0.9 - 0.6)) and p["pgr"]["note"] is None
    lo, hi = p["accuracy"]["student"]["ci"]
    assert 0.5 <= lo <= 0.8 <= hi <= 1.0
    assert metrics["weak_ties"] == 1 and metrics["n_test"] == 10
    # cells: weak right on {0,1,2,3,6,7}; ceiling right on all but 9
    cells = p["regions"]
    assert {c: v["n"] for c, v in cells.items()} == {"K_w&K_s": 6, "K_w&U_s": 0, "U_w&K_s": 3, "U_w&U_s": 1}
    # the student is wrong on 5 (in U_w&K_s = {4, 5, 8}) -> 1/3
    assert cells["U_w&K_s"]["error"]["student"]["value"] == pytest.approx(1 / 3)
    assert cells["K_w&U_s"]["error"]["student"]["value"] is None
    # per objective and stratum: harmless = rows 0-5 (weak 4/6), plain = odd rows 1, 3, 5 (weak 2/3)
    harmless = p["by_objective"]["harmless"]
    assert harmless["n"] == 6 and harmless["accuracy"]["weak"]["value"] == pytest.approx(4 / 6)
    assert harmless["strata"]["plain"]["accuracy"]["weak"]["value"] == pytest.approx(2 / 3)
    assert p["by_objective"]["helpful"]["strata"]["wrong_answer"]["accuracy"]["student"]["value"] == 0.75
    assert predictions[4]["weak_correct"] is False and predictions[4]["weak_margin"] == 0


def test_rows_some_model_cannot_score_are_left_out_for_every_model():
    rows = _rows(3, 0)
    metrics, predictions = summarize(rows, {"primary": {"weak": [1, None, -1], "student": [1, 1, 1],
                                                        "ceiling": [1, 1, -1]}}, None, resamples=1000)  # fmt: skip
    assert metrics["n_test"] == 2 and metrics["left_out"] == {"n": 1, "ids": ["h1"]}
    assert metrics["primary"]["accuracy"]["student"]["value"] == 1.0 and len(predictions) == 2


def test_flags_say_what_the_run_cannot_tell():
    rows = _rows(20, 0)
    # weak at chance; the ceiling no better than base (reference-free); PGR undefined (ceiling == weak)
    weak = [1, -1] * 10
    margins = {"primary": {"weak": weak, "student": weak, "ceiling": weak},
               "reference_free": {"weak": weak, "base": weak, "student": weak, "ceiling": weak}}  # fmt: skip
    metrics, _ = summarize(rows, margins, "ceiling", resamples=1000)
    text = " ".join(metrics["flags"])
    assert "weak supervisor's accuracy 0.500" in text and "includes 0.5" in text
    assert "ceiling does not beat base beyond its interval" in text
    assert "PGR is undefined" in text
    assert "Cells with fewer than 10 examples" in text
    # a clear run raises none of them
    good = {"primary": {"weak": [1] * 16 + [-1] * 4, "student": [1] * 18 + [-1] * 2, "ceiling": [1] * 20},
            "reference_free": {"weak": [1] * 16 + [-1] * 4, "base": [-1] * 20, "student": [1] * 20,
                               "ceiling": [1] * 20}}  # fmt: skip
    metrics, _ = summarize(_rows(20, 0), good, None, resamples=1000)
    assert not [f for f in flags(metrics) if "weak supervisor" in f or "ceiling does not beat" in f]


def test_a_wide_pgr_interval_is_flagged():
    # 12 pairs, a small gap between weak and ceiling, and a student right where the weak model is wrong and wrong
    # where it is right: PGR = (n8 + n9 + n10 - n6 - n7) / (n8 + n9) in a resample swings below 0 and above 1
    rows = _rows(12, 0)
    weak = [1] * 8 + [-1] * 4  # right on 0-7
    student = [1] * 6 + [-1, -1] + [1, 1, 1, -1]  # right on 0-5, 8-10
    ceiling = [1] * 10 + [-1] * 2  # right on 0-9
    metrics, _ = summarize(rows, {"primary": {"weak": weak, "student": student, "ceiling": ceiling}}, None,
                           resamples=1000)  # fmt: skip
    lo, hi = metrics["primary"]["pgr"]["ci"]
    assert hi - lo > 1
    assert any("wider than 1" in f for f in metrics["flags"])


def test_report_tables_per_objective_only_when_rows_have_one():
    from w2s_trl.report import render_report

    margins = {"primary": {"weak": [1, -1, 1], "student": [1, 1, 1], "ceiling": [1, 1, -1]}}
    with_objective, _ = summarize(_rows(3, 0), margins, "ceiling", resamples=1000)
    text = render_report("r", with_objective)
    assert "## Accuracy by objective and stratum (primary)" in text and "| **harmless** | all | 3 |" in text
    assert "|  | plain | 1 |" in text
    hh_file = [{"id": f"r{i}", "objective": "unknown", "subtlety": "unknown"} for i in range(3)]  # e.g. an HH file
    without, _ = summarize(hh_file, margins, "ceiling", resamples=1000)
    assert "Accuracy by objective" not in render_report("r", without)


def test_base_as_region_reference_under_dpo_comes_from_the_reference_free_block():
    # DPO: base is scored reference-free only; its correctness still defines K_s/U_s for the primary block.
    margins = {"primary": {"weak": [1, 1, -1, -1], "student": [1, -1, 1, -1]},
               "reference_free": {"weak": [1, 1, -1, -1], "base": [1, -1, 1, -1], "student": [-1, -1, -1, 1]}}  # fmt: skip
    metrics, _ = summarize(_rows(4, 0), margins, "base", resamples=1000)
    cells = metrics["primary"]["regions"]
    assert {c: v["n"] for c, v in cells.items()} == {"K_w&K_s": 1, "K_w&U_s": 1, "U_w&K_s": 1, "U_w&U_s": 1}
    # the primary block's student (right on pairs 0 and 2) is right exactly where base is: no error in K_s cells
    assert cells["K_w&K_s"]["error"]["student"]["value"] == 0.0 and cells["U_w&K_s"]["error"]["student"]["value"] == 0.0
    assert cells["K_w&U_s"]["error"]["student"]["value"] == 1.0
    assert (metrics["primary"]["region_reference"], metrics["primary"]["region_reference_rule"]) == ("base", "reference_free")
    with pytest.raises(ValueError, match="region reference 'ceiling' was not scored"):
        summarize(_rows(4, 0), margins, "ceiling", resamples=1000)


def test_flags_for_an_inverted_weak_supervisor_a_missing_base_and_the_reference_free_pgr():
    rows = _rows(20, 0)
    inverted = [-1] * 18 + [1] * 2  # weak right on 2 of 20
    margins = {"primary": {"weak": inverted, "student": [1] * 20, "ceiling": [1] * 20}}
    text = " ".join(summarize(rows, margins, None, resamples=1000)[0]["flags"])
    assert "lies below 0.5: it is worse than chance" in text and "not distinguishable" not in text
    assert "base model was not scored" in text
    # DPO: the reference-free block has its own PGR; undefined there, flagged there
    margins["reference_free"] = {"weak": inverted, "base": [-1] * 20, "student": [1] * 20, "ceiling": [-1] * 20}
    text = " ".join(summarize(rows, margins, None, resamples=1000)[0]["flags"])
    assert "PGR (reference-free scoring) is undefined" in text and "base model was not scored" not in text
    assert "ceiling does not beat base beyond its interval under reference-free scoring" in text
