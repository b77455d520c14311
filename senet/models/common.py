"""Pieces shared by the ImageNet and CIFAR backbones."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from torch import nn

from senet.models.se import SEConfig, SqueezeExcitation


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


def attach_se(block: nn.Module, se: SEConfig | None, *, pre: int, at_3x3: int,
              out: int) -> None:
    """``block.placement`` and ``block.se``: an SE block sized for where ``se.placement``
    puts it (the unit's input, after its 3x3 convolution, or its output), or none."""
    block.placement = se.placement if se else None
    block.se = None if se is None else SqueezeExcitation(
        {"pre": pre, "3x3": at_3x3}.get(se.placement, out), se)


def add_stages(model: nn.Module, stages: Sequence[int], blocks: Sequence[int],
               widths: Sequence[int], expansion: int, in_ch: int,
               make_block: Callable[[int, int, int, SEConfig | None], nn.Module],
               se: SEConfig | None, se_stages: Sequence[int],
               stage_reductions: Mapping[int, int] | None) -> int:
    """``layer1``..: stage i holds ``blocks[i]`` units of ``widths[i]``, the first with
    stride 2 after the first stage, and SE (r per stage where given) where ``se_stages``
    says. Returns the channels the last stage puts out."""
    for i, (stage, n, width) in enumerate(zip(stages, blocks, widths, strict=True)):
        stage_se = se if stage in se_stages else None
        if stage_se is not None and stage_reductions is not None:
            stage_se = replace(stage_se, reduction=stage_reductions[stage])
        layer = []
        for b in range(n):
            layer.append(make_block(in_ch, width, 2 if (b == 0 and i > 0) else 1, stage_se))
            in_ch = width * expansion
        model.add_module(f"layer{i + 1}", nn.Sequential(*layer))
    return in_ch
