"""SlowFast-R50 as PySlowFast builds it (recipe slowfast.yaml).

Two ResNet-50 pathways over one clip (slowfast/models/video_model_builder.py `SlowFast`, ARCH
slowfast, SLOWFAST_8x8_R50 settings):

  * Fast pathway: every frame of the input clip (the study feeds 32 x 2 on K400-TA / Syn-TA and
    64 x 2 on SSv2-TA), channels beta = 1/8 of the Slow pathway's (stem 8, res2 32, ... res5 256),
    temporal kernels 5 (stem) and 3 (every res stage).
  * Slow pathway: T / alpha frames (alpha = 4), picked by the model itself from the same clip with
    PySlowFast's `pack_pathway_output` rule (torch.linspace(0, T - 1, T // alpha).long()); temporal
    kernels 1 in stem/res2/res3 and 3 in res4/res5.
  * Lateral connections after the stem and res2..res4 (`s{k}_fuse`): a time-strided convolution of
    the Fast features (kernel 7 x 1 x 1, FUSION_KERNEL_SZ 7 of the 8x8 config - the 4x16 config uses
    5 -, stride alpha, 2 x the Fast channels, BN, ReLU) concatenated to the Slow features.
  * Head: global average pool of both pathways, concatenation (2048 + 256), dropout 0.5, `projection`.

The residual blocks are those of resnet.py; names are PySlowFast's (`s1.pathway1_stem.conv`,
`s1_fuse.conv_f2s`, `s4.pathway0_res3.branch2.a`, `head.projection`). The head is global average
pooling followed by the projection (see resnet.py for the test-time difference from PySlowFast).
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn

from models.resnet import STAGE_DEPTH, BasicHead, BasicStem, ResStage, VideoStem, bottleneck_stage
from models.video_common import (PYSLOWFAST_MEAN, PYSLOWFAST_STD, VideoInput, batchnorm_param_names, init_pyslowfast_cnn,
                                 load_pretrained)

# Temporal kernels (stem, res2..res5) of the Slow and the Fast pathway.
SLOW_KERNELS = [[1], [1], [1], [3], [3]]
FAST_KERNELS = [[5], [3], [3], [3], [3]]


class FuseFastToSlow(nn.Module):
    """conv_f2s (kernel k x 1 x 1, stride alpha over time) -> bn -> relu; concatenated to Slow."""

    def __init__(self, dim_in, channel_ratio, kernel, alpha):
        super().__init__()
        self.conv_f2s = nn.Conv3d(dim_in, dim_in * channel_ratio, (kernel, 1, 1), stride=(alpha, 1, 1),
                                  padding=(kernel // 2, 0, 0), bias=False)
        self.bn = nn.BatchNorm3d(dim_in * channel_ratio)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, xs):
        slow, fast = xs
        fuse = self.relu(self.bn(self.conv_f2s(fast)))
        if fuse.shape[2] != slow.shape[2]:
            raise ValueError(f"SlowFast fusion: the Fast pathway has {fast.shape[2]} frames, which the stride "
                             f"{self.conv_f2s.stride[0]} maps to {fuse.shape[2]}, but the Slow pathway has {slow.shape[2]}")
        return [torch.cat([slow, fuse], dim=1), fast]


class SlowFast(nn.Module):
    """The arguments after `*` are the recipe's model section (PySlowFast's names, lower-cased;
    SlowFast-R50 8x8 by default)."""

    def __init__(self, num_classes: int = 400, mean: Sequence[float] = PYSLOWFAST_MEAN,
                 std: Sequence[float] = PYSLOWFAST_STD, *, alpha: int = 4, beta_inv: int = 8,
                 fusion_conv_channel_ratio: int = 2, fusion_kernel: int = 7, depth: int = 50,
                 blocks: Optional[Sequence[int]] = None, width: int = 64, dropout: float = 0.5,
                 fc_init_std: float = 0.01, zero_init_final_bn: bool = True, grad_checkpointing: bool = False,
                 channels_last: bool = False, bgr: bool = False):
        super().__init__()
        self.alpha = alpha
        ratio = fusion_conv_channel_ratio
        blocks = blocks or STAGE_DEPTH[depth]
        fw = width // beta_inv  # Fast pathway width
        out_dim_ratio = beta_inv // ratio  # Slow channels / channels the fusion adds to them

        self.input = VideoInput(mean, std, bgr, channels_last)
        self.s1 = VideoStem([BasicStem(3, width, SLOW_KERNELS[0][0]), BasicStem(3, fw, FAST_KERNELS[0][0])])
        self.s1_fuse = FuseFastToSlow(fw, ratio, fusion_kernel, alpha)
        dims = [width, width * 4, width * 8, width * 16, width * 32]
        for s in range(4):
            slow_in = dims[s] + dims[s] // out_dim_ratio
            stride = 1 if s == 0 else 2
            slow = bottleneck_stage(slow_in, dims[s + 1], width * 2 ** s, blocks[s], stride, SLOW_KERNELS[s + 1])
            fast = bottleneck_stage(dims[s] // beta_inv, dims[s + 1] // beta_inv, width * 2 ** s // beta_inv,
                                    blocks[s], stride, FAST_KERNELS[s + 1])
            self.add_module(f"s{s + 2}", ResStage([slow, fast], grad_checkpointing))
            if s < 3:
                self.add_module(f"s{s + 2}_fuse", FuseFastToSlow(dims[s + 1] // beta_inv, ratio, fusion_kernel, alpha))
        self.num_features = dims[-1] + dims[-1] // beta_inv
        self.head = BasicHead([dims[-1], dims[-1] // beta_inv], num_classes, dropout)
        init_pyslowfast_cnn(self, fc_init_std, zero_init_final_bn)
        if channels_last:
            self.to(memory_format=torch.channels_last_3d)

    def pathways(self, x):
        """[B, 3, T, H, W] -> [slow (T // alpha frames), fast (all T frames)] (pack_pathway_output)."""
        t = x.shape[2]
        if t < self.alpha:
            raise ValueError(f"SlowFast needs at least alpha={self.alpha} frames, got {t}")
        index = torch.linspace(0, t - 1, t // self.alpha, device=x.device).long()
        return [x.index_select(2, index), x]

    def forward_features(self, clips):
        """uint8 [B, T, 3, H, W] -> both pathways' res5 averaged and concatenated [B, 2048 + 256]."""
        x = self.pathways(self.input(clips))
        x = self.s1_fuse(self.s1(x))
        x = self.s2_fuse(self.s2(x))
        x = self.s3_fuse(self.s3(x))
        x = self.s4_fuse(self.s4(x))
        return self.head.features(self.s5(x))

    def forward_head(self, z):
        return self.head(z)

    def forward(self, clips):
        return self.forward_head(self.forward_features(clips))

    def no_weight_decay(self):
        return batchnorm_param_names(self)


Model = SlowFast


def build_model(cfg: dict, class_names: list) -> nn.Module:
    model = SlowFast(len(class_names), cfg["input"]["mean"], cfg["input"]["std"], **cfg["model"])
    load_pretrained(model, cfg["pretrained"], cfg.get("model_name", "slowfast"))
    return model
