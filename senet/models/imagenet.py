"""ImageNet ResNets (He et al. 2015) with optional SE blocks.

Two layouts of the bottleneck:
- ``original``: stride 2 in the first 1x1 convolution of a stage, as in the Caffe
  ResNets that the SE paper builds on. Its multiply-adds are the GFLOPs the paper prints.
- ``v1.5``: stride 2 in the 3x3 convolution (torchvision's ResNet).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn

from senet.models.common import add_stages, attach_se, conv_bn, he_init
from senet.models.se import SEConfig

# Paper numbering: conv1 is stage 1, the four residual stages are 2..5.
IMAGENET_STAGES = (2, 3, 4, 5)
DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), with an SE block where ``se.placement`` says."""

    expansion = 4

    def __init__(
        self, in_ch: int, width: int, stride: int, layout: str, se: SEConfig | None
    ) -> None:
        super().__init__()
        out_ch = width * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if layout == "original" else (1, stride)
        self.conv1, self.bn1 = conv_bn(in_ch, width, 1, stride_1x1)
        self.conv2, self.bn2 = conv_bn(width, width, 3, stride_3x3)
        self.conv3, self.bn3 = conv_bn(width, out_ch, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(*conv_bn(in_ch, out_ch, 1, stride))
        attach_se(self, se, pre=in_ch, at_3x3=width, out=out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        where = self.placement
        out = self.se(x) if where == "pre" else x
        out = self.relu(self.bn1(self.conv1(out)))
        out = self.relu(self.bn2(self.conv2(out)))
        if where == "3x3":
            out = self.se(out)
        out = self.bn3(self.conv3(out))
        if where == "standard":
            out = self.se.scale_add(out, shortcut)
        elif where == "identity":
            out = self.se.scale_add(shortcut, out)
        else:
            out = out + shortcut
        out = self.relu(out)
        return self.se(out) if where == "post" else out


class ImageNetResNet(nn.Module):
    """ResNet-50/101/152. ``se_stages`` lists the paper stages (2..5) that carry SE;
    ``stage_reductions`` (stage -> r), where given, overrides ``se.reduction`` per stage."""

    def __init__(
        self,
        depth: int = 50,
        num_classes: int = 1000,
        layout: str = "original",
        se: SEConfig | None = None,
        se_stages: Sequence[int] = IMAGENET_STAGES,
        stem: str = "standard",
        stage_reductions: Mapping[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        # The released Caffe weights were trained with an unpadded, ceil-mode max-pool.
        if stem == "released":
            self.maxpool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        else:
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_ch = 64
        widths = [64 * 2**i for i in range(len(IMAGENET_STAGES))]
        in_ch = add_stages(
            self, IMAGENET_STAGES, DEPTHS[depth], widths, Bottleneck.expansion, in_ch,
            lambda c_in, width, stride, stage_se: Bottleneck(c_in, width, stride, layout, stage_se),
            se, se_stages, stage_reductions)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self.num_classes = num_classes
        self.default_input_size = 224
        he_init(self)

    def stages(self) -> Iterator[tuple[int, nn.Sequential]]:
        for i, stage in enumerate(IMAGENET_STAGES):
            yield stage, getattr(self, f"layer{i + 1}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for _, layer in self.stages():
            x = layer(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))

