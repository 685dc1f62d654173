"""X3D-M as PySlowFast builds it (recipe x3d.yaml).

slowfast/models/video_model_builder.py `X3D` with configs/Kinetics/X3D_M.yaml: a ResNet whose stages
are expanded from a tiny base network (X3D paper, Feichtenhofer 2020):

  * stem (`s1.pathway0_stem`): conv_xy 1x3x3 stride 1x2x2 (3 -> 24 channels = round(12 * width
    factor 2.0)), then a depthwise temporal conv 5x1x1 (`conv`), BN, ReLU; no pooling.
  * stages res2..res5 (`s2`..`s5`) with 24, 48, 96, 192 output channels (base widths 12, 24, 48, 96
    x width factor 2.0), ceil(2.2 x [1, 2, 5, 3]) = 3, 5, 11, 7 blocks (depth factor 2.2), spatial
    stride 2 in each stage's first block. Each block's branch2 is X3DTransform: 1x1x1 conv to
    2.25 x the output width (`a`), a channel-wise (depthwise) 3x3x3 conv (`b`), squeeze-excitation
    (`se`, ratio 1/16, every other block starting with the first), Swish, 1x1x1 conv back (`c`).
  * head (`head`): conv_5 1x1x1 192 -> 432 + BN + ReLU, global average pool, lin_5 1x1x1 432 -> 2048
    (no BN, X3D.BN_LIN5 False) + ReLU, dropout 0.5, `projection`.

Initialisation: PySlowFast's (kaiming fan_out convs, zero-init last BN of each block with
RESNET.ZERO_INIT_FINAL_BN True, N(0, 0.01) classifier). no_weight_decay() returns the BN parameters
(BN.WEIGHT_DECAY 0 in the X3D recipe).
"""
import math
from typing import Sequence

import torch
import torch.nn as nn

from models.resnet import ResBlock, ResStage, VideoStem
from models.video_common import (PYSLOWFAST_MEAN, PYSLOWFAST_STD, VideoInput, batchnorm_param_names, init_pyslowfast_cnn,
                                 load_pretrained, round_width)


class X3DStem(nn.Module):
    def __init__(self, dim_in, dim_out, temporal_kernel=5):
        super().__init__()
        self.conv_xy = nn.Conv3d(dim_in, dim_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv = nn.Conv3d(dim_out, dim_out, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0),
                              groups=dim_out, bias=False)
        self.bn = nn.BatchNorm3d(dim_out)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(self.conv_xy(x))))


class SE(nn.Module):
    """Squeeze-excitation: global average -> 1x1x1 conv (fc1) -> ReLU -> 1x1x1 conv (fc2) -> sigmoid."""

    def __init__(self, dim_in, ratio):
        super().__init__()
        dim_fc = round_width(dim_in, ratio, min_width=8, divisor=8)
        self.fc1 = nn.Conv3d(dim_in, dim_fc, 1, bias=True)
        self.fc1_act = nn.ReLU()
        self.fc2 = nn.Conv3d(dim_fc, dim_in, 1, bias=True)

    def forward(self, x):
        s = x.mean(dim=(2, 3, 4), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.fc1_act(self.fc1(s))))


class X3DTransform(nn.Module):
    """1x1x1 (a) -> BN -> ReLU -> channel-wise T x 3 x 3 with the stride (b) -> BN -> [SE] -> Swish ->
    1x1x1 (c) -> BN (zero-initialised)."""

    def __init__(self, dim_in, dim_out, temporal_kernel, stride, dim_inner, use_se, se_ratio=0.0625):
        super().__init__()
        self.a = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.a_bn = nn.BatchNorm3d(dim_inner)
        self.a_relu = nn.ReLU(inplace=True)
        self.b = nn.Conv3d(dim_inner, dim_inner, (temporal_kernel, 3, 3), stride=(1, stride, stride),
                           padding=(temporal_kernel // 2, 1, 1), groups=dim_inner, bias=False)
        self.b_bn = nn.BatchNorm3d(dim_inner)
        if use_se:
            self.se = SE(dim_inner, se_ratio)
        self.b_relu = nn.SiLU()  # Swish
        self.c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.c_bn = nn.BatchNorm3d(dim_out)
        self.c_bn.transform_final_bn = True

    def forward(self, x):
        x = self.b_bn(self.b(self.a_relu(self.a_bn(self.a(x)))))
        if hasattr(self, "se"):
            x = self.se(x)
        return self.c_bn(self.c(self.b_relu(x)))


class X3DHead(nn.Module):
    def __init__(self, dim_in, dim_inner, dim_out, num_classes, dropout=0.5, bn_lin5=False):
        super().__init__()
        self.conv_5 = nn.Conv3d(dim_in, dim_inner, 1, bias=False)
        self.conv_5_bn = nn.BatchNorm3d(dim_inner)
        self.conv_5_relu = nn.ReLU(inplace=True)
        self.lin_5 = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        if bn_lin5:
            self.lin_5_bn = nn.BatchNorm3d(dim_out)
        self.lin_5_relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(dim_out, num_classes)

    def features(self, xs):
        """res5 -> conv_5, BN, ReLU, global average pool, lin_5, ReLU -> [B, dim_out]."""
        x = self.conv_5_relu(self.conv_5_bn(self.conv_5(xs[0])))
        x = self.lin_5(x.mean(dim=(2, 3, 4), keepdim=True))
        if hasattr(self, "lin_5_bn"):
            x = self.lin_5_bn(x)
        return self.lin_5_relu(x).flatten(1)

    def forward(self, z):
        return self.projection(self.dropout(z))


class X3D(nn.Module):
    """The arguments after `*` are the recipe's model section (PySlowFast's X3D.* names, lower-cased;
    X3D-M by default)."""

    def __init__(self, num_classes: int = 400, mean: Sequence[float] = PYSLOWFAST_MEAN,
                 std: Sequence[float] = PYSLOWFAST_STD, *, width_factor: float = 2.0, depth_factor: float = 2.2,
                 bottleneck_factor: float = 2.25, dim_c1: int = 12, dim_c5: int = 2048,
                 base_blocks: Sequence[int] = (1, 2, 5, 3), scale_res2: bool = False, stem_temporal_kernel: int = 5,
                 se_ratio: float = 0.0625, bn_lin5: bool = False, drop_connect: float = 0.0, dropout: float = 0.5,
                 fc_init_std: float = 0.01, zero_init_final_bn: bool = True, grad_checkpointing: bool = False,
                 channels_last: bool = False, bgr: bool = False):
        super().__init__()
        dim_res2 = round_width(dim_c1, 2.0, divisor=8) if scale_res2 else dim_c1
        base = [dim_res2]
        for _ in range(3):
            base.append(round_width(base[-1], 2.0, divisor=8))
        self.input = VideoInput(mean, std, bgr, channels_last)
        dim_in = round_width(dim_c1, width_factor)
        self.s1 = VideoStem([X3DStem(3, dim_in, stem_temporal_kernel)])
        for s, (n_base, width) in enumerate(zip(base_blocks, base)):
            dim_out = round_width(width, width_factor)
            dim_inner = int(bottleneck_factor * dim_out)
            n = int(math.ceil(depth_factor * n_base)) if depth_factor else n_base
            rate = drop_connect * (s + 2) / (len(base_blocks) + 1)
            blocks = [ResBlock(dim_in if i == 0 else dim_out, dim_out, 2 if i == 0 else 1,
                               X3DTransform(dim_in if i == 0 else dim_out, dim_out, 3, 2 if i == 0 else 1, dim_inner,
                                            use_se=(i + 1) % 2 == 1, se_ratio=se_ratio),
                               drop_connect=rate)
                      for i in range(n)]
            self.add_module(f"s{s + 2}", ResStage([blocks], grad_checkpointing))
            dim_in = dim_out
        self.num_features = dim_c5
        self.head = X3DHead(dim_out, dim_inner, dim_c5, num_classes, dropout, bn_lin5)
        init_pyslowfast_cnn(self, fc_init_std, zero_init_final_bn)
        if channels_last:
            self.to(memory_format=torch.channels_last_3d)

    def forward_features(self, clips):
        """uint8 [B, T, 3, H, W] -> the head's lin_5 features [B, dim_c5]."""
        x = self.s1([self.input(clips)])
        return self.head.features(self.s5(self.s4(self.s3(self.s2(x)))))

    def forward_head(self, z):
        return self.head(z)

    def forward(self, clips):
        return self.forward_head(self.forward_features(clips))

    def no_weight_decay(self):
        return batchnorm_param_names(self)


Model = X3D


def build_model(cfg: dict, class_names: list) -> nn.Module:
    model = X3D(len(class_names), cfg["input"]["mean"], cfg["input"]["std"], **cfg["model"])
    load_pretrained(model, cfg["pretrained"], cfg.get("model_name", "x3d"))
    return model
