"""Peak resident memory and step time of one DPO + LoRA align step: the strong model in 4-bit (bitsandbytes nf4)
versus full precision (fp32).

    python bench/memory_4bit.py [--steps 3] [--pairs 8] [--repeat 3] [--compute-dtype float32 bfloat16]
    python bench/memory_4bit.py --model tiny:causal-lm --steps 2 --pairs 2 --repeat 1    # quick check
    python bench/memory_4bit.py --arch smollm2-1.7b --pairs 1 --repeat 2 --compute-dtype bfloat16   # larger strong model

`--arch` swaps the strong model for a larger member of the embedded model's family (SmolLM2-360M's or -1.7B's
published architecture, the same tokenizer, so the rows and the step are the same): random weights, built from the
config once and saved in fp32 under $W2S_TRL_CACHE/bench/ (a step's memory and time do not depend on the weights'
values, and no download is needed). It shows where 4-bit pays: when the weights, not the activations, fill memory.

Every configuration runs in its own fresh Python process (this script with `--child`), so none inherits another's
high-water mark; `--repeat` rounds of fresh processes, the configurations in turn within a round. A child follows
the project's path: `load_recipe(recipes/dpo_weak_rm.yaml, overrides)` (strong.quantization.load_in_4bit and
compute_dtype for nf4), `load_strong_base` (what `make_trainer` calls when given no model; taken out only to read
the memory after loading), `make_trainer(recipe, rows, out_dir, "bench", model, tokenizer, max_length)` and
`trainer.train()` with `align.args.max_steps=--steps`, `save_strategy=no`, the recipe's other args (bf16 autocast
as the recipe says unless `--no-autocast`). It reads /proc/self/status:

  base   VmRSS after importing torch/transformers/trl/peft/bitsandbytes/w2s_trl and building the rows (no model)
  load   VmRSS just after loading the model (and its prepare_model_for_kbit_training, for nf4)
  setup  VmHWM before training: the peak of loading (nf4 reads the fp32 weights, then quantizes) and make_trainer
  train  VmHWM of train() alone (the high-water mark is reset through /proc/self/clear_refs before it): the
         reference log-prob pass and the steps
  peak   the whole process's peak: max(setup, train) = getrusage ru_maxrss had it not been reset

and RssAnon+RssFile after loading and after training: safetensors weights are memory-mapped, so file pages that a
pass has touched count in RSS (reclaimable by the kernel, unlike anonymous memory); the split shows which is which,
with the resident part of the mapped .safetensors files after training. (So fp32 `load` is small: its weights enter
RSS as the first pass touches them; nf4 reads them all to quantize.)

Step time: the mean over steps 2.. of each run (the first step is a warm-up). Ratios nf4/fp32 are taken per round
(the processes of one round ran back to back) and given as median and min-max over the rounds. The issue's target is
peak nf4/fp32 <= 0.5x; the "net" ratio subtracts `base` (the libraries, the same in both), which is what 4-bit can
shrink.
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
RECIPE = REPO / "recipes" / "dpo_weak_rm.yaml"
MARK = "MEMORY_4BIT_RESULT "


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def mapped_kb(suffix: str) -> int:
    """Resident kB of this process's mappings of files named *suffix (the memory-mapped weight files)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):  # a mapping's header line
            inside = line.rstrip().endswith(suffix)
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (and ru_maxrss) to the current RSS
        return True
    except OSError:
        return False


# Published architectures of SmolLM2's larger members (config.json of each); the embedded model's tokenizer.
ARCHITECTURES = {
    "smollm2-360m": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
                         num_key_value_heads=5, rope_theta=100000.0),
    "smollm2-1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                         num_key_value_heads=32, rope_theta=130000.0),
}  # fmt: skip


def arch_folder(name: str) -> Path:
    """A model folder of architecture `name` with random weights (seed 0, fp32) and the embedded tokenizer, built
    once under the cache (atomically, as the project builds its embedded folders) and reused."""
    import shutil

    from w2s_trl.models import _build_once, cache_dir, resolve_model_path

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        embedded = Path(resolve_model_path("embedded:smollm2-135m-instruct"))
        config = AutoConfig.from_pretrained(embedded)
        for key, value in ARCHITECTURES[name].items():
            setattr(config, key, value)
        config.head_dim = config.hidden_size // config.num_attention_heads
        print(f"building {name} (random weights) in {tmp.parent} ...", flush=True)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.save_pretrained(tmp)
        for f in embedded.iterdir():
            if f.name.startswith(("tokenizer", "chat_template", "generation_config")):
                shutil.copy(f, tmp / f.name)
        print(f"{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters", flush=True)

    return _build_once(cache_dir() / "bench" / name, build)


def child(a) -> None:
    """One configuration in this fresh process; prints one JSON line after MARK."""
    import bitsandbytes  # noqa: F401  imported in every configuration, so `base` is the same
    import peft  # noqa: F401
    import torch
    import trl  # noqa: F401
    from transformers import TrainerCallback

    from w2s_trl.align import PREPARES_KBIT, load_strong_base, make_trainer
    from w2s_trl.models import model_limit
    from w2s_trl.recipe import load_recipe
    from w2s_trl.testbed import generate_testbed

    if a.threads:
        torch.set_num_threads(a.threads)
    overrides = ["tracking.report_to=[]", f"strong.model={a.model}", f"align.args.max_steps={a.steps}",
                 f"align.args.per_device_train_batch_size={a.pairs}", "align.args.gradient_accumulation_steps=1",
                 "align.args.logging_steps=1000"]  # fmt: skip
    if a.child != "fp32":
        overrides += ["strong.quantization.load_in_4bit=true", f"strong.quantization.compute_dtype={a.child[4:]}"]
    if a.no_autocast:
        overrides.append("align.args.bf16=false")
    recipe = load_recipe(a.recipe, overrides)
    recipe.align.args = {**recipe.align.args, "save_strategy": "no"}  # a string ("no" parses as false in YAML)
    rows = generate_testbed(a.pairs * a.steps, seed=0)
    base = status_kb("VmRSS")

    start = time.perf_counter()
    model, tok = load_strong_base(recipe, prepare=recipe.align.trainer not in PREPARES_KBIT)
    load_s = time.perf_counter() - start
    load = status_kb("VmRSS")
    load_split = (status_kb("RssAnon"), status_kb("RssFile"))
    quantized = next((type(m).__name__ for n, m in model.named_modules() if n.endswith("q_proj")), "?")
    max_length = min(a.max_length, model_limit(model) or a.max_length)
    times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t)

    with tempfile.TemporaryDirectory(prefix="w2s-mem4-") as out:
        trainer, _ = make_trainer(recipe, rows, out, "bench", model=model, tokenizer=tok, max_length=max_length)
        trainer.add_callback(StepTimer())
        after_setup = status_kb("VmRSS")
        setup_peak = status_kb("VmHWM")
        was_reset = reset_peak()
        start = time.perf_counter()
        trainer.train()
        train_s = time.perf_counter() - start
        train_peak = status_kb("VmHWM")
        end_split = (status_kb("RssAnon"), status_kb("RssFile"))
        weights_file = mapped_kb(".safetensors")
    timed = times[1:] or times
    print(MARK + json.dumps({
        "config": a.child, "base": base, "load": load, "after_setup": after_setup, "setup_peak": setup_peak,
        "train_peak": train_peak, "peak": max(setup_peak, train_peak),
        "load_anon_file": load_split, "end_anon_file": end_split,
        "weights_file": weights_file, "reset": was_reset, "load_s": load_s,
        "train_s": train_s, "step_s": statistics.mean(timed), "steps": len(times), "layer": quantized,
        "bf16": recipe.align.args.get("bf16"), "max_length": max_length, "threads": torch.get_num_threads(),
    }), flush=True)  # fmt: skip


def run_child(a, config: str) -> dict:
    cmd = [sys.executable, __file__, "--child", config, "--recipe", str(a.recipe), "--model", a.model,
           "--steps", str(a.steps), "--pairs", str(a.pairs), "--max-length", str(a.max_length)]  # fmt: skip
    cmd += ["--no-autocast"] if a.no_autocast else []
    cmd += ["--threads", str(a.threads)] if a.threads else []
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        sys.exit(f"{config} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK) :])


def mib(anon_file) -> str:
    return "+".join(f"{v / 1024:.0f}" for v in anon_file)


def spread(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    return f"{fmt.format(med)}  [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default=str(RECIPE))
    p.add_argument("--model", default="embedded:smollm2-135m-instruct", help="strong.model (tiny:causal-lm: quick)")
    p.add_argument("--arch", choices=sorted(ARCHITECTURES), help="a larger SmolLM2 architecture (random weights) "
                   "as the strong model, instead of --model")  # fmt: skip
    p.add_argument("--steps", type=int, default=3, help="align.args.max_steps; the first step is a warm-up")
    p.add_argument("--pairs", type=int, default=8, help="pairs per step (per_device_train_batch_size)")
    p.add_argument("--max-length", type=int, default=512, help="make_trainer's max_length (prompt + response)")
    p.add_argument("--compute-dtype", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"],
                   help="bnb_4bit_compute_dtype of the nf4 configurations")  # fmt: skip
    p.add_argument("--no-autocast", action="store_true", help="align.args.bf16=false in every configuration")
    p.add_argument("--repeat", type=int, default=3, help="rounds of fresh processes")
    p.add_argument("--threads", type=int, help="torch threads in the children (default: torch's own)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a)
    if a.arch:
        a.model = str(arch_folder(a.arch))

    configs = ["fp32"] + [f"nf4-{d}" for d in a.compute_dtype]
    runs: dict[str, list[dict]] = {c: [] for c in configs}
    for r in range(a.repeat):
        for c in configs:
            res = run_child(a, c)
            runs[c].append(res)
            print(f"round {r + 1} {c:13s}: base {res['base'] / 1024:.0f} MiB, load {res['load'] / 1024:.0f}, "
                  f"setup peak {res['setup_peak'] / 1024:.0f}, train peak {res['train_peak'] / 1024:.0f}, "
                  f"peak {res['peak'] / 1024:.0f}; step {res['step_s']:.2f} s, train() {res['train_s']:.1f} s, "
                  f"load {res['load_s']:.1f} s ({res['layer']}); RSS anon+file after load {mib(res['load_anon_file'])}, "
                  f"after train {mib(res['end_anon_file'])} (of which the mapped .safetensors files "
                  f"{res['weights_file'] / 1024:.0f})", flush=True)  # fmt: skip
    first = runs["fp32"][0]
    print(f"\nmodel {a.model}; {a.pairs} pairs/step, {a.steps} steps (first untimed), max_length {first['max_length']}; "
          f"bf16 autocast {first['bf16']}; {first['threads']} threads; peak reset before train(): {first['reset']}")
    print("memory in MiB, median [min-max] over rounds of fresh processes\n")
    print(f"{'config':13s} {'base':>16s} {'load':>16s} {'setup peak':>16s} {'train peak':>16s} {'peak':>16s} "
          f"{'step s':>18s}")  # fmt: skip
    for c in configs:
        col = lambda k, c=c: spread([x[k] / 1024 for x in runs[c]], "{:.0f}")
        print(f"{c:13s} {col('base'):>16s} {col('load'):>16s} {col('setup_peak'):>16s} {col('train_peak'):>16s} "
              f"{col('peak'):>16s} {spread([x['step_s'] for x in runs[c]], '{:.2f}'):>18s}")  # fmt: skip
    print()
    for c in configs[1:]:
        pairs = list(zip(runs[c], runs["fp32"]))
        ratio = lambda f, pairs=pairs: spread([f(q) / f(b) for q, b in pairs], "{:.2f}x")
        print(f"{c} / fp32: peak {ratio(lambda x: x['peak'])} (issue target <= 0.5x), train peak (the align step "
              f"alone) {ratio(lambda x: x['train_peak'])}; "
              f"net of base: peak {ratio(lambda x: x['peak'] - x['base'])}, "
              f"load {ratio(lambda x: x['load'] - x['base'])}, train peak {ratio(lambda x: x['train_peak'] - x['base'])}; "
              f"step time {ratio(lambda x: x['step_s'])}")  # fmt: skip


if __name__ == "__main__":
    main()
