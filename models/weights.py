"""Weights on disk: the download cache, reading released checkpoints, loading them strictly, and CLIP's.

Shared by every model file: released checkpoints come as TorchScript archives (OpenAI CLIP), torch.save
containers ({'model_state': ...}, {'state_dict': ...}, {'model': ...}) or plain state dicts, with or
without a DDP `module.` prefix; read_checkpoint reads them all, training checkpoints that pickle
config objects too, and runs nothing a file holds: no torch.jit.load, no torch.load(weights_only=False),
only torch's weights_only unpickler. load_checked copies one into a module by name and refuses anything
that does not fit, with a one-line error that lists what is missing, unexpected or of another shape.

CLIP weights: `load_clip_state_dict(spec)` with spec a model name (downloaded once into $MT_CACHE/clip,
default ~/.cache/clip, SHA256 checked after download and on every cache hit), a file (TorchScript
archive as released, a plain state dict or {'state_dict': ...}), or 'none'. A model that starts from
CLIP reads its `pretrained` (a CLIP name, or a file of CLIP weights or of its own) with
`read_pretrained` (the checkpoint as read) or `read_pretrained_state` (a flat fp32 state dict);
models built on the image tower alone (vit.py, aim.py, uniformerv2.py) with `load_clip_visual_state`
(CLIP weights, an image tower alone, or the model's own release told by a key prefix).
`fit_pos_embed` / `fit_time_embed` resample a loaded position / time embedding to the model's input.
Errors are one line (SystemExit "error: ..."), the harness's convention.
"""
import fnmatch
import hashlib
import io
import math
import os
import pickle
import re
import sys
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
from torch import _weights_only_unpickler

from models.clip import CLIP, VIT_B16, resample_frames, resize_pos_embed


REPO = Path(__file__).resolve().parents[1]


def log_to_stderr(msg: str) -> None:
    """The default `log` of every loading function: one line on stderr."""
    print(msg, file=sys.stderr)


def no_weights(spec) -> bool:
    """True for a recipe's `pretrained` that names no weights: None, False, '' or 'none'."""
    return spec is None or spec is False or str(spec).strip().lower() in ("", "none")


def resolve_path(path) -> Path:
    """A path as given, else relative to the repository root (a recipe's files from any directory)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() or p.exists() or not (REPO / p).exists() else REPO / p


def cache_dir(kind: str = "clip") -> Path:
    """Where downloads go: $MT_CACHE/<kind> when MT_CACHE is set; otherwise ~/.cache/clip for CLIP
    (OpenAI's own cache, so an existing download is reused) and torch.hub's checkpoint folder
    ($TORCH_HOME/hub/checkpoints, default ~/.cache/torch/hub/checkpoints) for anything else."""
    root = os.environ.get("MT_CACHE")
    if root:
        return Path(root).expanduser() / kind
    if kind == "clip":
        return Path("~/.cache/clip").expanduser()
    return Path(torch.hub.get_dir()) / "checkpoints"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, sha256: str, folder: Path, what: str, log=log_to_stderr) -> Path:
    """The file at `url` (a recipe's `pretrained` weights), kept in `folder` under its URL name.
    `sha256` is the full hex digest or a prefix of it (torch.hub's 8-digit convention); it is checked
    after the download and on every cache hit (a cached file that fails is fetched again). Failure ->
    SystemExit "error: ..." that says how to go on without the download."""
    folder = Path(folder)
    name = url.rsplit("/", 1)[-1]
    target = folder / name
    hint = (f"put a copy of {name} on this machine and pass it as `pretrained: /path/to/{name}` "
            f"(or --set pretrained=/path/to/{name}), or train from scratch with `pretrained: none`")
    if target.is_file():
        if file_sha256(target).startswith(sha256):
            return target
        log(f"{target} does not have the expected SHA256 {sha256}; downloading it again")
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        log(f"downloading {what} from {url} to {target}")
        h = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=60) as src, open(partial, "wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                dst.write(chunk)
                h.update(chunk)
    except (OSError, ValueError, urllib.error.URLError) as e:
        partial.unlink(missing_ok=True)
        reason = str(getattr(e, "reason", None) or e).strip().replace("\n", " ")[:160] or type(e).__name__
        raise SystemExit(f"error: cannot download {what} from {url} ({reason}); {hint}") from None
    if not h.hexdigest().startswith(sha256):
        partial.unlink(missing_ok=True)
        raise SystemExit(f"error: the download of {what} from {url} has SHA256 {h.hexdigest()[:16]}..., "
                         f"expected {sha256[:16]}...; {hint}")
    os.replace(partial, target)
    return target


def _is_torchscript(path: Path) -> bool:
    """A zip whose records include code/ or constants.pkl (torch.load's own test is the latter)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.endswith("constants.pkl") for n in z.namelist())


def read_checkpoint(path: Union[str, Path], what: str = "checkpoint", log=log_to_stderr):
    """Load a checkpoint file on the CPU without running anything it holds. A TorchScript archive
    (OpenAI's .pt releases) -> the state_dict() torch.jit.load would give, read from the archive's
    tensors and the parameter/buffer names its code declares (the code is read as text, never run;
    torch.jit.load is never called). Anything else through torch.load(weights_only=True), which
    unpickles nothing but tensors and plain containers. A training checkpoint that pickles more
    (X-CLIP's and ViFi-CLIP's yacs config, optimizer and scheduler beside the weights) is then read
    with the same restricted unpickler and every other object replaced by an inert stand-in: no code
    of the original classes runs, and the names left out are logged. Errors are one line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SystemExit(f"error: {what} '{path}' not found")
    try:
        if _is_torchscript(path):
            return _read_archive(path, what, script=True)[0]
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected pickle protocol")  # an error follows if it matters
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if not zipfile.is_zipfile(path):  # torch's format before 1.6: read as tensors only
                raise SystemExit(f"error: cannot read {what} {path}: it pickles Python objects beyond tensors "
                                 f"({reason(e)}), which are read (as inert stand-ins) only from torch.save's zip "
                                 f"format; where you trust it, load it and torch.save its state dict") from None
        obj, others = _read_archive(path, what, script=False)
    except Exception as e:  # noqa: BLE001 - every reader failure gets the same one-line explanation
        raise SystemExit(_unreadable(what, path, e)) from None
    if others:
        log(f"{path.name}: read without running its {len(others)} non-tensor classes ({short_list(others)}); "
            f"their objects are left out")
    return obj


def reason(e: BaseException) -> str:
    """What went wrong, from an exception's message, short enough for a one-line error. torch.load's
    weights_only failures open with a paragraph about trusting the file; the cause is the line after."""
    text = str(e).strip()
    if text.startswith("Weights only load failed"):
        text = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in text else text.split("\n\n", 1)[-1]
        text = text.strip().split(". ", 1)[0]  # not the advice that follows: to trust the file
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:160]


def _unreadable(what: str, path: Path, e: Exception) -> str:
    return (f"error: cannot read {what} {path} ({type(e).__name__}: {reason(e)}); "
            f"expected a PyTorch checkpoint or a TorchScript archive")


class _Opaque(dict):
    """Stands in for an object of a checkpoint that is neither a tensor nor a plain container (a
    pickled yacs config, a numpy scalar, a TorchScript module): created without running any code of
    the original class; it ignores arguments, items and list entries, and keeps the attributes the
    file gives it (`attributes`: a TorchScript module's tensors are read from there)."""

    qualified_name = ""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __setstate__(self, state):
        self.attributes = state if isinstance(state, dict) else {}

    def __setitem__(self, key, value):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass


class _ArchiveUnpickler(_weights_only_unpickler.Unpickler):
    """torch's weights_only unpickler (pure Python: only allowlisted globals, objects built only of
    those) over an archive's data.pkl, its tensors' storages read from the archive's data/ records;
    stand-ins (_Opaque) may also take items and list entries, which they ignore."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(archive.read(prefix + "data.pkl")), encoding="utf-8")
        self.archive, self.prefix, self.storages, self.empty = archive, prefix, {}, set()

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and isinstance(pid[2], str) and isinstance(pid[4], int) and pid[4] >= 0):
            raise pickle.UnpicklingError(f"unexpected storage reference {str(pid)[:80]}")
        _, kind, key, _, numel = pid
        dtype = torch.uint8 if kind is torch.UntypedStorage else getattr(kind, "dtype", None)
        if not isinstance(dtype, torch.dtype):
            raise pickle.UnpicklingError(f"storage {key} has no tensor type ({str(kind)[:40]})")
        if key not in self.storages:
            name, nbytes = f"{self.prefix}data/{key}", numel * dtype.itemsize
            if self.archive.getinfo(name).file_size < nbytes:
                raise pickle.UnpicklingError(f"storage {name} holds {self.archive.getinfo(name).file_size} bytes, "
                                             f"its tensors need {nbytes}")
            with self.archive.open(name) as f:
                raw = bytearray(f.read(nbytes))
            # a buffer's storage cannot grow: a tensor that reaches beyond it is an error, as in torch.load
            untyped = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if nbytes else torch.UntypedStorage(0)
            if not nbytes:
                self.empty.add(key)
            self.storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
        return self.storages[key]

    def load(self):
        obj = super().load()
        if any(self.storages[key]._untyped_storage.nbytes() for key in self.empty):  # the only storages that can grow
            raise pickle.UnpicklingError("a tensor reaches beyond its empty storage")
        return obj

    def _check_set_item_target(self, opcode):
        if not isinstance(self.stack[-1], _Opaque):
            super()._check_set_item_target(opcode)

    def _check_append_target(self, list_obj):
        if not isinstance(list_obj, _Opaque):
            super()._check_append_target(list_obj)


def _same(value, type_tag=None):
    return value


# What TorchScript's pickler writes around typed lists and dicts (torch/jit/_pickle.py): each gives its value back.
_SCRIPT_HELPERS = {f"torch.jit._pickle.{name}": _same for name in (
    "build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "build_tensor_from_id", "restore_type_tag")}


def _read_archive(path: Path, what: str, script: bool) -> tuple:
    """A zip archive of torch.save or torch.jit.save (`<name>/data.pkl`, `<name>/data/<key>`, and for
    TorchScript `<name>/code/`) -> (object, names of the globals replaced by stand-ins). Its data.pkl
    goes through _ArchiveUnpickler with an _Opaque stand-in for every global torch's weights_only
    loader does not allow (but TorchScript's list and dict helpers); in a TorchScript archive (`script`)
    those may only be its own classes (`__torch__.*`), and the object returned is the state dict
    torch.jit.load(...).state_dict() gives."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        data = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(data) != 1:
            raise SystemExit(f"error: cannot read {what} {path}: a zip archive of PyTorch has one <name>/data.pkl, "
                             f"this one has {len(data) or 'none'}; expected a PyTorch checkpoint or a TorchScript archive")
        prefix = data[0][: -len("data.pkl")]
        if prefix + "byteorder" in names and archive.read(prefix + "byteorder").decode(errors="replace") != sys.byteorder:
            raise SystemExit(f"error: cannot read {what} {path}: it was saved on a machine of another byte order")
        found = _weights_only_unpickler.get_globals_in_pkl(io.BytesIO(archive.read(data[0])))
        helpers = sorted(found & set(_SCRIPT_HELPERS))
        others = sorted(found - set(_weights_only_unpickler._get_allowed_globals()) - set(helpers))
        if script:
            foreign = [n for n in others if not n.startswith("__torch__.")]
            if foreign:
                raise SystemExit(f"error: cannot read {what} {path}: this TorchScript archive refers to "
                                 f"{short_list(foreign)}, which no weights need; it was not read (nothing in it was run)")
            modules = _script_modules(archive, prefix)
        stand_ins = [(type(n.rsplit(".", 1)[-1], (_Opaque,), {"qualified_name": n}), n) for n in others]
        stand_ins += [(_SCRIPT_HELPERS[n], n) for n in helpers]
        with warnings.catch_warnings(), torch.serialization.safe_globals(stand_ins):
            warnings.simplefilter("ignore")  # the pickle protocol note and TypedStorage's deprecation
            obj = _ArchiveUnpickler(archive, prefix).load()
            torch._utils._validate_loaded_sparse_tensors()
    if script:
        return _script_state_dict(obj, modules, f"{what} {path}"), others
    return obj, others


def _script_modules(archive: zipfile.ZipFile, prefix: str) -> dict:
    """{qualified class name: (parameter names, buffer names)} of every module class of a TorchScript
    archive, from the declarations of its code/ files (`class X(Module):`, `__parameters__ = [...]`,
    `__buffers__ = [...]`), read as text."""
    modules, code = {}, prefix + "code/"
    for name in archive.namelist():
        if not (name.startswith(code) and name.endswith(".py")):
            continue
        package, current = name[len(code): -len(".py")].replace("/", "."), None
        for line in archive.read(name).decode("utf-8", "replace").splitlines():
            if not line.startswith(" "):
                m = re.match(r"class (\w+)\(Module\):", line)
                current = modules.setdefault(f"{package}.{m[1]}", ([], [])) if m else None
            elif current is not None and (m := re.match(r"\s+__(parameters|buffers)__ = \[(.*)\]\s*$", line)):
                current[m[1] == "buffers"].extend(re.findall(r'"([^"]*)"', m[2]))
    return modules


def _script_state_dict(root, modules: dict, source: str) -> dict:
    """The parameters and buffers of a TorchScript module tree of stand-ins, named and ordered as
    torch.jit's state_dict() names them: each module's parameters, then its buffers, then its
    submodules'. A module whose attributes only its own code could restore is an error."""
    state = {}

    def collect(module, prefix):
        params, buffers = modules[module.qualified_name]
        attributes = getattr(module, "attributes", {})
        absent = [n for n in params + buffers if n not in attributes]
        if absent:
            raise SystemExit(f"error: cannot read {source}: its module {module.qualified_name} restores {short_list(absent)} "
                             f"with its own code (__setstate__), which is never run here")
        for names in (params, buffers):
            state.update((prefix + n, v.detach()) for n, v in attributes.items() if n in names and isinstance(v, torch.Tensor))
        for n, v in attributes.items():
            if isinstance(v, _Opaque) and v.qualified_name in modules:
                collect(v, f"{prefix}{n}.")

    if not (isinstance(root, _Opaque) and root.qualified_name in modules):
        raise SystemExit(f"error: cannot read {source}: its data.pkl holds no TorchScript module")
    collect(root, "")
    return state


def extract_state_dict(obj, source: str = "checkpoint", containers=("state_dict", "model_state", "model")) -> dict:
    """A loaded checkpoint -> flat {name: tensor}: the first of `containers` that holds a dict, else
    the object itself; a DDP `module.` prefix on every key is stripped."""
    state = obj
    if isinstance(obj, dict):
        for key in containers:
            if isinstance(obj.get(key), dict):
                state = obj[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SystemExit(f"error: {source} holds no state dict (expected {{name: tensor}} or "
                         f"{' / '.join('{%r: ...}' % c for c in containers)})")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def short_list(keys, limit: int = 4) -> str:
    """The first `limit` of the sorted keys and how many more, for one-line messages."""
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f", ... {len(keys) - limit} more" if len(keys) > limit else "")


def _matches(key: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def drop_other_head(state: dict, own: dict, keys: Sequence[str], source: str, name: str, log=log_to_stderr) -> tuple:
    """`state` without its classifier head (`keys`, e.g. weight and bias) when that head has another
    class count than the model's (`own`, its state dict) and otherwise the same shape, logged; the
    model's head keeps its initialisation. -> (state, whether the head was dropped)."""
    other = [k for k in keys if k in state and k in own and state[k].shape[0] != own[k].shape[0]
             and state[k].shape[1:] == own[k].shape[1:]]
    if not other:
        return state, False
    log(f"{name}: dropping the {state[other[0]].shape[0]}-class head of {source}; this model has "
        f"{own[other[0]].shape[0]} classes, its head stays freshly initialised")
    return {k: v for k, v in state.items() if k not in keys}, True


def load_checked(module: nn.Module, state: dict, source: str = "checkpoint", *, name: str = "model",
                 allow_missing: Sequence[str] = (), allow_unexpected: Sequence[str] = (), log=log_to_stderr) -> dict:
    """Copy `state` into `module` by name. Names and shapes must match exactly, except for missing
    keys matching a pattern of allow_missing (they keep their initialisation) and unexpected keys
    matching allow_unexpected (ignored); both are listed in the log. Anything else raises
    SystemExit with a one-line message. Values are cast to the module's dtypes.
    Returns {'loaded': n, 'missing': [...], 'unexpected': [...]}."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    bad_missing = [k for k in missing if not _matches(k, allow_missing)]
    bad_unexpected = [k for k in unexpected if not _matches(k, allow_unexpected)]
    if bad_missing or bad_unexpected or wrong:
        parts = []
        if bad_missing:
            parts.append(f"{len(bad_missing)} missing ({short_list(bad_missing)})")
        if bad_unexpected:
            parts.append(f"{len(bad_unexpected)} unexpected ({short_list(bad_unexpected)})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of another shape ({k}: checkpoint {list(state[k].shape)} vs model "
                         f"{list(own[k].shape)}{', ...' if len(wrong) > 1 else ''})")
        raise SystemExit(f"error: {source} does not fit {name}: " + "; ".join(parts))
    with torch.no_grad():
        for k in set(own) & set(state):
            own[k].copy_(state[k])
    if missing:
        log(f"{name}: {len(missing)} tensors are not in {source} and keep their initialisation: {short_list(missing)}")
    if unexpected:
        log(f"{name}: ignored {len(unexpected)} tensors of {source}: {short_list(unexpected)}")
    log(f"{name}: loaded {len(own) - len(missing)} tensors from {source}")
    return {"loaded": len(own) - len(missing), "missing": missing, "unexpected": unexpected}

# ---------------------------------------------------------------------------------------------
# CLIP weights

# Released ViT models: name -> URL. The second-to-last path component is the file's SHA256.
CLIP_MODELS = {
    "ViT-B/32": "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-B/16": "https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-L/14": "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "ViT-L/14@336px": "https://openaipublic.azureedge.net/clip/models/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
}

# 0-dim int64 entries of the TorchScript archives that are not parameters of CLIP.
JIT_EXTRAS = ("input_resolution", "context_length", "vocab_size")


def clip_config(state_dict: dict) -> dict:
    """The CLIP(...) arguments of an OpenAI-layout state dict, read from its shapes (OpenAI's build_model)."""
    sd = state_dict
    needed = ("visual.conv1.weight", "visual.positional_embedding", "text_projection", "positional_embedding",
              "token_embedding.weight", "ln_final.weight")
    absent = [k for k in needed if k not in sd]
    if absent:
        if "visual.layer1.0.conv1.weight" in sd:
            raise SystemExit("error: this is a ResNet CLIP; only the ViT image towers are implemented")
        raise SystemExit(f"error: not an OpenAI CLIP state dict (no {', '.join(absent[:3])})")
    width = sd["visual.conv1.weight"].shape[0]
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = math.isqrt(sd["visual.positional_embedding"].shape[0] - 1)
    text_width = sd["ln_final.weight"].shape[0]
    return dict(
        embed_dim=sd["text_projection"].shape[1],
        image_resolution=patch * grid,
        vision_layers=len([k for k in sd if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")]),
        vision_width=width,
        vision_patch_size=patch,
        context_length=sd["positional_embedding"].shape[0],
        vocab_size=sd["token_embedding.weight"].shape[0],
        transformer_width=text_width,
        transformer_heads=text_width // 64,
        transformer_layers=len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")}),
    )


def build_clip(state_dict: dict, source: str = "state dict", log=log_to_stderr, **kwargs) -> CLIP:
    """A CLIP whose architecture is read from `state_dict`, loaded with it (strictly). kwargs go to CLIP."""
    model = CLIP(**clip_config(state_dict), **kwargs)
    load_checked(model, state_dict, source, name="CLIP", log=log)
    return model



def load_clip_state_dict(spec, log=log_to_stderr) -> Optional[dict]:
    """OpenAI CLIP weights as an fp32 state dict in OpenAI's layout (no prefix), or None for 'none'.

    spec: a released model name (CLIP_MODELS, e.g. 'ViT-B/16': downloaded once, SHA256-checked),
    a file path (the released TorchScript archive, a plain state dict, or {'state_dict': ...} /
    {'model': ...}), or 'none'. The archive's 0-dim extras (input_resolution, context_length,
    vocab_size) are dropped."""
    if no_weights(spec):
        return None
    spec = str(spec)
    if spec in CLIP_MODELS:
        url = CLIP_MODELS[spec]
        path = download(url, url.rsplit("/", 2)[-2], cache_dir("clip"), f"CLIP {spec} weights", log=log)
        source = f"CLIP {spec} ({path})"
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise SystemExit(f"error: CLIP weights '{spec}' not found: pretrained takes a released model name "
                             f"({', '.join(CLIP_MODELS)}), the path of a weights file, or none")
        source = str(path)
    state = extract_state_dict(read_checkpoint(path, "CLIP weights", log=log), source)
    for k in JIT_EXTRAS:
        state.pop(k, None)
    _require_vit(state, source)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _require_vit(state: dict, source: str) -> None:
    if "visual.conv1.weight" not in state or "visual.positional_embedding" not in state:
        hint = " (a ResNet CLIP; only ViT towers are implemented)" if "visual.layer1.0.conv1.weight" in state else ""
        raise SystemExit(f"error: {source} holds no OpenAI CLIP ViT weights{hint}: no visual.conv1.weight "
                         f"(first keys: {short_list(state)})")


def read_pretrained(spec, model: str, log=log_to_stderr) -> tuple:
    """A recipe's `pretrained` for a model that starts from OpenAI CLIP -> (checkpoint, source): the
    state dict of a released CLIP name (load_clip_state_dict), or what a file holds
    (models.weights.read_checkpoint; a relative path not found here is taken from the repository
    root); (None, None) for 'none'. `model` names the model's own weights in messages."""
    if no_weights(spec):
        return None, None
    spec = str(spec)
    if spec in CLIP_MODELS:
        return load_clip_state_dict(spec, log=log), f"CLIP {spec}"
    path = resolve_path(spec)
    if not path.is_file():
        raise SystemExit(f"error: {model} weights '{spec}' not found: give a CLIP name ({', '.join(CLIP_MODELS)}), "
                         f"the path of CLIP or {model} weights, or none")
    return read_checkpoint(path, f"{model} weights", log=log), str(path)


def read_pretrained_state(spec, model: str, containers=("state_dict", "model_state", "model"), log=log_to_stderr) -> tuple:
    """read_pretrained's checkpoint as a flat fp32 state dict (models.weights.extract_state_dict, from
    the first of `containers` that holds one; TorchScript's extras left out) -> (state, source);
    (None, None) for 'none'."""
    obj, source = read_pretrained(spec, model, log=log)
    if source is None:
        return None, None
    state = extract_state_dict(obj, source, containers=containers)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items() if k not in JIT_EXTRAS}, source


def load_clip_visual_state(spec, model: str, release_prefix: str = None,
                           containers=("state_dict", "model_state", "model"), log=log_to_stderr) -> tuple:
    """A recipe's `pretrained` for a model built on CLIP's image tower -> (kind, state, source):

      ('clip', the image tower's tensors without the `visual.` prefix, source) for a released CLIP
          name, a CLIP file (the TorchScript archive or a state dict) or a file of the image tower
          alone (conv1.weight, class_embedding, ...: the original UniFormerV2's vit_b16.pth,
          mmaction2's CLIP visual encoder); the text tower's tensors are left out (logged);
      ('release', the state dict as it is, source) for a checkpoint of the model itself, told by keys
          starting with `release_prefix` (e.g. 'backbone.'); None: the model has no such checkpoints;
      (None, None, None) for 'none'.
    Read with read_pretrained_state (fp32, from the first of `containers` holding a state dict)."""
    state, source = read_pretrained_state(spec, model, containers, log=log)
    if source is None:
        return None, None, None
    if release_prefix and any(k.startswith(release_prefix) for k in state):
        return "release", state, source
    if "visual.conv1.weight" not in state:
        if "conv1.weight" in state and "class_embedding" in state:
            return "clip", state, source
        what = f"neither {model} weights ({release_prefix}* keys) nor" if release_prefix else "no"
        raise SystemExit(f"error: {source} holds {what} CLIP weights (visual.conv1.weight or conv1.weight); "
                         f"first keys: {short_list(state)}")
    _require_vit(state, source)
    text = [k for k in state if not k.startswith("visual.")]
    if text:
        log(f"{model.lower()}: the {len(text)} text-tower tensors of {source} are not used")
    return "clip", {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}, source


def fit_pos_embed(state: dict, key: str, grid: int, source: str, name: str, log=log_to_stderr) -> None:
    """Resample state[key], a positional embedding [..., 1 + g*g, D] for another input size, in place
    to 1 + grid*grid positions (resize_pos_embed, bicubic), with a log line. One whose rows are not
    1 + a square grid is left as it is, for load_checked to report."""
    pe = state.get(key)
    if pe is None or pe.ndim < 2 or pe.shape[-2] == 1 + grid * grid:
        return
    try:
        state[key] = resize_pos_embed(pe, grid)
    except ValueError:
        return
    log(f"{name}: resampled {key} of {source} from {pe.shape[-2]} to {state[key].shape[-2]} positions")


def fit_time_embed(state: dict, own: dict, key: str, source: str, name: str, log=log_to_stderr) -> None:
    """Resample state[key], a time embedding [..., T', D] for another frame count than the model's
    own[key] [..., T, D] (own: its state dict), in place to T frames (resample_frames, in fp32), with
    a log line. One whose other dimensions differ is left as it is, for load_checked to report."""
    t, mine = state.get(key), own.get(key)
    if t is None or mine is None or t.ndim != mine.ndim or t.shape[-2] == mine.shape[-2] \
            or t.shape[:-2] != mine.shape[:-2] or t.shape[-1] != mine.shape[-1]:
        return
    state[key] = resample_frames(t.float(), mine.shape[-2])
    log(f"{name}: resampled {key} of {source} from {t.shape[-2]} to {mine.shape[-2]} frames")



def load_clip(spec="ViT-B/16", config: dict = None, log=log_to_stderr, **kwargs) -> CLIP:
    """A CLIP model with the weights of `spec` (see load_clip_state_dict), its architecture read
    from the weights; with spec 'none', a freshly initialised CLIP(**config) (default ViT-B/16).
    A `config` given with weights must agree with them. kwargs go to CLIP (drop_path, blocks...)."""
    state = load_clip_state_dict(spec, log=log)
    if state is None:
        return CLIP(**(config or VIT_B16), **kwargs)
    found = clip_config(state)
    if config:
        diff = [f"{k} is {found.get(k)}, configured {v}" for k, v in config.items() if found.get(k) != v]
        if diff:
            raise SystemExit(f"error: CLIP weights {spec} do not match the configured architecture: {'; '.join(diff)}")
    return build_clip(state, source=str(spec), log=log, **kwargs)
