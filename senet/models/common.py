"""Pieces shared by the ImageNet and CIFAR backbones."""

from __future__ import annotations

from torch import nn

from senet.models.se import SqueezeExcitation


def conv_bn(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1
) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)
    return conv, nn.BatchNorm2d(out_ch)


def he_init(model: nn.Module) -> None:
    """He (MSRA) initialisation for convolutions, as in the paper; BN to identity."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)


def se_blocks(model: nn.Module) -> dict[str, SqueezeExcitation]:
    """Every SE module by the paper's name ``SE_<stage>_<block>`` (blocks 1-based)."""
    found: dict[str, SqueezeExcitation] = {}
    for stage, layer in model.stages():
        for b, block in enumerate(layer, start=1):
            if block.se is not None:
                found[f"SE_{stage}_{b}"] = block.se
    return found
