"""`python -m qwen3_tts_trt.commands ...`: the same as the `qwen3-tts-trt` script."""

import sys

from .main import main

sys.exit(main())
