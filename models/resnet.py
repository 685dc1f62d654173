"""ResNet-50 video models as PySlowFast builds them: C2D and I3D (recipes c2d.yaml, i3d.yaml).

Both are the bottleneck ResNet-50 (stages of 3, 4, 6, 3 blocks, width 64) applied to a T x 224 x 224
clip, following slowfast/models/video_model_builder.py `ResNet` with MODEL.ARCH c2d / i3d:

  * C2D: every convolution is 2D (temporal kernel 1) - frames are processed independently - and the
    only temporal interaction is a max-pool with kernel/stride 2 over time after res2, plus the
    global average pool of the head.
  * I3D: the same network with inflated temporal kernels: stem 5x7x7; res2 3x1x1 in every block's
    first conv; res3 and res4 alternate 3x1x1 / 1x1x1 (starting with 3); res5 alternates 1 / 3
    (only its middle block is temporal); the same temporal max-pool after res2.

Parameter names are PySlowFast's (`s1.pathway0_stem.conv.weight`, `s2.pathway0_res0.branch1`,
`...branch2.a/a_bn/b/b_bn/c/c_bn`, `head.projection`), so model-zoo state dicts load as they are.
The building blocks (stem, bottleneck, residual stage, head) are also used by slowfast.py.

Differences from PySlowFast, all at test time only: the head averages over all positions before the
projection (AdaptiveAvgPool) and returns logits; PySlowFast applies its fixed 7x7 average pool
convolutionally and averages softmax scores, which differs only when the test crop is larger than
224 (its TEST_CROP_SIZE 256).
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn

from models.video_common import (PYSLOWFAST_MEAN, PYSLOWFAST_STD, VideoInput, batchnorm_param_names, checkpointed,
                                 drop_path, init_pyslowfast_cnn, load_pretrained)

STAGE_DEPTH = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}

# Temporal kernel sizes per stage (stem, res2..res5); a stage's list repeats over its blocks.
TEMPORAL_KERNELS = {
    "c2d": [[1], [1], [1], [1], [1]],
    "i3d": [[5], [3], [3, 1], [3, 1], [1, 3]],
}
# Temporal max-pool (kernel = stride) after res2.
POOL1 = {"c2d": 2, "i3d": 2}


class BasicStem(nn.Module):
    """ResNetBasicStem: conv (T x 7 x 7, stride 1x2x2), BN, ReLU, max-pool 1x3x3 stride 1x2x2."""

    def __init__(self, dim_in, dim_out, temporal_kernel):
        super().__init__()
        self.conv = nn.Conv3d(dim_in, dim_out, (temporal_kernel, 7, 7), stride=(1, 2, 2),
                              padding=(temporal_kernel // 2, 3, 3), bias=False)
        self.bn = nn.BatchNorm3d(dim_out)
        self.relu = nn.ReLU(inplace=True)
        self.pool_layer = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x):
        return self.pool_layer(self.relu(self.bn(self.conv(x))))


class VideoStem(nn.Module):
    """One stem per pathway, named pathway{p}_stem; takes and returns a list of tensors."""

    def __init__(self, stems):
        super().__init__()
        self.num_pathways = len(stems)
        for p, stem in enumerate(stems):
            self.add_module(f"pathway{p}_stem", stem)

    def forward(self, xs):
        return [getattr(self, f"pathway{p}_stem")(x) for p, x in enumerate(xs)]


class Bottleneck(nn.Module):
    """BottleneckTransform: T x 1 x 1 (a), 1 x 3 x 3 with the spatial stride (b), 1 x 1 x 1 (c)."""

    def __init__(self, dim_in, dim_out, temporal_kernel, stride, dim_inner, groups=1):
        super().__init__()
        self.a = nn.Conv3d(dim_in, dim_inner, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0), bias=False)
        self.a_bn = nn.BatchNorm3d(dim_inner)
        self.a_relu = nn.ReLU(inplace=True)
        self.b = nn.Conv3d(dim_inner, dim_inner, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1),
                           groups=groups, bias=False)
        self.b_bn = nn.BatchNorm3d(dim_inner)
        self.b_relu = nn.ReLU(inplace=True)
        self.c = nn.Conv3d(dim_inner, dim_out, 1, bias=False)
        self.c_bn = nn.BatchNorm3d(dim_out)
        self.c_bn.transform_final_bn = True  # zero-initialised with RESNET.ZERO_INIT_FINAL_BN

    def forward(self, x):
        x = self.a_relu(self.a_bn(self.a(x)))
        x = self.b_relu(self.b_bn(self.b(x)))
        return self.c_bn(self.c(x))


class ResBlock(nn.Module):
    """x -> relu(shortcut(x) + branch2(x)); the shortcut is a strided 1x1x1 conv + BN (branch1)
    when the width or resolution changes. `drop_connect` is stochastic depth on branch2 (X3D)."""

    def __init__(self, dim_in, dim_out, stride, branch2: nn.Module, drop_connect: float = 0.0):
        super().__init__()
        if dim_in != dim_out or stride != 1:
            self.branch1 = nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False)
            self.branch1_bn = nn.BatchNorm3d(dim_out)
        self.branch2 = branch2
        self.relu = nn.ReLU(inplace=True)
        self.drop_connect = drop_connect

    def forward(self, x):
        f = drop_path(self.branch2(x), self.drop_connect, self.training)
        if hasattr(self, "branch1"):
            return self.relu(self.branch1_bn(self.branch1(x)) + f)
        return self.relu(x + f)


class ResStage(nn.Module):
    """A residual stage for p pathways: blocks pathway{p}_res{i}; takes and returns a list.

    `blocks[p]` is the list of ResBlocks of pathway p. With grad_checkpointing each block is recomputed in
    the backward pass (BN statistics are updated once)."""

    def __init__(self, blocks, grad_checkpointing: bool = False):
        super().__init__()
        self.num_blocks = [len(b) for b in blocks]
        self.grad_checkpointing = grad_checkpointing
        for p, pathway_blocks in enumerate(blocks):
            for i, block in enumerate(pathway_blocks):
                self.add_module(f"pathway{p}_res{i}", block)

    def forward(self, xs):
        out = []
        for p, x in enumerate(xs):
            for i in range(self.num_blocks[p]):
                block = getattr(self, f"pathway{p}_res{i}")
                if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                    x = checkpointed(block, x)
                else:
                    x = block(x)
            out.append(x)
        return out


def bottleneck_stage(dim_in, dim_out, dim_inner, num_blocks, stride, temporal_kernels, groups=1):
    """Blocks of one pathway: the first takes dim_in and the stride; temporal kernels cycle."""
    kernels = (temporal_kernels * num_blocks)[:num_blocks]
    return [ResBlock(dim_in if i == 0 else dim_out, dim_out, stride if i == 0 else 1,
                     Bottleneck(dim_in if i == 0 else dim_out, dim_out, kernels[i], stride if i == 0 else 1,
                                dim_inner, groups))
            for i in range(num_blocks)]


class BasicHead(nn.Module):
    """ResNetBasicHead: global average pool per pathway and concatenate (features), then dropout and
    the linear `projection` (forward)."""

    def __init__(self, dims_in, num_classes, dropout=0.5):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.projection = nn.Linear(sum(dims_in), num_classes)

    @staticmethod
    def features(xs):
        return torch.cat([x.mean(dim=(2, 3, 4)) for x in xs], dim=1)

    def forward(self, z):
        return self.projection(self.dropout(z))


class ResNet(nn.Module):
    """C2D / I3D ResNet (`arch`); the arguments after `*` are the recipe's model section (PySlowFast's
    names, lower-cased; C2D ResNet-50 by default)."""

    def __init__(self, num_classes: int = 400, mean: Sequence[float] = PYSLOWFAST_MEAN,
                 std: Sequence[float] = PYSLOWFAST_STD, *, arch: str = "c2d", depth: int = 50,
                 blocks: Optional[Sequence[int]] = None, width: int = 64, num_groups: int = 1, dropout: float = 0.5,
                 fc_init_std: float = 0.01, zero_init_final_bn: bool = True, grad_checkpointing: bool = False,
                 channels_last: bool = False, bgr: bool = False):
        super().__init__()
        if arch not in TEMPORAL_KERNELS:
            raise SystemExit(f"error: model.arch must be one of {sorted(TEMPORAL_KERNELS)}, got {arch!r}")
        blocks = blocks or STAGE_DEPTH[depth]
        inner = num_groups * width  # dim_inner of res2, doubled per stage (width: RESNET.WIDTH_PER_GROUP)
        tk = TEMPORAL_KERNELS[arch]

        self.input = VideoInput(mean, std, bgr, channels_last)
        self.s1 = VideoStem([BasicStem(3, width, tk[0][0])])
        dims = [width, width * 4, width * 8, width * 16, width * 32]
        for s in range(4):
            stage = bottleneck_stage(dims[s], dims[s + 1], inner * 2 ** s, blocks[s], 1 if s == 0 else 2, tk[s + 1],
                                     num_groups)
            self.add_module(f"s{s + 2}", ResStage([stage], grad_checkpointing))
            if s == 0:
                t = POOL1[arch]
                self.pathway0_pool = nn.MaxPool3d((t, 1, 1), stride=(t, 1, 1)) if t > 1 else nn.Identity()
        self.num_features = dims[-1]
        self.head = BasicHead([dims[-1]], num_classes, dropout)
        init_pyslowfast_cnn(self, fc_init_std, zero_init_final_bn)
        if channels_last:
            self.to(memory_format=torch.channels_last_3d)

    def forward_features(self, clips):
        """uint8 [B, T, 3, H, W] -> res5 averaged over time and space [B, 2048]."""
        x = [self.input(clips)]
        x = self.s2(self.s1(x))
        x = [self.pathway0_pool(x[0])]
        return self.head.features(self.s5(self.s4(self.s3(x))))

    def forward_head(self, z):
        return self.head(z)

    def forward(self, clips):
        return self.forward_head(self.forward_features(clips))

    def no_weight_decay(self):
        return batchnorm_param_names(self)


Model = ResNet


def build_model(cfg: dict, class_names: list) -> nn.Module:
    model = ResNet(len(class_names), cfg["input"]["mean"], cfg["input"]["std"], **cfg["model"])
    load_pretrained(model, cfg["pretrained"], cfg.get("model_name", "resnet"))
    return model
