#!/usr/bin/env bash
# Every GPU path in one command (goal: <= 8 min on one H100/H200), with a JSON report written after every
# phase: bundled problems checked and timed on the GPU (timing CV over repeats), the GPU-only attacks, vLLM
# generation with the embedded model, two GRPO steps with vLLM colocated, `kernelrl eval` with fast_p.
# Exit 1 on the first broken path (outputs/gpu_check/report.json says which, with the logs next to it).
#   scripts/gpu_check.sh [--out outputs/gpu_check] [--repeats 5] [--skip vllm,grpo]
#   scripts/gpu_check.sh --cpu-smoke          # no GPU: the CPU-side parts (what tests/test_gpu_check.py runs)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || bash scripts/install.sh
if [[ " $* " != *" --cpu-smoke "* ]] && ! "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
  echo "gpu_check: installing the gpu extra (vllm)" >&2
  "$VENV/bin/python" -m pip install -q -e ".[gpu]"
fi
exec timeout "${KERNELRL_GPU_CHECK_TIMEOUT:-1200}" "$VENV/bin/python" -m kernelrl.train.gpu_check "$@"
