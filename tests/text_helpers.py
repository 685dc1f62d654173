"""Helpers shared by the text-model tests (X-CLIP, ViFi-CLIP, ActionCLIP, EZ-CLIP): release-like files,
meta-tensor state dicts of the published key layouts, and a literal reading of the in-batch losses."""
import sys
import types
from pathlib import Path

import torch

from conftest import tiny_cfg
from models import build_model, load_recipe
from models import clip as mc


def meta_state(shapes: dict, dtype=torch.float32, float32_keys=()) -> dict:
    """{name: meta tensor of that shape}: a release's layout without its 100s of MB; `dtype` for the
    floating tensors except `float32_keys` (mixed-precision releases)."""
    return {k: torch.empty(s, dtype=torch.float32 if k in float32_keys else dtype, device="meta")
            for k, s in shapes.items()}


def full_size_on_meta(model: str, frames: int = None, dataset: str = "synta", classes=("a", "b")):
    cfg = load_recipe(model, dataset)
    cfg["pretrained"] = "none"
    if frames:
        cfg["input"]["frames"] = frames
    with torch.device("meta"):
        return build_model(cfg, list(classes))


def tiny(model: str, classes, seed: int = 0, frames: int = None, **model_overrides):
    cfg = tiny_cfg(model, **model_overrides)
    if frames:
        cfg["input"]["frames"] = frames
    torch.manual_seed(seed)
    return build_model(cfg, list(classes))


def tiny_clip(seed: int = 1) -> mc.CLIP:
    """A CLIP with the tiny recipes' architecture (the same for the three text models)."""
    torch.manual_seed(seed)
    return mc.CLIP(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
                   context_length=77, vocab_size=49408, transformer_width=32, transformer_heads=1, transformer_layers=1,
                   vision_heads=2)


def literal_in_batch_loss(video, text, labels, scale, kind):
    """ActionCLIP's KLLoss (github.com/sallymmx/ActionCLIP utils/KLLoss.py, train.py) and the mmaction2
    port's loss, read literally: gen_label's 0/1 same-class matrix, softmax(10 x it) per row as the
    target, KLDivLoss's mean over all B x B entries times the batch size; the port's CrossEntropyLoss
    with arange labels and loss_weight 0.5 per direction. Written with loops, from the descriptions."""
    import math

    b = len(labels)
    logits = [[scale * sum(vi * tj for vi, tj in zip(video[i].tolist(), text[j].tolist())) for j in range(b)] for i in range(b)]
    by_text = [[logits[j][i] for j in range(b)] for i in range(b)]
    gt = [[1.0 if labels[i] == labels[k] else 0.0 for k in range(b)] for i in range(b)]

    def log_softmax(row):
        top = max(row)
        lse = top + math.log(sum(math.exp(r - top) for r in row))
        return [r - lse for r in row]

    def one_direction(rows):
        if kind == "infonce":
            return 0.5 * sum(-log_softmax(rows[i])[i] for i in range(b)) / b
        total = 0.0
        for i in range(b):
            target = [math.exp(x) for x in log_softmax([10 * g for g in gt[i]])]
            total += sum(p * (math.log(p) - q) for p, q in zip(target, log_softmax(rows[i])))
        return total / (b * b) * b

    both = one_direction(logits) + one_direction(by_text)
    return both if kind == "infonce" else both / 2


def save_with_yacs_config(obj: dict, path: Path) -> Path:
    """torch.save `obj` plus a yacs CfgNode config, a numpy scalar and an optimizer dict, as X-CLIP's
    and ViFi-CLIP's epoch_saving write them. The stand-in `yacs.config` module exists only while
    saving, so loading must not need it (nor run it)."""
    import numpy as np

    yacs, config = types.ModuleType("yacs"), types.ModuleType("yacs.config")

    class CfgNode(dict):
        def __init__(self, init=None):
            super().__init__(init or {})
            self.__dict__["__immutable__"] = True

        def __setstate__(self, state):  # would run at load time if the reader trusted the file
            raise AssertionError("the yacs config was executed")

    CfgNode.__module__, CfgNode.__qualname__ = "yacs.config", "CfgNode"
    config.CfgNode = CfgNode
    sys.modules["yacs"], sys.modules["yacs.config"] = yacs, config
    try:
        torch.save({**obj, "config": CfgNode({"MODEL": CfgNode({"ARCH": "ViT-B/16"})}), "max_accuracy": np.float64(83.2),
                    "optimizer": {"state": {}, "param_groups": [{"lr": 8e-6}]}, "epoch": 29}, path)
    finally:
        del sys.modules["yacs"], sys.modules["yacs.config"]
    return path
