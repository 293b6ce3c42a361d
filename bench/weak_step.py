"""The weak stage's reward-model training: what a TRL user gets versus the project's defaults, on the same pairs.

    python bench/weak_step.py [--recipe recipes/dpo_weak_rm.yaml] [--repeat 2]

(a) TRL user: `trl.RewardTrainer` with the reward spec's `train` arguments and TRL's defaults otherwise
    (`RewardConfig(use_cpu=True)` where there is no GPU: bf16 autocast, random batches), on the same text pairs.
(b) w2s-trl: `w2s_trl.weak.train_reward_model`, the weak stage itself (batches of texts of similar length).
(c) check: (b) with `length_grouping: false`, so its batches are (a)'s: its final loss must equal (a)'s within
    LOSS_TOLERANCE (the project adds bookkeeping around the same training, not other maths).

The pairs are the recipe's own `weak_train` and `test` splits (its data stage, run into a temporary folder). Each
run reports the whole training (model load, tokenization, training, save), the final training loss, and the trained
model's accuracy on `test` with a paired bootstrap 95% interval; the sides alternate, --repeat times. Length
grouping changes which texts share a batch, so (b)'s model is not (a)'s: the accuracy difference (b) - (a) and its
interval say whether that costs anything.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
REPO = Path(__file__).resolve().parent.parent
# |final loss (a) - (c)|: the same batches through the same RewardTrainer; bf16 autocast kernels may still block a
# batch differently between processes' allocations, so exact equality is not promised
LOSS_TOLERANCE = 5e-3
RESAMPLES = 2000


def splits(recipe_path: str, tmp: str) -> dict[str, list[dict]]:
    """weak_train and test of the recipe, built by its own data stage."""
    subprocess.run([sys.executable, str(REPO / "w2s_trl" / "train.py"), recipe_path, "--stop-after", "data",
                    f"run.output_dir={tmp}", "run.name=bench", "tracking.report_to=[]"], check=True,
                   capture_output=True)  # fmt: skip
    data = Path(tmp) / "bench" / "data"
    return {s: [json.loads(line) for line in (data / f"{s}.jsonl").open()] for s in ("weak_train", "test")}


def run_trl(spec, rows: list[dict], max_length: int, seed: int, out: str):
    """(a): TRL and transformers only, TRL's defaults; the texts w2s-trl would train on."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed
    from trl import RewardConfig, RewardTrainer

    from w2s_trl.models import resolve_model_path
    from w2s_trl.weak import reward_training_rows

    start = time.perf_counter()
    set_seed(seed)
    folder = resolve_model_path(spec.model)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    tok = AutoTokenizer.from_pretrained(folder)
    if tok.eos_token is None:  # BERT has none and RewardTrainer appends EOS to every text: the fix its error asks for
        tok.eos_token = tok.sep_token
    model.config.pad_token_id = tok.pad_token_id
    pairs = reward_training_rows(tok, rows, max_length)
    config = RewardConfig(output_dir=out, report_to="none", use_cpu=not torch.cuda.is_available(), seed=seed,
                          max_length=max_length, save_strategy="no", **{k: v for k, v in spec.train.items()
                                                                          if k not in ("save_steps", "logging_steps")})  # fmt: skip
    trainer = RewardTrainer(model=model, args=config, train_dataset=Dataset.from_list(pairs), processing_class=tok)
    loss = trainer.train().training_loss
    return time.perf_counter() - start, trainer.state.global_step, loss, model, tok


def run_w2s(spec, rows: list[dict], max_length: int, seed: int, out: str, grouping: bool):
    """(b) / (c): the weak stage's own training."""
    from w2s_trl.models import load_reward_model
    from w2s_trl.rundir import StageWork
    from w2s_trl.weak import train_reward_model

    s = spec.model_copy(deep=True)
    s.length_grouping = grouping
    work = StageWork(out=Path(out) / "out", checkpoints=Path(out) / "checkpoints")
    start = time.perf_counter()
    record = train_reward_model(s, rows, work, seed, [], "bench/weak", max_length)
    elapsed = time.perf_counter() - start
    model, tok = load_reward_model(str(work.out / "model"))
    return elapsed, record["global_step"], record["train_loss"], model, tok


def test_correct(model, tok, test: list[dict], max_length: int):
    import numpy as np

    from w2s_trl.metrics import pair_correct
    from w2s_trl.scoring import reward_scores

    prompts = [r["prompt"] for r in test] * 2
    responses = [r["chosen"] for r in test] + [r["rejected"] for r in test]
    partners = responses[len(test) :] + responses[: len(test)]
    scores = reward_scores(model, tok, prompts, responses, max_length=max_length, partners=partners)
    n = len(test)
    return np.asarray(pair_correct([c - r for c, r in zip(scores[:n], scores[n:])]), dtype=float)


def spread(values: list[float], fmt: str = ".1f") -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}, {max(values):{fmt}}]"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default=str(REPO / "recipes" / "dpo_weak_rm.yaml"))
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()

    import numpy as np
    import torch

    from w2s_trl.metrics import bootstrap_indices, interval, resampled_mean
    from w2s_trl.recipe import load_recipe

    recipe = load_recipe(a.recipe, ["tracking.report_to=[]"])
    spec = recipe.weak.reward
    max_length = spec.max_length if isinstance(spec.max_length, int) else 128
    seed = recipe.run.seed
    sides = {"a: TRL defaults": lambda out: run_trl(spec, data["weak_train"], max_length, seed, out),
             "b: w2s-trl defaults": lambda out: run_w2s(spec, data["weak_train"], max_length, seed, out, True),
             "c: b, batches of a": lambda out: run_w2s(spec, data["weak_train"], max_length, seed, out, False)}
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="w2s-weak-bench-") as tmp:
        data = splits(a.recipe, tmp)
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
        print(f"device: {device}; torch {torch.__version__}; {spec.model}, {len(data['weak_train'])} training pairs, "
              f"{len(data['test'])} test pairs, max_length {max_length}; {a.repeat} runs per side, alternating",
              flush=True)  # fmt: skip
        for i in range(a.repeat):
            for name, run in sides.items():
                with tempfile.TemporaryDirectory(dir=tmp) as out:
                    elapsed, steps, loss, model, tok = run(out)
                correct = test_correct(model, tok, data["test"], max_length)
                runs[name].append({"stage": elapsed, "steps": steps, "loss": loss, "correct": correct})
                print(f"  run {i + 1} {name}: {elapsed:.1f} s, {steps} steps, loss {loss:.5f}, "
                      f"test accuracy {correct.mean():.3f}", flush=True)
    idx = bootstrap_indices(len(data["test"]), RESAMPLES, 0)

    def acc(c: np.ndarray, base: np.ndarray | None = None) -> str:
        v = c if base is None else c - base
        ci = interval(float(v.mean()), resampled_mean(v, idx))["ci"]
        return f"{v.mean():+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]" if base is not None else f"{v.mean():.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"

    print(f"\n{'side':<22} {'whole training s':>22} {'s/step':>20} {'final loss':>11} {'test accuracy (run 1), 95% CI':>32}")
    for name, rs in runs.items():
        print(f"{name:<22} {spread([r['stage'] for r in rs]):>22} {spread([r['stage'] / r['steps'] for r in rs], '.2f'):>20} "
              f"{statistics.median(r['loss'] for r in rs):>11.5f} {acc(rs[0]['correct']):>32}")
    ra, rb, rc = runs["a: TRL defaults"], runs["b: w2s-trl defaults"], runs["c: b, batches of a"]
    print(f"\nspeed-up b over a: {statistics.median(r['stage'] for r in ra) / statistics.median(r['stage'] for r in rb):.2f}x "
          f"(per-run ratios {spread([x['stage'] / y['stage'] for x, y in zip(ra, rb)], '.2f')})")
    print(f"test accuracy b - a (run 1, paired): {acc(rb[0]['correct'], ra[0]['correct'])}")
    gap = abs(statistics.median(r["loss"] for r in ra) - statistics.median(r["loss"] for r in rc))
    print(f"same maths: |loss(a) - loss(c)| = {gap:.2e} (tolerance {LOSS_TOLERANCE:g})")
    return 0 if gap <= LOSS_TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
