"""Push a finished run's LoRA adapters to the Hugging Face Hub (recipe section `hub:`, or later `w2s-trl push RUN_DIR`).

What goes up, per stage (student by default): the adapter (never base weights), the tokenizer files, and a model card
(README.md) holding the base model as a hub id (an `embedded:` model is named by its public id, also written as the
adapter's `base_model_name_or_path` so `AutoPeftModelForCausalLM.from_pretrained(repo)` loads it anywhere), the
metrics with their intervals, PGR and the knowledge cells, the reward source, the data, library versions, a load
snippet and the resolved recipe with secrets removed. The token comes from the environment (HF_TOKEN) or the login
(`hf auth login`), never from a recipe. The files are assembled in a temporary folder: the run directory is only read,
so a failed push loses nothing; it prints the command that retries it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from w2s_trl.errors import W2SError
from w2s_trl.redact import scrub

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "vocab.json", "merges.txt", "added_tokens.json", "tokenizer.model")  # fmt: skip

# What a w2s-trl push writes: on a re-push, files of these kinds that the new push does not carry (another
# tokenizer's vocab.json, an old adapter) are deleted in the same commit; anything else in the repo is left alone
# (exact top-level names: a glob's * would cross folders and take a merged model's shards with it)
PUSHED_PATTERNS = ["README.md", "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", *TOKENIZER_FILES]


class PushError(W2SError):
    """A push failed or cannot start; the run directory is untouched (the message says how to retry)."""


def base_model_id(spec: str, override: str | None = None) -> str:
    """The base named in the model card and adapter config (models.loadable_base_id), or the error that says how to
    name one."""
    from w2s_trl.models import loadable_base_id

    base = loadable_base_id(spec, override)
    if base is None:
        raise PushError(f"the strong model '{spec}' has no hub id others could load the adapter onto: set "
                        "hub.base_model (or `w2s-trl push --base-model`) to the hub id of the same weights")  # fmt: skip
    return base


def repo_name(template: str, run_name: str, stage: str, user: str | None) -> str:
    if "{user}" in template and not user:
        raise PushError("hub.repo_id needs {user} but no Hugging Face login was found: set HF_TOKEN or run "
                        "`hf auth login`, or give hub.repo_id as org/name")  # fmt: skip
    return template.format(user=user, run=run_name, stage=stage)


@contextlib.contextmanager
def hub_online() -> Iterator[None]:
    """The run may be offline (run.offline: auto with local models); a push is the one thing allowed online."""
    from huggingface_hub import constants

    saved_env = {k: os.environ.pop(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") if k in os.environ}
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved
        os.environ.update(saved_env)


def _fmt(stat: dict | None, signed: bool = False) -> str:
    from w2s_trl.report import fmt_interval

    return fmt_interval(stat, signed)


def model_card(repo_id: str, stage: str, recipe: dict, metrics: dict, base: str) -> str:
    """README.md of the adapter repo: YAML front matter the Hub reads, then what the run measured."""
    import yaml

    trainer = recipe["align"]["trainer"]
    front = {"base_model": base, "library_name": "peft", "pipeline_tag": "text-generation",
             "tags": ["w2s-trl", "weak-to-strong", "trl", trainer, "lora"]}  # fmt: skip
    from w2s_trl.schema import ONLINE_TRAINERS

    primary = metrics.get("primary", {})
    named = f"[{base}](https://huggingface.co/{base})"  # a hub id (base_model_id)
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {repo_id}", "",
             f"LoRA adapter (`{stage}`) of {named}, trained by w2s-trl (weak-to-strong alignment on TRL) with "
             f"`{trainer}` in run `{metrics.get('run', {}).get('name', '?')}`: "
             + ("on ground truth (the ceiling)." if stage == "ceiling" else "online, rewarded by the weak reward."
                if trainer in ONLINE_TRAINERS else "on the weak supervisor's labels."),
             "", "## Results on `test`", "",
             f"Ground-truth pair accuracy ({metrics.get('n_test', '?')} pairs), 95% paired bootstrap intervals "
             f"({metrics.get('bootstrap', {}).get('resamples', '?')} resamples):", "",
             "| model | accuracy |", "|:---|---:|"]  # fmt: skip
    lines += [f"| {m}{' (this adapter)' if m == stage else ''} | {_fmt(s)} |" for m, s in primary.get("accuracy", {}).items()]
    free = metrics.get("reference_free", {}).get("accuracy", {})
    if "base" in free and "base" not in primary.get("accuracy", {}):  # the base is its own reference: scored free
        lines += [f"| base (before alignment, reference-free) | {_fmt(free['base'])} |",
                  f"| {stage} (reference-free) | {_fmt(free.get(stage))} |"]  # fmt: skip
    pgr = primary.get("pgr")
    if pgr:
        lines += ["", f"PGR: {_fmt(pgr, signed=True) if pgr.get('value') is not None else 'null (' + str(pgr.get('note')) + ')'}"]
    if primary.get("regions"):
        lines += ["", f"Knowledge cells (reference `{primary.get('region_reference')}`), error of this adapter:", "",
                  "| cell | n | error |", "|:---|---:|---:|"]  # fmt: skip
        lines += [f"| {c} | {info['n']} | {_fmt(info['error'].get(stage))} |" for c, info in primary["regions"].items()]
    deception = metrics.get("deception")
    if deception and stage == "student":
        lines += ["", f"Deception against the weak supervisor (K_s from `{deception.get('reference')}`): DS "
                  f"{_fmt(deception['ds'])}, chance {_fmt(deception['chance'])}, DS - chance "
                  f"{_fmt(deception['ds_minus_chance'], signed=True)}, gap err(U_w&K_s) - err(K_w&K_s) "
                  f"{_fmt(deception['gap'], signed=True)}."]  # fmt: skip
    if metrics.get("flags"):
        lines += ["", "What this run cannot tell:", ""] + [f"- {f}" for f in metrics["flags"]]
    lines += ["", "## How it was trained", "",
              f"- Weak supervisor / reward: `{json.dumps(scrub(recipe['weak']['reward']))}`",
              f"- Data: `{recipe['data']['source']}`, rows per split {metrics.get('data', {}).get('rows')}",
              f"- Trainer arguments: `{json.dumps(scrub(recipe['align']['args']))}`",
              f"- Library versions: `{json.dumps(metrics.get('versions', {}))}`", "",
              "## Load", "", "```python", "from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer",
              "", f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")', "```", "",
              "## Recipe (resolved; secrets removed)", "", "```yaml",
              yaml.safe_dump(scrub(recipe), sort_keys=False).strip(), "```", ""]  # fmt: skip
    return scrub("\n".join(lines))


def stage_folder(run_dir: Path, stage: str, recipe: dict, metrics: dict, repo_id: str, base: str,
                 out: Path) -> list[str]:  # fmt: skip
    """Assemble what goes up for one stage in `out`; returns the file names."""
    adapter = run_dir / stage / "adapter"
    missing = [f for f in ADAPTER_FILES if not (adapter / f).exists()]
    if missing:
        raise PushError(f"{adapter}: no finished adapter ({', '.join(missing)} missing): run the stage first")
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        full = [k for k in f.keys() if "lora_" not in k]
    if full:  # modules_to_save or trained embeddings: whole base matrices would leave with the adapter
        raise PushError(f"{adapter}: the adapter holds full weight tensors ({', '.join(full[:3])}...), not only LoRA "
                        "matrices; w2s-trl pushes adapters, never base weights")  # fmt: skip
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = base
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2))
    shutil.copy(adapter / "adapter_model.safetensors", out / "adapter_model.safetensors")
    for name in TOKENIZER_FILES:
        if (adapter / name).exists():
            shutil.copy(adapter / name, out / name)
    (out / "README.md").write_text(model_card(repo_id, stage, recipe, metrics, base))
    return sorted(p.name for p in out.iterdir())


def push_run(run_dir: Path, stages: list[str] | None = None, repo_id: str | None = None,
             private: bool | None = None, base_model: str | None = None) -> dict[str, str]:  # fmt: skip
    """Push the adapters of a finished run; returns {stage: repo url}. Settings default to the run's `hub:` section."""
    import yaml
    from huggingface_hub import HfApi

    run_dir = Path(run_dir)
    for name in ("recipe.resolved.yaml", "metrics.json"):
        if not (run_dir / name).exists():
            raise PushError(f"{run_dir}: no {name}; give the folder of a finished run (runs/<run.name>)")
    recipe = yaml.safe_load((run_dir / "recipe.resolved.yaml").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    hub = recipe.get("hub") or {}
    if base_model:
        recipe["hub"] = hub = {**hub, "base_model": base_model}
    base = base_model_id(recipe["strong"]["model"], hub.get("base_model"))  # before anything is sent
    stages = stages or hub.get("stages") or ["student"]
    template = repo_id or hub.get("repo_id") or "{user}/{run}-{stage}"
    private = hub.get("private", True) if private is None else private
    urls = {}
    with hub_online():
        api = HfApi()
        user = None
        if "{user}" in template:
            try:
                user = api.whoami()["name"]
            except Exception as e:  # noqa: BLE001 (no token, bad token, no network: one message)
                retry = " ".join(f"--stage {s}" for s in stages)
                raise PushError(f"could not find the Hugging Face user ({type(e).__name__}: {scrub(str(e))}); the "
                                f"run is intact. Retry with: w2s-trl push {run_dir} {retry}") from None  # fmt: skip
        for stage in stages:
            rid = repo_name(template, recipe["run"]["name"], stage, user)
            with tempfile.TemporaryDirectory(prefix="w2s-trl-push-") as tmp:
                files = stage_folder(run_dir, stage, recipe, metrics, rid, base, Path(tmp))
                print(f"[w2s-trl] hub: pushing {stage} to {rid} ({', '.join(files)})", flush=True)
                try:
                    api.create_repo(rid, private=private, exist_ok=True, repo_type="model")
                    if api.repo_info(rid, repo_type="model").private != private:  # an existing repo keeps its own
                        raise PushError(f"{rid} exists and is {'public' if private else 'private'}, but this push "
                                        f"asks for {'private' if private else 'public'}: change it on the Hub, or push "
                                        "under another --repo-id")  # fmt: skip
                    info = api.upload_folder(folder_path=tmp, repo_id=rid, repo_type="model",
                                             delete_patterns=PUSHED_PATTERNS,
                                             commit_message=f"w2s-trl: {stage} adapter of run {recipe['run']['name']}")
                except PushError:
                    raise
                except Exception as e:  # noqa: BLE001
                    raise PushError(f"pushing {stage} to {rid} failed ({type(e).__name__}: {scrub(str(e))}); the run "
                                    f"is intact. Retry with: w2s-trl push {run_dir} --stage {stage}") from None  # fmt: skip
                urls[stage] = str(getattr(info, "commit_url", "") or rid)
    return urls
