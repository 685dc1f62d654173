"""Helpers shared by the PySlowFast-family model files (resnet, x3d, slowfast, mvit).

Not a model itself (there is no video_common.yaml). It holds the three things every one of those
files needs in the same form:

  * VideoInput: uint8 [B, T, 3, H, W] -> normalised float [B, 3, T, H, W] on the model's device, with
    the recipe's mean/std (0-255 units) kept as non-persistent buffers (not in the state dict);
  * load_pretrained: reads a released checkpoint by path (PySlowFast `{'model_state': ...}`, a plain
    state dict, or a DDP `module.` dict) through models/weights.py, drops a classifier head whose
    class count differs and refuses every other mismatch with a one-line message;
  * the PySlowFast CNN initialisation (c2_msra_fill + zero-init of each block's last BN) and a
    gradient-checkpoint wrapper that does not update BatchNorm statistics twice.
"""
import contextlib
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from models.weights import drop_other_head, extract_state_dict, load_checked, log_to_stderr, no_weights, read_checkpoint

# PySlowFast's DATA.MEAN / DATA.STD (0.45 / 0.225) in 0-255 units: the normalisation of its models
# trained from scratch, and of UniFormerV2's and TimeSformer's recipes.
PYSLOWFAST_MEAN, PYSLOWFAST_STD = (114.75,) * 3, (57.375,) * 3


class VideoInput(nn.Module):
    """uint8 clip [B, T, 3, H, W] (RGB 0-255) -> float [B, 3, T, H, W] normalised with mean/std (0-255).

    `bgr` reverses the channel order first (PySlowFast DATA.REVERSE_INPUT_CHANNEL, used by its SSv2
    configs); `channels_last` returns a channels_last_3d tensor for the convolution stack."""

    def __init__(self, mean, std, bgr: bool = False, channels_last: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.get_default_dtype()).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.get_default_dtype()).view(1, 3, 1, 1, 1), persistent=False)
        self.bgr, self.channels_last = bgr, channels_last

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"expected a clip batch [B, T, 3, H, W], got {tuple(video.shape)}")
        x = video.permute(0, 2, 1, 3, 4)  # [B, 3, T, H, W], a view
        if self.bgr:
            x = x.flip(1)
        x = (x.to(self.mean.dtype) - self.mean) / self.std  # float32 unless the model was cast
        if self.channels_last:
            return x.contiguous(memory_format=torch.channels_last_3d)
        return x.contiguous()


def round_width(width, multiplier, min_width=1, divisor=1):
    """slowfast/models/utils.round_width."""
    if not multiplier:
        return width
    width *= multiplier
    min_width = min_width or divisor
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


def drop_path(x: torch.Tensor, p: float, training: bool, mask: torch.Tensor = None) -> torch.Tensor:
    """Stochastic depth per sample (PySlowFast common.drop_path); `mask` reuses a given [B, 1, ...] mask."""
    if not training or (p == 0.0 and mask is None):
        return x
    if mask is None:
        mask = drop_path_mask(x.shape[0], x.ndim, p, x.device, x.dtype)
    return x * mask


def drop_path_mask(batch: int, ndim: int, p: float, device, dtype=torch.float32) -> torch.Tensor:
    keep = 1.0 - p
    mask = (keep + torch.rand((batch,) + (1,) * (ndim - 1), device=device, dtype=dtype)).floor_()
    return mask.div_(keep)


# ---------------------------------------------------------------------------------------------
# PySlowFast CNN initialisation and BatchNorm-aware gradient checkpointing


def init_pyslowfast_cnn(model: nn.Module, fc_init_std: float = 0.01, zero_init_final_bn: bool = True) -> None:
    """slowfast/utils/weight_init_helper.init_weights: conv -> kaiming normal (fan_out, relu; fvcore's
    c2_msra_fill), BN -> 1/0 (0 for each residual branch's last BN when zero_init_final_bn), linear ->
    N(0, fc_init_std) with zero bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            final = getattr(m, "transform_final_bn", False) and zero_init_final_bn
            nn.init.constant_(m.weight, 0.0 if final else 1.0)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=fc_init_std)
            nn.init.zeros_(m.bias)


def batchnorm_param_names(model: nn.Module) -> set:
    """Names of BN weights/biases: PySlowFast trains them without weight decay (BN.WEIGHT_DECAY 0)."""
    return {f"{name}.{p}" for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) for p in ("weight", "bias")}


@contextlib.contextmanager
def _frozen_bn_stats(module: nn.Module):
    """During the recomputation of a checkpointed block, BN must not update its running statistics a
    second time: momentum 0 keeps them (the batch statistics used for the output are unchanged)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(bns, saved):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


def checkpointed(module: nn.Module, *args):
    """torch.utils.checkpoint of `module(*args)` (non-reentrant), BN statistics updated once."""
    return checkpoint(module, *args, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), _frozen_bn_stats(module)))


# ---------------------------------------------------------------------------------------------
# released checkpoints


HEAD_KEYS = ("head.projection.weight", "head.projection.bias")


def load_state(model: nn.Module, state: dict, source: str = "checkpoint", model_name: str = "model", log=log_to_stderr) -> dict:
    """Copy `state` into `model` (models/weights.py load_checked: names and shapes must match), except
    that a classifier head (head.projection.*) of another class count is dropped and keeps its init,
    and BatchNorm `num_batches_tracked` counters may be absent (unused with a fixed momentum)."""
    state, dropped = drop_other_head(state, model.state_dict(), HEAD_KEYS, source, model_name, log=log)
    allow_missing = ["*num_batches_tracked", *(HEAD_KEYS if dropped else ())]
    report = load_checked(model, state, source, name=model_name, allow_missing=allow_missing, log=log)
    return {**report, "dropped_head": dropped}


def load_pretrained(model: nn.Module, spec, model_name: str = "model", log=log_to_stderr) -> dict:
    """Load the checkpoint file `spec` ({'model_state': ...} as PySlowFast saves it, a plain or DDP
    state dict) into `model`; 'none'/None/'' keeps the fresh initialisation."""
    if no_weights(spec):
        return {"loaded": 0}
    if not isinstance(spec, (str, Path)):
        raise SystemExit(f"error: pretrained must be 'none' or a checkpoint path, got {spec!r}")
    path = Path(spec).expanduser()
    if path.suffix == ".pkl":
        raise SystemExit(f"error: {path}: Caffe2 .pkl files of the PySlowFast model zoo are not supported; load it with "
                         "PySlowFast (CHECKPOINT_TYPE caffe2) and save model.state_dict(), then pass that file")
    state = extract_state_dict(read_checkpoint(path, "pretrained checkpoint", log=log), str(path))
    return load_state(model, state, f"checkpoint {spec}", model_name, log)
