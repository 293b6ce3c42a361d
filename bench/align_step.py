"""The align stage's DPO training: what a TRL user gets versus the project's defaults, on the same pairs and steps.

    python bench/align_step.py [--pairs 64] [--batch 8] [--repeat 3] [--long] [--sides abcde]

(a) TRL user: `trl.DPOTrainer` with TRL's defaults on this machine (`DPOConfig(use_cpu=True)` where there is no GPU:
    bf16 autocast, activation checkpointing on, a reference forward in every step, random batches), LoRA through
    `peft.LoraConfig`, the recipe's learning rate, beta, batch size and max_length.
(b) w2s-trl: `w2s_trl.align.make_trainer` with the project's defaults (bf16 autocast, activation checkpointing off
    without a GPU, reference log-probs precomputed in one no-grad pass, batches of similar lengths). TRL 1.16's
    padding-free mode is disabled inside TRL ("temporarily unavailable"), so neither side uses it.
(c) check: (b) with length grouping off, so its batches are (a)'s: its final loss must equal (a)'s within
    LOSS_TOLERANCE (activation checkpointing and precomputation change the cost, not the maths).
(d) (b) with `align.share_prompt: false`: TRL's own forward, each prompt run twice (once per response). b/d is what
    running each pair's prompt once gains. Same batches and maths, but under bf16 autocast a packed row rounds
    differently from two rows, so the check is one more (b, d) pair of runs in fp32 (`bf16: false`, untimed): their
    final losses must agree within FP32_TOLERANCE; the bf16 difference is printed as measured.
(e) (b) with TRL's fused LM head as TRL runs it off Triton in the optimizer steps: every position (prompt and padding
    too) through the head, where (b) projects only the labelled ones (`w2s_trl.training.fused_head`; the reference
    pass, run inside the trainer's constructor, is compact on both sides). b/e on the steps is what that gains; the
    same positions are scored, so the final losses must agree within LOSS_TOLERANCE. With a SimPO recipe (TRL's CPO
    trainer, `--recipe recipes/simpo_density_ratio.yaml --sides bde`): TRL's CPO forward (logits and log-softmax at
    every position, each prompt still once) where (b) runs the head only where a label reads it.

Same pairs (testbed:hh, or long multi-turn rows with --long), same number of optimizer steps (one epoch), same seed.
Each run reports the whole stage (model load, tokenization, precompute, training) and the optimizer steps alone,
tokens/s (non-padding tokens of chosen + rejected per second of training) and the final training loss. The sides
alternate, --repeat times; medians and min-max are printed with the ratios side by side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
REPO = Path(__file__).resolve().parent.parent
# |final loss (a) - (c)|. Under bf16 autocast a sequence's log-prob depends on the batch it is computed in (kernel
# blocking follows the padded shape): measured ~0.1 nats per sequence. (c) precomputes its reference in dataset order
# and trains in random order, so its policy and reference see different batches; (a) and (b) compute both in the same
# batches (b: precompute batches = training batches, sequential), where the first step's loss is exactly ln 2.
LOSS_TOLERANCE = 5e-3
FP32_TOLERANCE = 1e-4  # (b) vs (d) in fp32: the same sums in another order


class Clock:
    """A TrainerCallback timing the optimizer steps (first step begin to last step end)."""

    def __init__(self):
        from transformers import TrainerCallback

        clock = self
        self.start = self.end = None

        class _CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                clock.start = clock.start or time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                clock.end = time.perf_counter()

        self.callback = _CB()


def tokens_of(trainer) -> int:
    """Tokens of chosen + rejected rows (prompt counted in both): DPO's columns, or CPO's (prompt inside each row)."""
    ds = trainer.train_dataset
    if "prompt_ids" in ds.column_names:
        return sum(2 * len(p) + len(c) + len(r) for p, c, r in zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"]))
    return sum(len(c) + len(r) for c, r in zip(ds["chosen_input_ids"], ds["rejected_input_ids"]))


def run_trl(recipe, rows, max_length: int) -> dict:
    """(a): TRL, PEFT and transformers only, TRL's defaults."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from w2s_trl.models import resolve_model_path

    start = time.perf_counter()
    folder = resolve_model_path(recipe.strong.model)  # the cached de-quantized folder (not timed: a file path)
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    a, lora = recipe.align.args, recipe.strong.lora
    with tempfile.TemporaryDirectory() as out:
        config = DPOConfig(output_dir=out, report_to="none", use_cpu=not torch.cuda.is_available(), seed=recipe.run.seed,
                           learning_rate=a["learning_rate"], beta=a["beta"], num_train_epochs=1,
                           per_device_train_batch_size=a["per_device_train_batch_size"], max_length=max_length,
                           lr_scheduler_type=a.get("lr_scheduler_type", "linear"), warmup_steps=a.get("warmup_steps", 0),
                           save_strategy="no", logging_steps=1)  # fmt: skip
        trainer = DPOTrainer(model=model, args=config, processing_class=tok,
                             train_dataset=Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")}
                                                              for r in rows]),
                             peft_config=LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                    target_modules=lora.target_modules, task_type="CAUSAL_LM"))  # fmt: skip
        return finish(trainer, start)


def run_w2s(recipe, rows, max_length: int, grouping: bool, share_prompt: bool = True, bf16: bool = True,
            compact_head: bool = True) -> dict:
    """(b) / (c) / (d) / (e): the project's make_trainer, its defaults."""
    from w2s_trl.align import make_trainer

    r = recipe.model_copy(deep=True)
    r.align.length_grouping, r.align.share_prompt = grouping, share_prompt
    r.align.args = {**r.align.args, "num_train_epochs": 1, "save_strategy": "no", "logging_steps": 1}
    if not bf16:
        r.align.args["bf16"] = False
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        trainer, _ = make_trainer(r, rows, out, "bench", max_length=max_length)
        if not compact_head and hasattr(trainer, "head_at_scored_positions"):  # SimPO: TRL's CPO forward, packed
            trainer.head_at_scored_positions = False
        elif not compact_head:  # TRL's fused forward again, without the wrapper make_trainer put around it
            base = trainer.model.get_base_model()
            if not getattr(base.forward, "w2s_compact", False):
                sys.exit("side e: this TRL has no compact head path to switch off (b and e are the same)")
            base.forward = base.forward.__wrapped__
        return finish(trainer, start)


def finish(trainer, start: float) -> dict:
    clock = Clock()
    trainer.add_callback(clock.callback)
    result = trainer.train()
    stage = time.perf_counter() - start
    steps = clock.end - clock.start
    return {"stage": stage, "steps": steps, "n_steps": trainer.state.global_step, "loss": result.training_loss,
            "tokens_per_s": tokens_of(trainer) / steps}  # fmt: skip


def rows_for(pairs: int, long: bool) -> list[dict]:
    from w2s_trl.data import SPLITS, load_source, split_rows
    from w2s_trl.recipe import SplitFractions
    from w2s_trl.testbed import TestbedOptions

    options = TestbedOptions(history_turns=(6, 14)) if long else None
    rows = load_source("testbed:hh", max(4 * pairs, 400), 0, ["helpful", "harmless"], testbed_options=options).rows
    return split_rows(rows, SplitFractions().model_dump(), {s: None for s in SPLITS})["w2s_train"][:pairs]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}, {max(values):.2f}]"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default=str(REPO / "recipes" / "dpo_weak_rm.yaml"))
    p.add_argument("--pairs", type=int, default=64, help="training pairs (one epoch)")
    p.add_argument("--batch", type=int, default=8, help="per_device_train_batch_size")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--long", action="store_true", help="long multi-turn rows (prompts of ~300-800 tokens)")
    p.add_argument("--sides", default="abcde", help="which sides to run, e.g. bde (b always runs)")
    p.add_argument("--prompt-once-only", action="store_true",
                   help="sides b and d only (a recipe whose trainer is not DPO: --recipe recipes/simpo_density_ratio.yaml)")
    a = p.parse_args()

    import torch

    from w2s_trl.recipe import load_recipe

    recipe = load_recipe(a.recipe, ["tracking.report_to=[]", f"align.args.per_device_train_batch_size={a.batch}",
                                    "align.args.gradient_accumulation_steps=1"])  # fmt: skip
    rows = rows_for(a.pairs, a.long)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {device}; torch {torch.__version__}; {len(rows)} pairs ({'long multi-turn' if a.long else 'testbed'}"
          f"), batch {a.batch}, max_length {a.max_length}; {a.repeat} runs per side, alternating", flush=True)
    sides = {"a: TRL defaults": lambda: run_trl(recipe, rows, a.max_length),
             "b: w2s-trl defaults": lambda: run_w2s(recipe, rows, a.max_length, grouping=True),
             "c: b, batches of a": lambda: run_w2s(recipe, rows, a.max_length, grouping=False),
             "d: b, prompt twice": lambda: run_w2s(recipe, rows, a.max_length, grouping=True, share_prompt=False),
             "e: b, head everywhere": lambda: run_w2s(recipe, rows, a.max_length, grouping=True, compact_head=False)}
    if set(a.sides) - set("abcde"):
        p.error(f"--sides {a.sides}: letters among a, b, c, d, e")
    chosen = "bd" if a.prompt_once_only else set(a.sides) | {"b"}
    if recipe.align.trainer != "dpo" and set(chosen) & set("ac"):
        p.error(f"sides a and c are trl.DPOTrainer's; a {recipe.align.trainer} recipe takes b, d and e (--sides bde)")
    sides = {k: v for k, v in sides.items() if k[0] in chosen}
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for i in range(a.repeat):
        for name, run in sides.items():
            runs[name].append(run())
            r = runs[name][-1]
            print(f"  run {i + 1} {name}: stage {r['stage']:.1f} s, {r['n_steps']} steps {r['steps']:.1f} s, "
                  f"loss {r['loss']:.5f}", flush=True)
    print(f"\n{'side':<22} {'stage s':>22} {'s/step':>22} {'tokens/s':>26} {'final loss':>11}")
    for name, rs in runs.items():
        n = rs[0]["n_steps"]
        print(f"{name:<22} {spread([r['stage'] for r in rs]):>22} {spread([r['steps'] / n for r in rs]):>22} "
              f"{spread([r['tokens_per_s'] for r in rs]):>26} {statistics.median(r['loss'] for r in rs):>11.5f}")
    med = {name: {k: statistics.median(r[k] for r in rs) for k in ("stage", "steps", "loss")} for name, rs in runs.items()}
    tb, gap = med["b: w2s-trl defaults"], 0.0
    if "a: TRL defaults" in med:
        ta = med["a: TRL defaults"]
        print(f"\nspeed-up b over a: whole stage {ta['stage'] / tb['stage']:.2f}x, optimizer steps {ta['steps'] / tb['steps']:.2f}x"
              f" (per-run ratios: stage {spread([x['stage'] / y['stage'] for x, y in zip(runs['a: TRL defaults'], runs['b: w2s-trl defaults'])])})")
    if "a: TRL defaults" in med and "c: b, batches of a" in med:
        gap = abs(med["a: TRL defaults"]["loss"] - med["c: b, batches of a"]["loss"])
        print(f"same maths: |loss(a) - loss(c)| = {gap:.2e} (tolerance {LOSS_TOLERANCE:g}); loss(b) = {tb['loss']:.5f} "
              "trains on other batches (length-grouped) and agrees only as well as two batch orders do")
    td = med.get("d: b, prompt twice")
    if td:
        print(f"prompt once: b over d {td['stage'] / tb['stage']:.2f}x whole stage, {td['steps'] / tb['steps']:.2f}x optimizer "
              f"steps (per-run ratios: steps {spread([x['steps'] / y['steps'] for x, y in zip(runs['d: b, prompt twice'], runs['b: w2s-trl defaults'])])}); "
              f"bf16 |loss(b) - loss(d)| = {abs(tb['loss'] - td['loss']):.2e}")
    head_gap = 0.0
    if "e: b, head everywhere" in med:
        te = med["e: b, head everywhere"]
        head_gap = abs(tb["loss"] - te["loss"])
        print(f"labelled positions only: b over e {te['stage'] / tb['stage']:.2f}x whole stage, {te['steps'] / tb['steps']:.2f}x "
              f"optimizer steps (per-run ratios: steps {spread([x['steps'] / y['steps'] for x, y in zip(runs['e: b, head everywhere'], runs['b: w2s-trl defaults'])])}); "
              f"|loss(b) - loss(e)| = {head_gap:.2e} (tolerance {LOSS_TOLERANCE:g})")
    shared_gap = 0.0
    if td:
        fp32 = {share: run_w2s(recipe, rows, a.max_length, grouping=True, share_prompt=share, bf16=False)["loss"]
                for share in (True, False)}  # fmt: skip
        shared_gap = abs(fp32[True] - fp32[False])
        print(f"same maths, prompt once: fp32 loss(b) {fp32[True]:.6f}, loss(d) {fp32[False]:.6f}, |difference| "
              f"{shared_gap:.2e} (tolerance {FP32_TOLERANCE:g})")
    return 0 if max(gap, head_gap) <= LOSS_TOLERANCE and shared_gap <= FP32_TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
