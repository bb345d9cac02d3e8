"""The LDF salient-object network (Wei et al., "Label Decoupling Framework", CVPR 2020).

Written from the architecture described in official-model.md §7 so that the official ``model-40``
state dict loads strictly (543 tensors, 25,150,147 parameters): a ResNet-50 backbone (``bkbone.*``),
body and detail lateral branches (``conv{2..5}{b,d}``), two top-down decoders, an interaction encoder
for a second decoding pass, and three output heads. ``forward`` returns the six logit maps
(body1, detail1, fused1, body2, detail2, fused2); MagicBokeh keeps ``fused2``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Bottleneck blocks per ResNet-50 stage and each stage's inner width.
RESNET50_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))


def _up(x: torch.Tensor, size) -> torch.Tensor:
    # The official code resizes with mode="bilinear" and the default align_corners=False.
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Bottleneck(nn.Module):
    """ResNet bottleneck, stride on the 3x3 conv (ResNet v1.5, as torchvision's ImageNet weights)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    """ResNet-50 trunk without the classifier; returns the stride 4, 8, 16 and 32 features."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        inplanes = 64
        for i, (planes, blocks, stride) in enumerate(RESNET50_STAGES, start=1):
            # Every stage's first block has a projection shortcut (layer1's changes 64 -> 256 channels).
            down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                 nn.BatchNorm2d(planes * 4))
            layers = [Bottleneck(inplanes, planes, stride, down)]
            inplanes = planes * 4
            layers += [Bottleneck(inplanes, planes) for _ in range(1, blocks)]
            setattr(self, f"layer{i}", nn.Sequential(*layers))

    def forward(self, x: torch.Tensor):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), kernel_size=3, stride=2, padding=1)
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c2, c3, c4, c5


def _conv_bn(cin: int, cout: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout)


def _lateral(cin: int) -> nn.Sequential:
    """1x1 down to 64 channels, then 3x3, BN, ReLU (indices 0..3 as in the checkpoint)."""
    return nn.Sequential(nn.Conv2d(cin, 64, 1), nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU())


class Decoder(nn.Module):
    """Top-down decoder: coarse to fine, each level conv-BN-ReLU then bilinear up to the next level."""

    def __init__(self):
        super().__init__()
        for i in range(4):
            conv, bn = _conv_bn(64, 64)
            setattr(self, f"conv{i}", conv)
            setattr(self, f"bn{i}", bn)

    def forward(self, feats, extra=None) -> torch.Tensor:
        # feats / extra: four maps, coarsest (stride 32) first; extra comes from the encoder.
        out = None
        for i in range(4):
            x = feats[i] if extra is None else feats[i] + extra[i]
            if out is not None:
                x = x + _up(out, feats[i].shape[2:])
            out = F.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        return out


class Encoder(nn.Module):
    """Interaction encoder: the fused 128-channel map -> body and detail features at four scales."""

    def __init__(self):
        super().__init__()
        for i, cin in enumerate((128, 64, 64, 64), start=1):
            conv, bn = _conv_bn(cin, 64)
            setattr(self, f"conv{i}", conv)
            setattr(self, f"bn{i}", bn)
        for branch in ("b", "d"):
            for i in range(1, 5):
                conv, bn = _conv_bn(64, 64)
                setattr(self, f"conv{i}{branch}", conv)
                setattr(self, f"bn{i}{branch}", bn)

    def _cbr(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.relu(getattr(self, f"bn{name}")(getattr(self, f"conv{name}")(x)))

    def forward(self, fused: torch.Tensor):
        scales = [self._cbr("1", fused)]
        for i in range(2, 5):  # each coarser scale: 2x2 max-pool, then conv-BN-ReLU
            scales.append(self._cbr(str(i), F.max_pool2d(scales[-1], kernel_size=2, stride=2)))
        body = [self._cbr(f"{i + 1}b", s) for i, s in enumerate(scales)]
        detail = [self._cbr(f"{i + 1}d", s) for i, s in enumerate(scales)]
        return body[::-1], detail[::-1]  # coarsest first, as the decoders take them


class LDF(nn.Module):
    """The full LDF network; ``forward(x, size)`` returns six logit maps at ``size`` (default x's)."""

    def __init__(self):
        super().__init__()
        self.bkbone = ResNet50()
        for level, cin in ((5, 2048), (4, 1024), (3, 512), (2, 256)):
            setattr(self, f"conv{level}b", _lateral(cin))
            setattr(self, f"conv{level}d", _lateral(cin))
        self.encoder = Encoder()
        self.decoderb = Decoder()
        self.decoderd = Decoder()
        self.linearb = nn.Conv2d(64, 1, 3, padding=1)
        self.lineard = nn.Conv2d(64, 1, 3, padding=1)
        self.linear = nn.Sequential(nn.Conv2d(128, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                                    nn.Conv2d(64, 1, 3, padding=1))

    def forward(self, x: torch.Tensor, size=None):
        feats = self.bkbone(x)[::-1]  # c5, c4, c3, c2
        fb = [getattr(self, f"conv{lv}b")(f) for lv, f in zip((5, 4, 3, 2), feats)]
        fd = [getattr(self, f"conv{lv}d")(f) for lv, f in zip((5, 4, 3, 2), feats)]
        body1, detail1 = self.decoderb(fb), self.decoderd(fd)
        fused1 = torch.cat([body1, detail1], dim=1)
        eb, ed = self.encoder(fused1)
        body2, detail2 = self.decoderb(fb, eb), self.decoderd(fd, ed)
        fused2 = torch.cat([body2, detail2], dim=1)
        size = tuple(x.shape[2:]) if size is None else tuple(size)
        heads = (self.linearb(body1), self.lineard(detail1), self.linear(fused1),
                 self.linearb(body2), self.lineard(detail2), self.linear(fused2))
        return tuple(_up(h, size) for h in heads)

    def fused2(self, x: torch.Tensor, size=None) -> torch.Tensor:
        """Only the final fused logits (what MagicBokeh keeps), without computing the five others."""
        feats = self.bkbone(x)[::-1]
        fb = [getattr(self, f"conv{lv}b")(f) for lv, f in zip((5, 4, 3, 2), feats)]
        fd = [getattr(self, f"conv{lv}d")(f) for lv, f in zip((5, 4, 3, 2), feats)]
        fused1 = torch.cat([self.decoderb(fb), self.decoderd(fd)], dim=1)
        eb, ed = self.encoder(fused1)
        fused2 = torch.cat([self.decoderb(fb, eb), self.decoderd(fd, ed)], dim=1)
        return _up(self.linear(fused2), tuple(x.shape[2:]) if size is None else tuple(size))
