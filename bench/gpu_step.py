"""GPU timing of the two passes that dominate a run: one DPO + LoRA optimizer step and one scoring pass, on the
embedded strong model's architecture (SmolLM2-135M) and a 0.5B-class one (Qwen2.5-0.5B's), bf16, with and without
4-bit (bitsandbytes nf4), with model FLOP utilization (MFU) against the card's peak.

    python bench/gpu_step.py [--out gpu_step.json] [--pairs 8] [--prompt 256] [--response 128] [--steps 6]
    python bench/gpu_step.py --device cpu --tiny --steps 2       # check the script on a CPU (no MFU)

Needs only torch, transformers and peft, plus bitsandbytes for the nf4 rows (skipped, and said so, when it cannot
be imported): it runs on a bare GPU machine with a CUDA PyTorch, no trl, no w2s_trl install and no network
(`pip install bitsandbytes` or a carried wheel for the nf4 rows). Weights are random, built from each architecture's
config: a step's time does not depend on the weights' values, and no download is needed.

What is timed (after `--warmup` uncounted repeats; CUDA synchronized around each; median and min-max of `--steps`):
  dpo    the step `trl.DPOTrainer` runs with the project's defaults (LoRA r=16 on all linear layers, reference
         log-probs precomputed, so no reference forward in the step): forward of `pairs` chosen and `pairs` rejected
         sequences (prompt + response tokens) in one batch, response log-probs summed, DPO sigmoid loss (beta 0.1)
         against fixed reference log-probs, backward, AdamW step on the LoRA weights. Written out in torch so the
         script needs no trl; bf16 weights for the bf16 rows, the nf4 rows compute in bf16.
  score  the project's scoring pass (`w2s_trl.scoring.response_logprobs` without prefix sharing): no-grad forward
         of the same 2 x pairs sequences, LM head and log-softmax at the response positions only
         (`logits_to_keep`), log-probs gathered at the target tokens.

MFU = model FLOPs / time / peak. Forward FLOPs per sequence: 2 x (every frozen matrix weight the tokens pass
through: the layers, and the LM head at the positions it runs on) + 2 x LoRA's matrices + attention 2 x 2 x layers
x hidden x (causal pairs of positions: half of the full n^2 term some MFU conventions count). A training step
counts the frozen matrices twice (forward, and the backward's activation gradients; no weight gradients for frozen
weights, so the usual 3x would overstate MFU), attention three times (its backward costs two forwards) and LoRA
three times. Peak: the card's dense bf16 spec where the name is known exactly (H200, H100 SXM: 989 TFLOP/s; A100:
312) and the bf16 matrix product this script measures (8192^3 on a GPU, 1024^3 on a CPU: what a large kernel
reaches on this card).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

SPEC_PEAK_BF16 = {"NVIDIA H200": 989e12, "NVIDIA H100 80GB HBM3": 989e12, "NVIDIA A100-SXM4-80GB": 312e12,
                  "NVIDIA A100-SXM4-40GB": 312e12}  # exact device names: PCIe/NVL variants have other peaks

# Architectures as published (config.json of each model); weights random.
ARCHITECTURES = {
    "smollm2-135m (embedded)": ("llama", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                              num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                                              max_position_embeddings=8192, tie_word_embeddings=True,
                                              rope_theta=100000.0, rms_norm_eps=1e-5)),
    "qwen2.5-0.5b (0.5B-class)": ("qwen2", dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                                num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                                                max_position_embeddings=32768, tie_word_embeddings=True,
                                                rope_theta=1000000.0, rms_norm_eps=1e-6)),
}  # fmt: skip
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=512)  # fmt: skip


def build(kind: str, fields: dict, dtype, device, nf4: bool, tmp: str):
    """A random-weight model of the architecture: bf16 on `device`, or saved and reloaded through bitsandbytes nf4
    (quantization happens at load, as `w2s_trl.models` loads a 4-bit strong model)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig

    config = AutoConfig.for_model(kind, **fields)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if not nf4:
        return model.to(device)
    model.save_pretrained(tmp)
    del model
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    return AutoModelForCausalLM.from_pretrained(tmp, quantization_config=q, dtype=dtype, device_map={"": device})


def with_lora(model):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))  # fmt: skip


def model_flops(cfg, seqs: int, prompt: int, response: int, head_positions: int, rank: int = 16) -> dict:
    """Forward FLOPs of `seqs` sequences of prompt + response tokens, the LM head run at `head_positions` each, by
    part: frozen matrices, LoRA (rank `rank` on the 7 linear layers of each block), attention."""
    h, layers, inter = cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size
    kv = cfg.num_key_value_heads * (h // cfg.num_attention_heads)
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * inter  # q, o; k, v; gate, up, down
    lora_per_layer = rank * (h + h) * 2 + rank * (h + kv) * 2 + rank * (h + inter) * 3  # A and B of each
    n = prompt + response
    return {"frozen": seqs * (2 * per_layer * layers * n + 2 * h * cfg.vocab_size * head_positions),
            "lora": seqs * 2 * lora_per_layer * layers * n,
            "attention": seqs * 4 * layers * h * n * (n + 1) / 2}  # fmt: skip


def timed(fn, steps: int, warmup: int, sync) -> list[float]:
    out = []
    for i in range(warmup + steps):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        if i >= warmup:
            out.append(time.perf_counter() - start)
    return out


def matmul_ceiling(device, sync, size: int) -> float:
    import torch

    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    times = timed(lambda: a @ b, 10, 3, sync)
    return 2 * size**3 / statistics.median(times)


def run_case(name, kind, fields, nf4: bool, a, device, dtype, sync, tmp) -> dict:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = with_lora(build(kind, fields, dtype, device, nf4, tmp))
    cfg = model.config
    seqs, n = 2 * a.pairs, a.prompt + a.response
    ids = torch.randint(0, cfg.vocab_size, (seqs, n), device=device)
    targets = ids[:, a.prompt :]
    ref = torch.zeros(seqs, device=device)  # precomputed reference log-probs: their values do not change the cost
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def response_logps(keep_grad: bool):
        logits = model(input_ids=ids, logits_to_keep=a.response + 1).logits[:, :-1].float()
        logp = logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(-1)
        return logp if keep_grad else logp.detach()

    def dpo_step():
        chosen, rejected = (response_logps(True) - ref).chunk(2)
        loss = -torch.nn.functional.logsigmoid(0.1 * (chosen - rejected)).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def score():
        with torch.no_grad():
            response_logps(False)

    model.train()
    t_dpo = timed(dpo_step, a.steps, a.warmup, sync)
    model.eval()
    t_score = timed(score, a.steps, a.warmup, sync)
    peak_mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    part = model_flops(cfg, seqs, a.prompt, a.response, a.response + 1)
    return {"model": name, "weights": "nf4 (bf16 compute)" if nf4 else str(dtype).replace("torch.", ""),
            "sequences": seqs, "tokens": seqs * n, "dpo_step_s": t_dpo, "score_s": t_score,
            "dpo_flops": 2 * part["frozen"] + 3 * part["lora"] + 3 * part["attention"],
            "score_flops": sum(part.values()), "peak_gpu_mem_gib": peak_mem}  # fmt: skip


def spread(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.1f} ms [{min(values) * 1e3:.1f}, {max(values) * 1e3:.1f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="2-layer configs: check the script, not a measurement")
    p.add_argument("--pairs", type=int, default=8, help="preference pairs per step (2x sequences)")
    p.add_argument("--prompt", type=int, default=256, help="prompt tokens per sequence")
    p.add_argument("--response", type=int, default=128, help="response tokens per sequence")
    p.add_argument("--steps", type=int, default=6, help="timed repeats of each pass")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-nf4", action="store_true", help="bf16 rows only")
    p.add_argument("--out", help="also write the results as JSON here")
    a = p.parse_args()

    import tempfile

    import torch

    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device visible (use --device cpu --tiny to check the script on a CPU)")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    dtype = torch.bfloat16
    card = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    spec = SPEC_PEAK_BF16.get(card)
    size = 8192 if device.type == "cuda" else 1024
    ceiling = matmul_ceiling(device, sync, size)
    print(f"device: {card}; torch {torch.__version__}; spec bf16 peak "
          f"{f'{spec / 1e12:.0f} TFLOP/s' if spec else 'unknown'}; measured {size}^3 bf16 matmul "
          f"{ceiling / 1e12:.2f} TFLOP/s")  # fmt: skip
    nf4_ok = not a.no_nf4
    if nf4_ok:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            nf4_ok = False
            print(f"nf4 rows skipped: bitsandbytes cannot be imported ({exc}); carry its wheel (see the docstring)")

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (kind, fields) in ARCHITECTURES.items():
            fields = {**fields, **TINY} if a.tiny else fields
            for nf4 in (False, True) if nf4_ok else (False,):
                r = run_case(name, kind, fields, nf4, a, device, dtype, sync, tmp)
                results.append(r)
                line = f"{r['model']:27s} {r['weights']:18s} "
                for key, flops_key in (("dpo_step_s", "dpo_flops"), ("score_s", "score_flops")):
                    t = statistics.median(r[key])
                    tflops = r[flops_key] / t / 1e12
                    mfu = f", MFU {r[flops_key] / t / spec:.1%} of spec" if spec else ", MFU"
                    mfu += f" {r[flops_key] / t / ceiling:.1%} of the matmul"
                    line += f"| {key[:-2]} {spread(r[key])}, {r['tokens'] / t:,.0f} tok/s, {tflops:.2f} TFLOP/s{mfu} "
                mem = f"| peak {r['peak_gpu_mem_gib']:.2f} GiB" if r["peak_gpu_mem_gib"] is not None else ""
                print(line + mem, flush=True)
    tiny = "; TINY configs: a check of the script, not a measurement" if a.tiny else ""
    print(f"(each row: {2 * a.pairs} sequences of {a.prompt} + {a.response} tokens; median [min, max] of {a.steps} "
          f"runs after {a.warmup} warm-ups{tiny})")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"device": card, "torch": torch.__version__, "spec_peak": spec, "matmul_ceiling": ceiling,
                       "args": vars(a), "results": results}, fh, indent=1)  # fmt: skip


if __name__ == "__main__":
    main()
