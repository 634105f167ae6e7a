"""The stateful streaming codec equals the whole-utterance decode, whatever the chunking."""

from __future__ import annotations

import copy

import pytest
import torch

from qwen3_tts_trt.runtime.checkpoint import load_networks


def _stream(codec, codes, sizes):
    state, out, i, k = codec.init_state(1), [], 0, 0
    while i < codes.shape[-1]:
        n = sizes[min(k, len(sizes) - 1)]
        pcm, state = codec.stream_step(codes[..., i:i + n], state)
        out.append(pcm)
        i, k = i + n, k + 1
    return torch.cat(out, dim=-1)


@pytest.fixture(scope="module")
def codec(tiny_custom_voice):
    return load_networks(tiny_custom_voice).codec


@pytest.fixture(scope="module")
def codes():
    return torch.randint(0, 2048, (1, 16, 300), generator=torch.Generator().manual_seed(3))


@torch.inference_mode()
@pytest.mark.parametrize("sizes", [[1, 2, 4, 8, 10], [1], [3, 7], [25], [300]], ids=str)
def test_chunks_concatenate_to_whole_decode(codec, codes, sizes):
    whole = codec.decode(codes)
    streamed = _stream(codec, codes, sizes)
    assert streamed.shape == whole.shape == (1, 300 * 1920)
    assert (streamed - whole).abs().max() <= 1e-5


@torch.inference_mode()
def test_streaming_is_exact_in_float64(codec, codes):
    """In fp64 the difference is rounding only, which shows the state carries everything."""
    c64 = copy.deepcopy(codec).double()
    whole = c64.decode(codes[..., :120])
    streamed = _stream(c64, codes[..., :120], [1, 2, 4, 8, 10])
    assert (streamed - whole).abs().max() <= 1e-12


@torch.inference_mode()
def test_window_history_matters(codec, codes):
    """Chunks decoded without the carried state differ: the tests above can fail."""
    whole = codec.decode(codes[..., :100])
    first, _ = codec.stream_step(codes[..., :80], codec.init_state(1))
    second, _ = codec.stream_step(codes[..., 80:100], codec.init_state(1))
    assert (torch.cat([first, second], -1) - whole).abs().max() > 1e-3
