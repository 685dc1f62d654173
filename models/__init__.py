"""Model files and their recipes.

Every model is one file, models/<name>.py, with its recipe beside it in models/<name>.yaml
(a recipe may name another file with `module:` when one family file serves several models, e.g.
c2d.yaml and i3d.yaml -> resnet.py). The file defines

    build_model(cfg: dict, class_names: list[str]) -> nn.Module

and the module it returns follows one contract:

  * forward(video) takes a uint8 clip batch [B, T, 3, H, W] (RGB, 0-255) and returns the class
    logits [B, len(class_names)], or a dict {"logits": ..., "aux_loss": scalar} when training adds
    a loss of its own (a distillation or motion term). Normalisation with the model's own mean/std
    happens inside forward, on the device.
  * optional set_class_names(names): text models switch their label space (fine base-to-novel).
  * optional no_weight_decay() -> set of parameter names (timm convention) and
    lr_multipliers() -> {name substring: factor}, used to build the optimizer groups.

A recipe is YAML with the sections model / pretrained / input / train / test, per-dataset overrides
under `datasets:` (with per-task ones under `datasets: <ds>: tasks: coarse|fine:`) and a CPU-sized
variant under `tiny:`. DEFAULTS below fills what a recipe leaves out.
"""
import copy
import importlib
import re
from pathlib import Path

import yaml

MODEL_DIR = Path(__file__).resolve().parent


class RecipeLoader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-4` as a string; recipes mean a float."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def read_yaml(text_or_file):
    return yaml.load(text_or_file, Loader=RecipeLoader)

DEFAULTS = {
    "module": None,  # file in models/ that builds this model; defaults to the recipe's name
    "model": {},
    "pretrained": "none",
    "input": {
        "frames": 8,
        "sampling": "segment",  # segment (TSN: one frame per segment) | dense (frames x stride)
        "stride": 8,  # dense only
        "size": 224,
        "train_crop": "jitter",  # jitter (short side in `jitter`, random crop) | rrc (random resized crop)
        "jitter": [256, 320],
        "rrc_scale": [0.08, 1.0],
        "flip": True,  # switched off where the labels have a direction (see data.loader.flip_allowed)
        "mean": [123.675, 116.28, 103.53],  # 0-255 units
        "std": [58.395, 57.12, 57.375],
    },
    "train": {
        "epochs": 30,
        "batch_size": 32,  # clips per optimizer step, all processes and accumulation steps together
        "accum_steps": 1,
        "optimizer": "adamw",  # adamw | sgd
        "lr": 1e-4,
        "min_lr": 0.0,
        "betas": [0.9, 0.999],
        "momentum": 0.9,
        "weight_decay": 0.05,
        "warmup_epochs": 0,
        "warmup_start_factor": 0.0,
        "grad_clip": 1.0,  # max gradient norm; 0 disables
        "label_smoothing": 0.0,
        "mixup": 0.0,  # Beta(a, a) of mixup; 0 disables
        "cutmix": 0.0,  # Beta(a, a) of cutmix; 0 disables
        "mix_switch_prob": 0.5,  # with both on: probability of cutmix instead of mixup
        "precision": "bf16",  # bf16 | fp16 (grad scaler) | fp32; CPU runs always use fp32
        "workers": 8,
        "seed": 0,
        "compile": False,
    },
    "test": {
        "clips": 1,  # temporal views
        "crops": 1,  # spatial views: 1 (centre) or 3 (along the long side)
        "short_side": 256,  # short side before cropping `input.size`
        "batch_size": 16,
    },
}


def list_models() -> list:
    return sorted(p.stem for p in MODEL_DIR.glob("*.yaml"))


def check_model(name: str) -> str:
    if name not in list_models():
        raise SystemExit(f"error: unknown model '{name}'; choose one of: {', '.join(list_models())}")
    return name


def merge(base: dict, override: dict) -> dict:
    """Deep merge: dicts merge key by key, everything else replaces."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load_recipe(name: str, dataset: str = None, tiny: bool = False, task: str = None) -> dict:
    """DEFAULTS <- models/<name>.yaml <- its datasets[dataset] <- datasets[dataset].tasks[task] <- its tiny section."""
    check_model(name)
    with open(MODEL_DIR / f"{name}.yaml") as f:
        recipe = read_yaml(f) or {}
    per_dataset = recipe.pop("datasets", {}) or {}
    tiny_section = recipe.pop("tiny", {}) or {}
    cfg = merge(DEFAULTS, recipe)
    if dataset:
        section = dict(per_dataset.get(dataset) or {})
        per_task = section.pop("tasks", {}) or {}
        cfg = merge(cfg, section)
        if task:
            cfg = merge(cfg, per_task.get(task, {}))
    if tiny:
        cfg = merge(cfg, tiny_section)
    cfg["model_name"] = name
    return cfg


def parse_override(text: str):
    """'train.lr=3e-4' -> (['train', 'lr'], 3e-4); the value is read as YAML."""
    if "=" not in text:
        raise SystemExit(f"error: --set expects KEY=VALUE (e.g. train.lr=3e-4), got '{text}'")
    key, value = text.split("=", 1)
    return key.strip().split("."), read_yaml(value)


def apply_override(cfg: dict, keys: list, value) -> None:
    node = cfg
    for i, k in enumerate(keys[:-1]):
        if not isinstance(node.get(k), dict):
            raise SystemExit(f"error: --set {'.'.join(keys)}: '{'.'.join(keys[:i + 1])}' is not a section of the recipe")
        node = node[k]
    if keys[-1] not in node and node is not cfg.get("model"):
        known = ", ".join(sorted(node))
        raise SystemExit(f"error: --set {'.'.join(keys)}: unknown key '{keys[-1]}' (known: {known})")
    node[keys[-1]] = value


def build_model(cfg: dict, class_names: list):
    module = importlib.import_module(f"models.{cfg.get('module') or cfg['model_name']}")
    return module.build_model(cfg, class_names)
