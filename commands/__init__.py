"""The `qwen3-tts-trt` command line: `say`, `bench`, `voice create` and `serve`, a module each,
assembled into one parser by `main.py` (also run as `python -m qwen3_tts_trt.commands`)."""
