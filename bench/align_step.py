"""One DPO step on the embedded strong model: w2s-trl versus the same step written directly against trl.DPOTrainer.

    python bench/align_step.py [--steps 3] [--pairs 8]

Both paths train SmolLM2-135M-Instruct with the same LoRA settings and DPOConfig arguments on the same pairs. Each run
does `--steps` steps; the first is a warm-up and the others are timed (per-step mean). Runs are interleaved
(w2s, direct, w2s, direct, ...) after one uncounted warm-up run, and the best of each is kept. Then the w2s-trl path again with bf16 autocast off (fp32) for
tokens/s in both precisions. Prints the ratios measured side by side in this one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
REPO = Path(__file__).resolve().parent.parent


class StepTimer:
    """A TrainerCallback that records each optimizer step's wall time."""

    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class _CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                timer._t = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                timer.times.append(time.perf_counter() - timer._t)

        self.times: list[float] = []
        self.callback = _CB()


def tokens_per_step(trainer, pairs: int) -> int:
    ds = trainer.train_dataset
    return sum(len(ds[i]["prompt_ids"]) * 2 + len(ds[i]["chosen_ids"]) + len(ds[i]["rejected_ids"]) for i in range(pairs))


def run_w2s(recipe, rows, steps: int, bf16: bool) -> tuple[float, int]:
    from w2s_trl.align import make_trainer

    r = recipe.model_copy(deep=True)
    r.align.args = {**r.align.args, "max_steps": steps, "bf16": bf16, "save_strategy": "no", "logging_steps": 1000}
    with tempfile.TemporaryDirectory() as out:
        trainer, _ = make_trainer(r, rows, out, "bench")
        timer = StepTimer()
        trainer.add_callback(timer.callback)
        trainer.train()
        return statistics.mean(timer.times[1:]), tokens_per_step(trainer, len(rows))


def run_direct(recipe, rows, steps: int) -> float:
    """The same step with no w2s-trl code: TRL, PEFT and transformers only."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from w2s_trl.models import resolve_model_path

    folder = resolve_model_path(recipe.strong.model)  # the cached de-quantized folder
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    lora = recipe.strong.lora
    args = {**recipe.align.args, "max_steps": steps, "save_strategy": "no", "logging_steps": 1000}
    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(
            output_dir=out, report_to="none", seed=recipe.run.seed, activation_checkpointing=False,
            dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(), **args,
        )  # fmt: skip
        trainer = DPOTrainer(
            model=model, args=config, processing_class=tok,
            train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows]),
            peft_config=LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                   target_modules=lora.target_modules, task_type="CAUSAL_LM"),
        )  # fmt: skip
        timer = StepTimer()
        trainer.add_callback(timer.callback)
        trainer.train()
        return statistics.mean(timer.times[1:])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--recipe", default=str(REPO / "recipes" / "dpo_weak_rm.yaml"))
    p.add_argument("--steps", type=int, default=3, help="steps per run; the first is a warm-up")
    p.add_argument("--pairs", type=int, default=8, help="pairs per step (per_device_train_batch_size)")
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()

    import torch

    from w2s_trl.recipe import load_recipe
    from w2s_trl.testbed import generate_testbed

    recipe = load_recipe(a.recipe, ["tracking.report_to=[]", f"align.args.per_device_train_batch_size={a.pairs}",
                                    "align.args.gradient_accumulation_steps=1"])  # fmt: skip
    rows = generate_testbed(a.pairs * a.steps, seed=0)
    device = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device}; torch {torch.__version__}; {a.pairs} pairs/step; {a.steps - 1} timed steps per run")

    run_w2s(recipe, rows, 2, bf16=True)  # warm-up: the process's first training run pays one-off start-up costs
    w2s, direct = [], []
    for _ in range(a.repeats):
        w2s.append(run_w2s(recipe, rows, a.steps, bf16=recipe.align.args.get("bf16", True))[0])
        direct.append(run_direct(recipe, rows, a.steps))
    bf16_s, tokens = run_w2s(recipe, rows, a.steps, bf16=True)
    fp32_s, _ = run_w2s(recipe, rows, a.steps, bf16=False)

    best_w2s, best_direct = min(w2s), min(direct)
    print(f"\nDPO step, w2s-trl : {best_w2s:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in w2s)})")
    print(f"DPO step, TRL     : {best_direct:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in direct)})")
    print(f"ratio w2s-trl / TRL = {best_w2s / best_direct:.3f}  (<= 1 + noise: w2s-trl adds nothing to the step)")
    print(f"\ntokens per step: {tokens}")
    print(f"bf16 autocast: {bf16_s:.2f} s/step = {tokens / bf16_s:.0f} tokens/s")
    print(f"fp32         : {fp32_s:.2f} s/step = {tokens / fp32_s:.0f} tokens/s")
    print(f"speed-up bf16 / fp32 = {fp32_s / bf16_s:.2f}x")


if __name__ == "__main__":
    main()
