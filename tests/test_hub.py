"""Adapters to the Hub, against a loopback server speaking the Hub's HTTP API (tests/hub_server.py): what arrives,
the model card's fields, no token or planted secret in any file, a failed push that loses nothing and says how to
retry."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hub_server import LoopbackHub

REPO = Path(__file__).resolve().parent.parent
TOKEN = "hf_loopbackTOKEN0123456789"
PLANTED = "planted-secret-value-42"


def env_for(endpoint: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "WANDB_"))}
    env.update(HF_ENDPOINT=endpoint, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf"), WANDB_MODE="disabled",
               MY_SERVICE_API_KEY=PLANTED, HF_HUB_OFFLINE="1")  # offline: the push alone goes online  # fmt: skip
    return env


def run(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "w2s_trl.cli", *cmd], capture_output=True, text=True, env=env,
                          timeout=300, cwd=REPO)  # fmt: skip


def test_a_run_pushes_its_adapters_and_a_model_card(tmp_path):
    recipe = REPO / "recipes" / "dpo_weak_rm.yaml"
    with LoopbackHub(TOKEN) as hub:
        env = env_for(hub.endpoint, tmp_path)
        # the secret also flows through the recipe (a command-line value): cards and W&B must not carry it
        out = run(["train", str(recipe), "--smoke", f"run.output_dir={tmp_path}", "hub.push=true",
                   "hub.stages=[student,ceiling]", f"tracking.project={PLANTED}", "tracking.report_to=[]"], env)  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        assert "hub.push turned off" in out.stdout and hub.state.repos == {}  # a smoke run never pushes by itself
        run_dir = tmp_path / "dpo_weak_rm-smoke"
        out = run(["push", str(run_dir)], env)  # the tiny model has no hub id: refused before anything is sent
        assert out.returncode == 2 and "set hub.base_model" in out.stderr and hub.state.repos == {}
        out = run(["push", str(run_dir), "--base-model", "org/tiny-base"], env)
        assert out.returncode == 0, out.stderr[-3000:]
        repos = hub.state.repos
    assert set(repos) == {"tester/dpo_weak_rm-smoke-student", "tester/dpo_weak_rm-smoke-ceiling"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for stage in ("student", "ceiling"):
        repo = repos[f"tester/dpo_weak_rm-smoke-{stage}"]
        files = repo["files"]
        assert repo["private"] is True
        assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                "tokenizer_config.json"} <= set(files)  # fmt: skip
        assert not any(name.startswith(("model", "pytorch_model")) for name in files)  # never base weights
        local = run_dir / stage / "adapter" / "adapter_model.safetensors"
        assert files["adapter_model.safetensors"] == local.read_bytes()
        config = json.loads(files["adapter_config.json"])
        assert config["base_model_name_or_path"] == "org/tiny-base"
        card = files["README.md"].decode()
        assert card.startswith("---\nbase_model: org/tiny-base\nlibrary_name: peft")
        acc = metrics["primary"]["accuracy"][stage]
        assert f"| {stage} (this adapter) | {acc['value']:.3f} [{acc['ci'][0]:.3f}, {acc['ci'][1]:.3f}] |" in card
        assert "PGR:" in card and "Knowledge cells" in card and "## Recipe (resolved; secrets removed)" in card
        assert ("Deception against the weak supervisor" in card) == (stage == "student")
        assert f'AutoPeftModelForCausalLM.from_pretrained("tester/dpo_weak_rm-smoke-{stage}")' in card
        assert "project: '<removed: secret>'" in card  # the planted value, scrubbed where it flowed
        for name, data in files.items():  # no secret in anything that left the machine
            assert TOKEN.encode() not in data and PLANTED.encode() not in data, name

    # the hub is gone: the push fails with the retry command, exit 2, the run untouched
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    out = run(["push", str(run_dir), "--stage", "student", "--base-model", "org/tiny-base"], env)
    assert out.returncode == 2 and f"Retry with: w2s-trl push {run_dir} --stage student" in out.stderr
    assert TOKEN not in out.stderr + out.stdout
    assert before == {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}

    # pushed later, under another name, public (stages: the run's hub.stages); an existing repo keeps its visibility
    with LoopbackHub(TOKEN) as hub:
        env = env_for(hub.endpoint, tmp_path)
        args = ["push", str(run_dir), "--repo-id", "lab/w2s-{stage}", "--base-model", "org/tiny-base"]
        assert run([*args, "--public"], env).returncode == 0
        assert set(hub.state.repos) == {"lab/w2s-student", "lab/w2s-ceiling"}
        assert hub.state.repos["lab/w2s-student"]["private"] is False
        out = run([*args, "--private", "--stage", "student"], env)
        assert out.returncode == 2 and "exists and is public, but this push asks for private" in out.stderr
        # a re-push replaces what an earlier push left (a stale vocab.json, an old .bin adapter), keeps the rest
        files = hub.state.repos["lab/w2s-student"]["files"]
        files.update({"vocab.json": b"{}", "adapter_model.bin": b"old", "notes/eval.md": b"mine",
                      "merged/model.safetensors": b"a merged model someone uploaded"})
        assert run([*args, "--public", "--stage", "student"], env).returncode == 0
        assert {"vocab.json", "adapter_model.bin"}.isdisjoint(files) and files["notes/eval.md"] == b"mine"
        assert "merged/model.safetensors" in files
        assert {"README.md", "adapter_config.json", "adapter_model.safetensors"} <= set(files)


def test_public_ids_and_scrubbing():
    from w2s_trl.models import public_id
    from w2s_trl.redact import REMOVED, scrub

    assert public_id("embedded:smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert public_id("org/model") == "org/model"
    got = scrub({"align": {"args": {"beta": 0.1, "hub_token": "hf_x"}}, "note": "uses abc123secret"}, ["abc123secret"])
    assert got == {"align": {"args": {"beta": 0.1, "hub_token": REMOVED}}, "note": f"uses {REMOVED}"}
    kept = {"max_new_tokens": 48, "keywords": ["knife"], "pad_token": "<pad>", "api_key": "k-123", "db_password": "p"}
    assert scrub(kept, []) == {**kept, "api_key": REMOVED, "db_password": REMOVED}  # names, not substrings
    assert scrub({"GITHUB_PAT": "ghp_1", "HF_AUTH": "a", "path": "/x", "author": "me"}, []) == {
        "GITHUB_PAT": REMOVED, "HF_AUTH": REMOVED, "path": "/x", "author": "me"}
    assert scrub("https://alice:s3cr3t@data.example/x.jsonl", []) == f"https://{REMOVED}@data.example/x.jsonl"


@pytest.mark.parametrize("template,message", [
    ("{user}/{model}", "only {user}, {run} and {stage} may be filled in"),
    ("just-a-name", "must name one repo as owner/name"),
])  # fmt: skip
def test_bad_repo_templates_fail_at_load(template, message):
    from pydantic import ValidationError

    from w2s_trl.recipe import HubSection

    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("}", r"\}")):
        HubSection(repo_id=template)


def test_hub_push_needs_a_loadable_base_and_a_valid_repo_at_load(tmp_path):
    from w2s_trl.errors import RecipeError
    from w2s_trl.recipe import load_recipe

    recipe = REPO / "recipes" / "dpo_weak_rm.yaml"
    assert load_recipe(recipe, ["hub.push=true"]).hub.push  # embedded: its public id
    with pytest.raises(RecipeError, match="has no hub id others could load the adapter onto: set hub.base_model"):
        load_recipe(recipe, ["hub.push=true", "strong.model=tiny:causal-lm"])
    with pytest.raises(RecipeError, match="which the Hub refuses"):
        load_recipe(recipe, ["hub.push=true", "hub.repo_id=org/{run}--{stage}"])
