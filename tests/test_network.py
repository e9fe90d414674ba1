"""The ExCNet network: size, shapes, initialisations, TF "SAME" pooling and the affine layer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_backlit

from excnet.base import base_layer, network_input
from excnet.colour import luminance
from excnet.curve import s_curve
from excnet.loss import block_loss
from excnet.network import ARCHITECTURES, Affine, ExCNet, max_pool_same, parameter_count


def tf_same_max_pool(x: np.ndarray) -> np.ndarray:
    """3x3 / stride-2 max-pool with TensorFlow "SAME" padding, written out loop by loop.

    TF: out = ceil(n / 2); total padding = max((out - 1) * 2 + 3 - n, 0), the smaller half
    before, the rest after; padded cells never win.
    """
    h, w = x.shape
    oh, ow = math.ceil(h / 2), math.ceil(w / 2)
    top = max((oh - 1) * 2 + 3 - h, 0) // 2
    left = max((ow - 1) * 2 + 3 - w, 0) // 2
    out = np.empty((oh, ow))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * 2 - top, j * 2 - left
            out[i, j] = x[max(r0, 0):r0 + 3, max(c0, 0):c0 + 3].max()
    return out


@pytest.fixture(scope="module")
def nets() -> dict[str, ExCNet]:
    """One identity-initialised network per architecture (the reference one is slow to build)."""
    torch.manual_seed(0)
    return {arch: ExCNet(arch, init="identity") for arch in ARCHITECTURES}


def test_reference_parameter_count(nets):
    # conv: 1*64*9+64 + 64*128*9+128 + 128*256*9+256 + 256*512*9+512 + 512*512*9+512
    # affines: 2 * (64+128+256+512+512 + 512+256+128)
    # dense: 8192*512+512 + 512*256+256 + 256*128+128; heads: 2 * (128 + 1)
    assert parameter_count(nets["reference"]) == 8_273_666


def test_small_is_much_smaller(nets):
    assert parameter_count(nets["small"]) < parameter_count(nets["reference"]) / 50


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_output_shape(nets, arch):
    out = nets[arch](torch.rand(3, 1, 128, 128))
    assert out.shape == (3, 2)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_identity_init_predicts_exactly_zero(nets, arch):
    with torch.no_grad():
        out = nets[arch](torch.rand(4, 1, 128, 128))
    assert torch.equal(out, torch.zeros(4, 2))


def test_reference_init_starts_far_from_identity():
    torch.manual_seed(0)
    net = ExCNet("reference", init="reference")
    x = torch.from_numpy(network_input(base_layer(luminance(make_backlit(128, 128)))))[None, None]
    with torch.no_grad():
        phi = net(x)[0]
    # phi of several units (about (-7.8, -10.4) here); E about 4.6e3 where the identity has 0
    assert float(phi.abs().max()) > 2.0
    loss = float(block_loss(x, s_curve(x, phi[0], phi[1]))[0])
    assert loss > 1e3
    conv = net.convs[0].requires_grad_(False)
    assert torch.all(conv.bias == 0.1)
    assert float(conv.weight.abs().max()) <= 0.2
    # truncated at 2 sigma: std 0.88 sigma
    assert float(net.convs[2].weight.detach().std()) == pytest.approx(0.1 * 0.88, rel=0.05)
    assert torch.all(net.dense[0].bias == 0)
    bound = math.sqrt(6 / (8192 + 512))  # Glorot uniform
    assert float(net.dense[0].weight.detach().abs().max()) <= bound


def test_unknown_arch_and_init_rejected():
    with pytest.raises(ValueError, match="architecture"):
        ExCNet("huge")
    with pytest.raises(ValueError, match="init"):
        ExCNet("small", init="zeros")


def test_same_pool_sizes_through_the_network():
    x = torch.rand(1, 1, 128, 128)
    sizes = []
    for _ in range(5):
        x = max_pool_same(x)
        sizes.append(x.shape[-1])
    assert sizes == [64, 32, 16, 8, 4]


@pytest.mark.parametrize("shape", [(4, 4), (5, 5), (6, 7), (1, 3), (8, 2), (9, 11)])
def test_same_pool_matches_tensorflow_semantics(shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape)  # negative values too: padding must never win
    got = max_pool_same(torch.from_numpy(x)[None, None])[0, 0].numpy()
    np.testing.assert_array_equal(got, tf_same_max_pool(x))


def test_same_pool_even_size_pads_after_only():
    # 4 x 4: output (0, 0) covers rows/cols 0..2 (no padding before), (1, 1) covers 2..3
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
    got = max_pool_same(x)[0, 0]
    torch.testing.assert_close(got, torch.tensor([[10.0, 11.0], [14.0, 15.0]]))


def test_affine_is_batch_norm_in_inference_mode():
    aff = Affine(3)
    with torch.no_grad():
        aff.gamma.copy_(torch.tensor([1.0, -2.0, 0.5]))
        aff.beta.copy_(torch.tensor([0.0, 0.3, -1.0]))
    x = torch.randn(2, 3, 4, 5, dtype=torch.float32)
    expected = (aff.gamma.view(1, 3, 1, 1) * x / math.sqrt(1.001)
                + aff.beta.view(1, 3, 1, 1))
    torch.testing.assert_close(aff(x), expected)
    # dense layers: (N, C)
    x2 = torch.randn(6, 3)
    torch.testing.assert_close(aff(x2), aff.gamma * x2 / math.sqrt(1.001) + aff.beta)
    # equal to torch's batch norm in eval mode with running mean 0, variance 1, eps 1e-3
    bn = torch.nn.BatchNorm2d(3, eps=1e-3).eval()
    with torch.no_grad():
        bn.weight.copy_(aff.gamma)
        bn.bias.copy_(aff.beta)
    torch.testing.assert_close(aff(x), bn(x))


def test_affine_parameters_are_trainable():
    aff = Affine(4)
    assert {n for n, p in aff.named_parameters() if p.requires_grad} == {"gamma", "beta"}
