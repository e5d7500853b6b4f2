"""The U-Net matches the paper's architecture and geometry."""

import math

import pytest
import torch

from segrt.export.models.unet import UNet, UNetConfig, geometry, output_size


def test_paper_configuration_has_23_conv_layers_and_572_to_388():
    model = UNet(UNetConfig())
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert len(convs) == 23
    assert output_size(UNetConfig(), 572) == 388
    g = geometry(UNetConfig())
    assert (g.size_min, g.size_step, g.border) == (188, 16, 92)
    assert 30.0e6 < sum(p.numel() for p in model.parameters()) < 31.1e6  # the widely quoted ~31M


@pytest.mark.parametrize(
    "cfg", [UNetConfig(depth=3, base_channels=4), UNetConfig(depth=4, base_channels=4, padding="same")]
)
def test_geometry_rule_matches_forward_pass(cfg):
    g = geometry(cfg)
    model = UNet(cfg).eval()
    for size in range(g.size_min, g.size_min + 3 * g.size_step + 1):
        expected = output_size(cfg, size)
        assert (expected is not None) == g.is_valid(size), size
        if expected is not None and size < g.size_min + 2 * g.size_step:
            with torch.no_grad():
                out = model(torch.zeros(1, 1, size, size + g.size_step))
            assert out.shape[2:] == (expected, output_size(cfg, size + g.size_step))
            assert size - expected == 2 * g.border


def test_he_initialisation_std():
    torch.manual_seed(0)
    model = UNet(UNetConfig(depth=3, base_channels=32))
    conv = model.downs[1][1][0]  # 3x3 conv, 128 -> 128 channels
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    assert conv.bias.abs().max().item() == 0


def test_dropout_only_in_training():
    model = UNet(UNetConfig(depth=2, base_channels=4, dropout=0.5))
    x = torch.randn(1, 1, 44, 44)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(x), model(x))
