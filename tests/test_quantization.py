"""4-bit (bitsandbytes nf4) loading and LoRA training of the strong model, on this CPU."""

import json

import bitsandbytes as bnb
import pytest

from w2s_trl.cli import train_main
from w2s_trl.recipe import QuantizationSection


def test_tiny_model_loads_in_4bit_and_still_scores(tiny_lm):
    from w2s_trl.models import load_causal_lm
    from w2s_trl.scoring import response_logprobs

    model = load_causal_lm("tiny:causal-lm", QuantizationSection(load_in_4bit=True, compute_dtype="float32"))
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, bnb.nn.Linear4bit) and layer.weight.quant_type == "nf4"
    _, tok = tiny_lm
    prompt, response = [{"role": "user", "content": "Hi"}], [{"role": "assistant", "content": "Hello!"}]
    (lp4,), _ = response_logprobs(model, tok, [prompt], [response])
    (lp32,), _ = response_logprobs(tiny_lm[0], tok, [prompt], [response])
    assert lp4 == pytest.approx(lp32, rel=0.1)  # quantization error, not a different model


def test_a_4bit_model_on_cpu_lets_its_weight_files_go(tiny_lm):
    """The layers left in floating point are views into the memory-mapped checkpoint after loading on a CPU, which
    keeps the whole checkpoint resident; the loader copies them, so the 4-bit model adds no mapping of its weight
    file, and each floating-point tensor owns exactly its own storage."""
    import gc
    from pathlib import Path

    from w2s_trl.models import load_causal_lm, resolve_model_path

    folder = str(Path(resolve_model_path("tiny:causal-lm")).resolve())

    def mapped() -> list[str]:
        gc.collect()
        return [line for line in Path("/proc/self/maps").read_text().splitlines() if folder in line]

    before = mapped()  # the fp32 tiny model of the session's fixture maps the same file
    model = load_causal_lm("tiny:causal-lm", QuantizationSection(load_in_4bit=True, compute_dtype="float32"))
    assert len(mapped()) <= len(before), "the 4-bit model still maps its weight file"
    floats = [t for t in model.parameters() if t.dtype.is_floating_point]
    assert floats and all(t.untyped_storage().nbytes() == t.numel() * t.element_size() for t in floats)


def test_dpo_with_lora_on_a_4bit_strong_model(tmp_path):
    from pathlib import Path

    recipe = Path(__file__).resolve().parent.parent / "recipes" / "dpo_weak_rm.yaml"
    args = [str(recipe), "--smoke", f"run.output_dir={tmp_path}", "strong.quantization.load_in_4bit=true",
            "strong.quantization.compute_dtype=float32", "--stop-after", "student"]  # fmt: skip
    assert train_main(args) == 0
    root = tmp_path / "dpo_weak_rm-smoke"
    record = json.loads((root / "student" / "stage.json").read_text())
    assert record["global_step"] == 2 and record["inputs"]["strong"]["quantization"]["load_in_4bit"] is True
    from safetensors.torch import load_file

    adapter = load_file(root / "student" / "adapter" / "adapter_model.safetensors")
    assert all(t.abs().sum() > 0 for k, t in adapter.items() if "lora_B" in k)  # LoRA trained on top of 4-bit


def test_tiny_model_loads_in_8bit_and_still_scores(tiny_lm):
    from w2s_trl.models import load_causal_lm
    from w2s_trl.scoring import response_logprobs

    model = load_causal_lm("tiny:causal-lm", QuantizationSection(load_in_8bit=True))
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, bnb.nn.Linear8bitLt)
    _, tok = tiny_lm
    prompt, response = [{"role": "user", "content": "Hi"}], [{"role": "assistant", "content": "Hello!"}]
    (lp8,), _ = response_logprobs(model, tok, [prompt], [response])
    (lp32,), _ = response_logprobs(tiny_lm[0], tok, [prompt], [response])
    assert lp8 == pytest.approx(lp32, rel=0.1)
    with pytest.raises(ValueError, match="load_in_4bit and load_in_8bit are both true"):
        QuantizationSection(load_in_4bit=True, load_in_8bit=True)


@pytest.mark.parametrize("trainer", ["dpo", "simpo"])
def test_a_quantized_model_is_prepared_for_kbit_training_exactly_once(tmp_path, monkeypatch, trainer):
    """TRL's CPOTrainer (SimPO) runs peft's prepare_model_for_kbit_training itself, DPOTrainer does not: one call
    either way."""
    import peft
    import trl.experimental.cpo.cpo_trainer as cpo

    from w2s_trl.align import make_trainer
    from w2s_trl.recipe import load_recipe
    from w2s_trl.testbed import generate_testbed

    calls = []
    real = peft.prepare_model_for_kbit_training

    def counted(model, *args, **kwargs):
        calls.append(type(model).__name__)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(peft, "prepare_model_for_kbit_training", counted)
    monkeypatch.setattr(cpo, "prepare_model_for_kbit_training", counted)
    from pathlib import Path

    recipe_file = "simpo_density_ratio.yaml" if trainer == "simpo" else "dpo_weak_rm.yaml"
    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / recipe_file, smoke=True,
                         overrides=["strong.quantization.load_in_4bit=true", "strong.quantization.compute_dtype=float32"])
    rows = generate_testbed(size=8, seed=0, objectives=["helpful"])
    make_trainer(recipe, rows, str(tmp_path), "q", max_length=256)
    assert len(calls) == 1
