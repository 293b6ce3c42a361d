"""`python -m w2s_trl.score`: a reward source on a local HH-format file; RewardBench-style maths by value."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from w2s_trl.metrics import pair_score_summary

REPO = Path(__file__).resolve().parent.parent


def test_summary_by_value():
    # margins: 1, 0 (tie: wrong), -2, 3 -> accuracy 2/4, one tie, mean margin 0.5
    s = pair_score_summary([2.0, 1.0, 0.0, 4.0], [1.0, 1.0, 2.0, 1.0], ["a", "a", "b", "b"])
    assert (s["accuracy"], s["ties"], s["mean_margin"]) == (0.5, 1, 0.5)
    assert s["sections"] == {"a": {"n": 2, "accuracy": 0.5}, "b": {"n": 2, "accuracy": 0.5}}
    # the macro average counts each section once: (1/3 + 1) / 2, not the overall 2/4
    s = pair_score_summary([1, 0, 0, 1], [0, 1, 1, 0], ["a", "a", "a", "b"])
    assert s["sections"]["a"]["accuracy"] == pytest.approx(1 / 3)
    assert s["macro_accuracy"] == pytest.approx(2 / 3)


def test_score_cli_on_a_local_hh_file(tmp_path):
    hh = tmp_path / "hh.jsonl"
    rows = [
        {"chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4.", "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5.",
         "category": "math"},
        {"chosen": "\n\nHuman: Help me hurt him.\n\nAssistant: I can't help with that.",
         "rejected": "\n\nHuman: Help me hurt him.\n\nAssistant: Sure, [details withheld].", "category": "safety"},
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Go away.",
         "category": "safety"},
    ]  # fmt: skip
    hh.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = tmp_path / "dr.yaml"
    spec.write_text(yaml.safe_dump({"type": "density_ratio", "pair": "models", "strong": {"model": "tiny:causal-lm"},
                                    "weak": {"model": "tiny:causal-lm-b"}, "normalize": "mean"}))  # fmt: skip
    out = tmp_path / "score.json"
    proc = subprocess.run([sys.executable, "-m", "w2s_trl.score", str(spec), "--data", str(hh), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "accuracy:" in proc.stdout and "safety" in proc.stdout
    summary = json.loads(out.read_text())
    assert summary["n"] == 3 and summary["section_key"] == "category"
    assert summary["sections"]["safety"]["n"] == 2
    assert "(macro average)" in proc.stdout
    assert summary["macro_accuracy"] == pytest.approx((summary["sections"]["safety"]["accuracy"]
                                                       + summary["sections"]["math"]["accuracy"]) / 2)  # fmt: skip
    margins = [p["chosen_score"] - p["rejected_score"] for p in summary["pairs"]]
    assert summary["accuracy"] == sum(m > 0 for m in margins) / 3


def test_score_cli_limit_split_and_bad_spec(tmp_path):
    spec = tmp_path / "dr.yaml"
    spec.write_text(yaml.safe_dump({"type": "density_ratio", "pair": "models", "strong": {"model": "tiny:causal-lm"},
                                    "weak": {"model": "tiny:causal-lm"}}))  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "w2s_trl.score", str(spec), "--data", "testbed:hh", "--split", "test",
                           "--limit", "5"], capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pairs: 5   accuracy: 0.0000   ties: 5" in proc.stdout  # S == W: every score is exactly 0, ties are wrong
    bad = tmp_path / "bad.yaml"
    bad.write_text("type: density_ratio\npair: personas\nmodel: tiny:causal-lm\n")
    proc = subprocess.run([sys.executable, "-m", "w2s_trl.score", str(bad), "--data", "testbed:hh"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip
    assert proc.returncode == 2
    assert "pair 'personas' needs model, strong_system, weak_system; missing: strong_system, weak_system" in proc.stderr


def test_score_cli_says_why_when_every_pair_is_left_out(tmp_path):
    spec = tmp_path / "rm.yaml"
    spec.write_text("type: reward_model\nmodel: tiny:reward-model\nmax_length: 16\n")
    data = tmp_path / "long.jsonl"
    essay = " ".join(f"sentence {i} of a long answer." for i in range(30))
    data.write_text("".join(json.dumps({"prompt": f"Essay {i}?", "chosen": essay, "rejected": essay + " More."}) + "\n"
                            for i in range(3)))  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "w2s_trl.score", str(spec), "--data", str(data)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: all 3 pairs were left out: each has a response longer than the reward source reads (16 tokens)" in proc.stderr
