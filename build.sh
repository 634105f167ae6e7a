#!/usr/bin/env bash
# Export Qwen3-TTS-12Hz to ONNX and build TensorRT engines for this GPU: build.sh MODEL [options]
# Run `build.sh --help` for the options. Everything happens in export/build.py. Paths (MODEL,
# --out) are taken relative to the directory you run it from, not to this script's folder.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")" && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec python -m qwen3_tts_trt.export.build "$@"
