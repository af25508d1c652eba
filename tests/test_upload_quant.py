import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from adaptinf.toolchain.butterfly import fake_quantize
from adaptinf.upload_quant import dequantize, quantize

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (1, 3, 4, 4), elements=finite))
def test_round_trip_error_is_at_most_half_a_step(x):
    q = quantize(x)
    assert q.data.dtype == np.uint8
    err = np.abs(dequantize(*q) - x).max()
    assert err <= q.scale / 2 + 1e-3 * max(1.0, np.abs(x).max())


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, (1, 2, 3, 3), elements=finite))
def test_training_fake_quant_equals_runtime_quantisation(x):
    """The accuracy measured in training is the accuracy of what crosses the link."""
    runtime = dequantize(*quantize(x))
    training = fake_quantize(torch.from_numpy(x)).numpy()
    assert np.allclose(runtime, training, atol=1e-5 * max(1.0, float(np.abs(x).max())))


def test_zero_is_exact_and_constant_tensors_survive():
    x = np.array([[0.0, 0.5, 3.0, 0.0]], np.float32)
    assert dequantize(*quantize(x))[0, 0] == 0.0
    c = np.full((1, 4), 2.5, np.float32)
    assert np.allclose(dequantize(*quantize(c)), c, atol=2.5 / 255)
    z = np.zeros((1, 4), np.float32)
    assert np.array_equal(dequantize(*quantize(z)), z)
