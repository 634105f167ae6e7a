#!/usr/bin/env bash
# Export Qwen3-TTS-12Hz to ONNX and build TensorRT engines for this GPU: build.sh MODEL [options]
# Run `build.sh --help` for the options. Everything happens in export/build.py.
set -euo pipefail
cd "$(dirname "$0")"
exec python -m export.build "$@"
