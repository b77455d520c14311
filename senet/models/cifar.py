"""CIFAR networks: pre-activation ResNets (He et al. 2016, "Identity Mappings")
and the wide ResNet WRN-16-8 (Zagoruyko & Komodakis), with optional SE blocks.

In a pre-activation unit the BN-ReLU that starts the residual branch also feeds a
projection shortcut (the first unit of a stage), as in He et al.'s code.

SE-PRE (Fig. 5(c)) rescales the residual branch only and leaves the shortcut as it is.
Here it therefore acts on the pre-activated input, directly before the first convolution
(the tensor the ImageNet model's SE-PRE sees too), so that a projection shortcut is
built from relu(bn1(x)) exactly as in the network without SE.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from senet.models.common import add_stages, attach_se, he_init
from senet.models.se import SEConfig

CIFAR_STAGES = (1, 2, 3)


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False)


class _PreActUnit(nn.Module):
    """Shared wiring: SE placement around a pre-activated residual branch."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, se: SEConfig | None, se_at_3x3: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _conv(in_ch, out_ch, 1, stride) if stride != 1 or in_ch != out_ch else None
        attach_se(self, se, pre=in_ch, at_3x3=se_at_3x3, out=out_ch)

    def branch(self, pre: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        where = self.placement
        pre = self.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(pre)
        out = self.branch(self.se(pre) if where == "pre" else pre)
        if where == "standard":
            return self.se.scale_add(out, shortcut)
        if where == "identity":
            return self.se.scale_add(shortcut, out)
        out = out + shortcut
        return self.se(out) if where == "post" else out


class PreActBasic(_PreActUnit):
    """BN-ReLU-3x3, BN-ReLU-3x3. ``3x3`` placement puts SE after the first 3x3."""

    def __init__(self, in_ch: int, width: int, stride: int, se: SEConfig | None) -> None:
        super().__init__(in_ch, width, stride, se, se_at_3x3=width)
        self.conv1 = _conv(in_ch, width, 3, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3)

    def branch(self, pre: torch.Tensor) -> torch.Tensor:
        out = self.conv1(pre)
        if self.placement == "3x3":
            out = self.se(out)
        return self.conv2(self.relu(self.bn2(out)))


class PreActBottleneck(_PreActUnit):
    """BN-ReLU-1x1, BN-ReLU-3x3 (carries the stride), BN-ReLU-1x1 (x4)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, se: SEConfig | None) -> None:
        super().__init__(in_ch, width * self.expansion, stride, se, se_at_3x3=width)
        self.conv1 = _conv(in_ch, width, 1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, width * self.expansion, 1)

    def branch(self, pre: torch.Tensor) -> torch.Tensor:
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        if self.placement == "3x3":
            out = self.se(out)
        return self.conv3(self.relu(self.bn3(out)))


class CifarResNet(nn.Module):
    """A 3x3 stem, three stages of pre-activation units, BN-ReLU, global pool, FC."""

    def __init__(
        self,
        unit: str,
        blocks_per_stage: int,
        widths: Sequence[int] = (16, 32, 64),
        num_classes: int = 10,
        se: SEConfig | None = None,
        se_stages: Sequence[int] = CIFAR_STAGES,
        stem_channels: int = 16,
        stage_reductions: Mapping[int, int] | None = None,
    ) -> None:
        super().__init__()
        block_cls = PreActBottleneck if unit == "bottleneck" else PreActBasic
        expansion = getattr(block_cls, "expansion", 1)
        self.conv1 = _conv(3, stem_channels, 3)
        in_ch = stem_channels
        in_ch = add_stages(self, CIFAR_STAGES, [blocks_per_stage] * len(CIFAR_STAGES), widths,
                           expansion, in_ch, block_cls, se, se_stages, stage_reductions)
        self.bn = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self.num_classes = num_classes
        self.default_input_size = 32
        he_init(self)

    def stages(self) -> Iterator[tuple[int, nn.Sequential]]:
        for i, stage in enumerate(CIFAR_STAGES):
            yield stage, getattr(self, f"layer{i + 1}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        for _, layer in self.stages():
            x = layer(x)
        x = self.relu(self.bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))
