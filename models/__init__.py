"""Model files and their recipes.

Every model is one file, models/<name>.py, with its recipe beside it in models/<name>.yaml (a recipe
may name another file with `module:` when one family file serves several models, e.g. c2d.yaml and
i3d.yaml -> resnet.py). The file defines

    Model = <its nn.Module class>
    build_model(cfg: dict, class_names: list[str]) -> nn.Module

build_model is the plain factory: it maps the recipe's `input:` values (frames, size, mean/std), its
`text:` section (text models) and its `model:` section onto the constructor, then loads `pretrained`.
The constructor's arguments after `*` are the model's arguments, keyword-only with their defaults in
the signature, e.g. `XCLIP(class_names, frames=8, ..., *, mit_layers=1, prompts_layers=2, ...)`;
a recipe's `model:` section holds those keys and nothing else. When a recipe is loaded, cfg["model"] is
completed with the signature's defaults (so a checkpoint stores every model argument), and every key
and value is checked against the signature: an unknown key (in a recipe file, under `datasets:` or
`tiny:`, in `--set model.x=...`, in a config handed to build_model) or a value of another type than the
annotation / default (an int where an int is expected, true/false, a float, a list) is a one-line
SystemExit that names the key. A checkpoint written by an older version stores its cfg["model"]
too: keys it lacks take the defaults (which are the values the older code used), and a key that is
no argument (a typo the older code ignored) is refused in one line; delete it from the checkpoint's
cfg["model"] to go on.

The module build_model returns follows one contract:

  * forward(clips) takes a uint8 clip batch [B, T, 3, H, W] (RGB, 0-255) and returns the class
    logits [B, len(class_names)]. Normalisation with the model's own mean/std happens inside, on the
    device. train.py trains these logits with cross-entropy.
  * a model with a training objective of its own (ActionCLIP's and EZ-CLIP's in-batch video-text
    losses, EZ-CLIP's motion term, FROSTER's distillation) has forward(clips, targets=None): in
    training, given targets (class ids [B], or soft targets [B, K] from mixup / cutmix / label
    smoothing), it returns {"logits": [B, K], "loss": scalar}, its whole training loss, and
    train.py adds nothing (compute_loss); without targets, or in evaluation, the logits as above.
    Its build_model refuses the train settings its objective cannot use (one line).
  * forward_features(clips) -> z [B, num_features]: the pooled video representation before the
    classifier or the text matching, and forward_head(z) -> logits (timm's names), with
    forward(clips) == forward_head(forward_features(clips)).
  * text models also score z against any list of class names: class_logits(z, names) (the text
    features of each label space are cached while the text tower cannot change), and switch their own
    label space with set_class_names(names) (the fine task's unknown set). X-CLIP's text prompts depend
    on the video's patch tokens: its forward_features(clips, return_context=True) returns (z, context)
    and its forward_head / class_logits take that context; every text model accepts return_context
    and context (its context is None), so one caller serves them all.
  * optional no_weight_decay() -> set of parameter names (timm convention) and
    lr_multipliers() -> {name substring: factor}, used to build the optimizer groups.

A recipe is YAML with the sections model / pretrained / input / train / test (and text for text
models), per-dataset overrides under `datasets: <ds>:`, per-task ones under `datasets: <ds>/<task>:`
(e.g. `synta/fine:`), and a CPU-sized variant under `tiny:`. DEFAULTS below fills what a recipe leaves
out of the other sections.
"""
import collections.abc
import copy
import importlib
import inspect
import re
import types
import typing
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


DEFAULTS = {  # a key added here defaults to what the code did without it: older checkpoints take that value
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
        "jitter_inverse_uniform": False,  # jitter short side 1 / U[1 / high, 1 / low] (PySlowFast DATA.INV_UNIFORM_SAMPLE)
        "flip": True,  # switched off where the labels have a direction (see data.loader.flip_allowed)
        # training augmentations, in this order (data/augment.py); each is off at 0
        "randaugment": 0,  # RandAugment operations per clip (timm's n), on the source frames, one choice for all frames
        "randaugment_magnitude": 9.0,  # timm's m, 0-10 (PySlowFast's AUG.AA_TYPE default rand-m9-mstd0.5-inc1)
        "randaugment_magnitude_std": 0.5,  # timm's mstd: the magnitude of each operation ~ N(m, mstd)
        "randaugment_prob": 0.5,  # each operation applies with this probability (timm's)
        "color_jitter": 0.0,  # probability of colour jitter for a clip (X-CLIP AUG.COLOR_JITTER), factors per frame
        "color_jitter_strength": [0.4, 0.4, 0.2, 0.1],  # brightness, contrast, saturation, hue (torchvision ColorJitter)
        "grayscale": 0.0,  # probability that a clip turns grey (X-CLIP AUG.GRAY_SCALE)
        "random_erasing": 0.0,  # probability of erased boxes in a clip (PySlowFast AUG.RE_PROB), after the crop
        "random_erasing_mode": "pixel",  # const | rand | pixel: the boxes' fill (AUG.RE_MODE)
        "random_erasing_count": 1,  # 1 to this many boxes per clip (AUG.RE_COUNT)
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
        "lr_policy": "cosine",  # cosine (to min_lr) | steps (PySlowFast steps_with_relative_lrs)
        "cosine_after_warmup": True,  # false: the cosine spans every epoch and the warmup ramps to it (PySlowFast's default)
        "lr_steps": [],  # steps: the epochs where each relative lr starts, the first 0 (SOLVER.STEPS)
        "lr_step_factors": [],  # steps: the lr from each of them, relative to lr (SOLVER.LRS)
        "grad_clip": 1.0,  # max gradient norm; 0 disables
        "label_smoothing": 0.0,
        "mixup": 0.0,  # Beta(a, a) of mixup; 0 disables
        "cutmix": 0.0,  # Beta(a, a) of cutmix; 0 disables
        "mix_switch_prob": 0.5,  # with both on: probability of cutmix instead of mixup
        "repeated_augmentation": 1,  # clips per video in a batch, each augmented on its own (PySlowFast AUG.NUM_SAMPLE)
        "precise_bn": 0,  # after each epoch, recompute BatchNorm statistics over this many micro-batches per
        #                   process (PySlowFast BN.USE_PRECISE_STATS / NUM_BATCHES_PRECISE); 0 disables
        "sync_bn": False,  # BatchNorm statistics over all processes' clips (torch SyncBatchNorm; CUDA only)
        "precision": "bf16",  # bf16 | fp16 (grad scaler) | fp32; CPU runs always use fp32
        "workers": 8,
        "seed": 0,
        "compile": False,
        "weight_averaging": 0,  # N: evaluate the mean of the weights after epochs N, N+1, ... (1-based); 0: the last
    },
    "test": {
        "clips": 1,  # temporal views
        "crops": 1,  # spatial views: 1 (centre) or 3 (along the long side)
        "short_side": 256,  # short side before cropping
        "crop_size": 0,  # the test crop (PySlowFast TEST_CROP_SIZE); 0: input.size
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
    """DEFAULTS <- models/<name>.yaml <- its datasets[<dataset>] <- datasets[<dataset>/<task>] <- its tiny
    section; cfg["model"] completed with the model's signature defaults. Every `model:` section of the
    file is checked against the constructor, whichever dataset is asked for."""
    check_model(name)
    with open(MODEL_DIR / f"{name}.yaml") as f:
        recipe = read_yaml(f) or {}
    per_dataset = recipe.pop("datasets", {}) or {}
    tiny_section = recipe.pop("tiny", {}) or {}
    cfg = merge(DEFAULTS, recipe)
    cfg["model_name"] = name
    model = model_class(cfg)
    for where, section in [("", recipe), ("tiny.", tiny_section), *((f"datasets.{k}.", v) for k, v in per_dataset.items())]:
        if "tasks" in (section or {}):
            raise SystemExit(f"error: models/{name}.yaml {where}tasks: per-task settings go under `datasets: <ds>/<task>:` "
                             f"(e.g. synta/fine)")
        check_model_arguments(model, (section or {}).get("model") or {}, f"models/{name}.yaml {where}")
    if dataset:
        cfg = merge(cfg, per_dataset.get(dataset))
        if task:
            cfg = merge(cfg, per_dataset.get(f"{dataset}/{task}"))
    if tiny:
        cfg = merge(cfg, tiny_section)
    cfg["model"] = model_arguments(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------
# model arguments: the keyword-only parameters of the model class's constructor


def model_module(cfg: dict):
    return importlib.import_module(f"models.{cfg.get('module') or cfg['model_name']}")


def model_class(cfg: dict) -> type:
    module = model_module(cfg)
    if not isinstance(getattr(module, "Model", None), type):
        raise SystemExit(f"error: {module.__file__} defines no `Model` (its nn.Module class, whose keyword-only "
                         f"constructor arguments are the recipe's model: section)")
    return module.Model


def signature_arguments(model: type) -> dict:
    """{name: inspect.Parameter} of the keyword-only parameters of model.__init__."""
    params = inspect.signature(model.__init__, eval_str=True).parameters.values()
    return {p.name: p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _plain(value):
    """Tuples (signature defaults) as lists, as YAML writes them."""
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _expected(p: inspect.Parameter):
    if p.annotation is not inspect.Parameter.empty:
        return p.annotation
    return inspect.Parameter.empty if p.default is None else type(p.default)


def _fits(value, kind) -> bool:
    if kind is inspect.Parameter.empty or kind is typing.Any:
        return True
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if (origin or kind) in (list, tuple, collections.abc.Sequence):
        return isinstance(value, (list, tuple))
    return isinstance(value, origin or kind)


def _kind_name(kind) -> str:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join(_kind_name(k) for k in typing.get_args(kind))
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null", dict: "a mapping"}
    return names.get(kind) or ("a list" if (typing.get_origin(kind) or kind) in (list, tuple, collections.abc.Sequence)
                               else getattr(kind, "__name__", str(kind)))


def check_model_arguments(model: type, section: dict, where: str = "") -> None:
    """Every key of a `model:` section must be a keyword-only argument of `model` and its value of the
    annotated type (or the default's); else a one-line SystemExit naming the key."""
    params = signature_arguments(model)
    for key, value in section.items():
        if key not in params:
            raise SystemExit(f"error: {where}model.{key} is not an argument of {model.__name__} "
                             f"({model.__module__.replace('.', '/')}.py); valid keys: {', '.join(params)}")
        kind = _expected(params[key])
        if not _fits(value, kind):
            raise SystemExit(f"error: {where}model.{key} must be {_kind_name(kind)}, got {value!r}")


def model_arguments(cfg: dict) -> dict:
    """cfg["model"] checked (check_model_arguments) and completed with the signature's defaults, in
    the signature's order."""
    model = model_class(cfg)
    section = cfg.get("model") or {}
    check_model_arguments(model, section)
    params = signature_arguments(model)
    required = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in section]
    if required:
        raise SystemExit(f"error: model.{required[0]} has no default in {model.__name__}; the recipe's model: section must set it")
    return {k: section[k] if k in section else _plain(p.default) for k, p in params.items()}


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
    if node is cfg.get("model"):
        check_model_arguments(model_class(cfg), {keys[-1]: value}, "--set ")
    if keys[-1] not in node:
        known = ", ".join(sorted(node))
        raise SystemExit(f"error: --set {'.'.join(keys)}: unknown key '{keys[-1]}' (known: {known})")
    node[keys[-1]] = value


def build_model(cfg: dict, class_names: list):
    """The model of a recipe (load_recipe) or of a checkpoint's config: its file's build_model, with
    cfg["model"] checked and completed (model_arguments)."""
    cfg = {**cfg, "model": model_arguments(cfg)}
    return model_module(cfg).build_model(cfg, class_names)


# ---------------------------------------------------------------------------------------------
# every setting outside `model:` checked for type and range before anything reads data or builds a model


def _at_least(low):
    return f">= {low}", lambda v: v >= low


def _above(low):
    return f"> {low}", lambda v: v > low


def _from_to(low, high, high_included=True):
    return f"in [{low}, {high}{']' if high_included else ')'}", lambda v: low <= v <= high and (high_included or v < high)


CHOICES = {
    "input.sampling": ("segment", "dense"),
    "input.train_crop": ("jitter", "rrc"),
    "input.random_erasing_mode": ("const", "rand", "pixel"),
    "train.lr_policy": ("cosine", "steps"),
    "train.optimizer": ("adamw", "sgd"),
    "train.precision": ("bf16", "fp16", "fp32"),
    "test.crops": (1, 3),
}
RANGES = {  # key: (what the error says, test); a list's every value must pass
    "input.frames": _at_least(1),
    "input.stride": _at_least(1),
    "input.size": _at_least(1),
    "input.jitter": _at_least(1),
    "input.rrc_scale": ("in (0, 1]", lambda v: 0 < v <= 1),
    "input.mean": _from_to(0, 255),
    "input.std": _above(0),
    "input.randaugment": _at_least(0),
    "input.randaugment_magnitude": _from_to(0, 10),
    "input.randaugment_magnitude_std": _at_least(0),
    "input.randaugment_prob": _from_to(0, 1),
    "input.color_jitter": _from_to(0, 1),
    "input.color_jitter_strength": _at_least(0),
    "input.grayscale": _from_to(0, 1),
    "input.random_erasing": _from_to(0, 1),
    "input.random_erasing_count": _at_least(1),
    "train.epochs": _at_least(1),
    "train.batch_size": _at_least(1),
    "train.accum_steps": _at_least(1),
    "train.lr": _above(0),
    "train.min_lr": _at_least(0),
    "train.betas": _from_to(0, 1, high_included=False),
    "train.momentum": _from_to(0, 1, high_included=False),
    "train.weight_decay": _at_least(0),
    "train.warmup_epochs": _at_least(0),
    "train.warmup_start_factor": _from_to(0, 1),
    "train.grad_clip": _at_least(0),
    "train.label_smoothing": _from_to(0, 1, high_included=False),
    "train.mixup": _at_least(0),
    "train.cutmix": _at_least(0),
    "train.mix_switch_prob": _from_to(0, 1),
    "train.lr_steps": _at_least(0),
    "train.lr_step_factors": _above(0),
    "train.repeated_augmentation": _at_least(1),
    "train.precise_bn": _at_least(0),
    "train.workers": _at_least(0),
    "train.seed": _from_to(0, 2**32 - 1),  # numpy's generators take no negative seed
    "train.weight_averaging": _at_least(0),
    "test.clips": _at_least(1),
    "test.short_side": _at_least(1),
    "test.crop_size": _at_least(0),
    "test.batch_size": _at_least(1),
}
ANY_TEST_CROP = {"resnet", "x3d", "slowfast"}  # model files whose heads average over every position
FRACTIONAL = {"train.warmup_epochs"}  # DEFAULTS writes 0, but a fraction of an epoch is meant too
RUN_KEYS = {"dataset": None, "task": ("coarse", "fine"), "train_set": (1, 2), "splits": None,
            "data_fingerprint": None}  # set by train.py
POSITIVE = ("a number > 0", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf"))
DISENTANGLE = {  # set by disentangle.py: key -> (what the error says, test)
    "variant": ("base, disentangled, multitask or fine_only", lambda v: v in ("base", "disentangled", "multitask", "fine_only")),
    "fine_weight": POSITIVE,
    "branch_ratio": POSITIVE,
    "placement": ("head or inside", lambda v: v in ("head", "inside")),
}
KINDS = {bool: ("true or false", "true or false"), int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings")}


def _fits_default(default, value) -> bool:
    """`value` has the type of `default` (DEFAULTS): an int is a number too, a bool is not; a list has
    the default's length and its values the type of the default's first (an empty one: any numbers)."""
    if default == []:
        return isinstance(value, list) and all(_fits_default(0.0, v) for v in value)
    if isinstance(default, list):
        return isinstance(value, list) and len(value) == len(default) and all(_fits_default(default[0], v) for v in value)
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and -float("inf") < value < float("inf")
    return isinstance(value, type(default))


def _default_kind(default) -> str:
    if default == []:
        return "a list of numbers"
    if isinstance(default, list):
        return f"a list of {len(default)} {KINDS[type(default[0])][1]}"
    return KINDS[type(default)][0]


def _check_text(text) -> None:
    """The text models' `text` section: `templates`, each with one {} for the class name, and
    `descriptions`, a CSV path or none, or one of them per task."""
    if not isinstance(text, dict) or set(text) - {"templates", "descriptions"}:
        raise SystemExit(f"error: text must hold only templates and descriptions, got {text!r}")
    templates = text.get("templates")
    if templates is not None and not (isinstance(templates, list) and templates and all(isinstance(t, str) and t.count("{}") == 1 for t in templates)):
        raise SystemExit(f"error: text.templates must be a list of strings, each with one {{}} for the class name, got {templates!r}")
    descriptions = text.get("descriptions")
    per_task = descriptions if isinstance(descriptions, dict) else {"": descriptions}
    for task, path in per_task.items():
        if task not in ("", "coarse", "fine") or not (path is None or isinstance(path, str) and path):
            raise SystemExit(f"error: text.descriptions must be a CSV path or none, or one per task (coarse: ..., fine: ...), "
                             f"got {descriptions!r}")


def check_config(cfg: dict, source: str = None) -> dict:
    """Check every setting outside `model:` (whose keys the model's constructor checks) for type
    (DEFAULTS is the reference), range, choice and the rules between keys. A mistake is one line
    naming the key, and `source` (the checkpoint the config came from) where given. -> cfg"""
    where = f"{source}: " if source else ""

    def fail(message):
        raise SystemExit(f"error: {where}{message}")

    known = {*DEFAULTS, "model_name", "text", "disentangle", *RUN_KEYS}
    if not isinstance(cfg, dict) or set(cfg) - known:
        fail(f"unknown setting {sorted(set(cfg) - known)[0] if isinstance(cfg, dict) else cfg!r}; known: {', '.join(sorted(known))}")
    if not isinstance(cfg.get("model_name"), str) or cfg["model_name"] not in list_models():
        fail(f"unknown model {cfg.get('model_name')!r}; choose one of: {', '.join(list_models())}")
    if not (cfg.get("module") is None or isinstance(cfg["module"], str)) or not isinstance(cfg.get("model", {}), dict):
        fail("module must be a file name in models/ and model a section of model arguments")
    if not isinstance(cfg.get("pretrained"), str) or not cfg["pretrained"]:
        fail(f"pretrained must be a weights name, a file path or none, got {cfg.get('pretrained')!r}")
    if "text" in cfg:
        _check_text(cfg["text"])
    if "disentangle" in cfg:
        section = cfg["disentangle"]
        if not isinstance(section, dict) or set(section) != set(DISENTANGLE):
            fail(f"disentangle must hold {', '.join(DISENTANGLE)}, got {section!r}")
        for key, (kind, test) in DISENTANGLE.items():
            if not test(section[key]):
                fail(f"disentangle.{key} must be {kind}, got {section[key]!r}")
    for key, choices in RUN_KEYS.items():
        if key in cfg and not (cfg[key] in choices if choices else isinstance(cfg[key], str)):
            fail(f"{key} must be {' or '.join(map(str, choices)) if choices else 'a string'}, got {cfg[key]!r}")
    for section in ("input", "train", "test"):
        values = cfg.get(section)
        if source and isinstance(values, dict):  # a checkpoint of an older version: keys added since do what it did
            values.update({k: copy.deepcopy(v) for k, v in DEFAULTS[section].items() if k not in values})
        if not isinstance(values, dict) or set(values) != set(DEFAULTS[section]):
            odd = sorted(set(values) ^ set(DEFAULTS[section])) if isinstance(values, dict) else [section]
            fail(f"{section}.{odd[0]} is {'unknown' if isinstance(values, dict) and odd[0] in values else 'missing'}; "
                 f"{section} holds {', '.join(DEFAULTS[section])}")
        for key, default in DEFAULTS[section].items():
            name, value = f"{section}.{key}", values[key]
            default = float(default) if name in FRACTIONAL else default
            if name in CHOICES and value not in CHOICES[name]:
                fail(f"{name} must be {' or '.join(map(str, CHOICES[name]))}, got {value!r}")
            if not _fits_default(default, value):
                fail(f"{name} must be {_default_kind(default)}, got {value!r}")
            if name in RANGES and not all(map(RANGES[name][1], value if isinstance(value, list) else [value])):
                fail(f"{name} must be {RANGES[name][0]}{' (every value)' if isinstance(value, list) else ''}, got {value!r}")
    inp, train, test = cfg["input"], cfg["train"], cfg["test"]
    for name, (low, high) in (("input.jitter", inp["jitter"]), ("input.rrc_scale", inp["rrc_scale"])):
        if low > high:
            fail(f"{name} is [low, high] with low <= high, got {[low, high]}")
    if inp["train_crop"] == "jitter" and inp["size"] > inp["jitter"][0]:
        fail(f"input.size {inp['size']} is larger than the short side it is cropped from (input.jitter {inp['jitter']}); "
             "raise input.jitter or lower input.size")
    crop = test["crop_size"] or inp["size"]
    if crop > test["short_side"]:
        fail(f"the test crop {crop} (test.crop_size, or input.size where it is 0) is larger than the short side it is cropped "
             f"from (test.short_side {test['short_side']}); raise test.short_side or lower the crop")
    if crop != inp["size"] and (cfg.get("module") or cfg["model_name"]) not in ANY_TEST_CROP:
        fail(f"test.crop_size {crop} differs from input.size {inp['size']}, which fixes the input of {cfg['model_name']}; only "
             f"the CNNs ({', '.join(f'models/{m}.py' for m in sorted(ANY_TEST_CROP))}) take another test crop; set test.crop_size 0")
    if inp["color_jitter_strength"][3] > 0.5:
        fail(f"input.color_jitter_strength is brightness, contrast, saturation, hue with hue <= 0.5, got {inp['color_jitter_strength']}")
    if train["min_lr"] > train["lr"]:
        fail(f"train.min_lr {train['min_lr']} is above train.lr {train['lr']}")
    if train["weight_averaging"] > train["epochs"]:
        fail(f"train.weight_averaging {train['weight_averaging']} starts the weight average after the last epoch "
             f"(train.epochs {train['epochs']}); set it to at most {train['epochs']}, or 0 for none")
    steps, factors = train["lr_steps"], train["lr_step_factors"]
    if train["lr_policy"] == "steps" and not (steps and steps[0] == 0 and len(factors) == len(steps)
                                              and all(a < b for a, b in zip(steps, steps[1:]))):
        fail(f"train.lr_policy steps needs train.lr_steps, increasing epochs from 0, and a train.lr_step_factors value "
             f"for each; got lr_steps {steps}, lr_step_factors {factors}")
    if train["lr_policy"] != "steps" and (steps or factors):
        fail(f"train.lr_steps and train.lr_step_factors belong to train.lr_policy steps (the cosine ignores them); "
             f"set train.lr_policy=steps or remove them")
    return cfg
