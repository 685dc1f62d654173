"""Weights on disk: the download cache, reading released checkpoints, and loading them strictly.

Shared by every model file: released checkpoints come as TorchScript archives (OpenAI CLIP), torch.save
containers ({'model_state': ...}, {'state_dict': ...}, {'model': ...}) or plain state dicts, with or
without a DDP `module.` prefix; read_checkpoint reads them all, training checkpoints that pickle
config objects too (without running their code). load_checked copies one into a module by name and refuses anything
that does not fit, with a one-line error that lists what is missing, unexpected or of another shape.
"""
import fnmatch
import hashlib
import os
import pickle
import sys
import types
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path
from typing import Sequence, Union

import torch
import torch.nn as nn


REPO = Path(__file__).resolve().parents[1]


def _log(msg: str) -> None:
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


def download(url: str, sha256: str, folder: Path, what: str, log=_log) -> Path:
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
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.endswith("constants.pkl") for n in z.namelist())


def read_checkpoint(path: Union[str, Path], what: str = "checkpoint", log=_log):
    """Load a checkpoint file on the CPU: a TorchScript archive (OpenAI's .pt releases) -> its
    state_dict(); anything else through torch.load(weights_only=True), which unpickles nothing but
    tensors and plain containers. A training checkpoint that pickles more (X-CLIP's and ViFi-CLIP's
    yacs config, optimizer and scheduler beside the weights) is then read with only torch's
    weights_only globals resolved and every other object replaced by an inert stand-in: no code of
    the original classes runs, and the names left out are logged. Errors are one line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SystemExit(f"error: {what} '{path}' not found")
    try:
        if _is_torchscript(path):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit is deprecated, and still the only reader of these files
                return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # objects beyond tensors and containers: read below with inert stand-ins
    except Exception as e:  # noqa: BLE001 - every reader failure gets the same one-line explanation
        raise SystemExit(_unreadable(what, path, e)) from None
    try:
        others = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # noqa: BLE001 - only used for the log line
        others = []
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_inert_pickle)
    except Exception as e:  # noqa: BLE001
        raise SystemExit(_unreadable(what, path, e)) from None
    if others:
        log(f"{path.name}: read without running its {len(others)} non-tensor classes ({_names(others)}); "
            f"their objects are left out")
    return obj


def _unreadable(what: str, path: Path, e: Exception) -> str:
    first = (str(e).strip().splitlines() or [""])[0][:160]
    return f"error: cannot read {what} {path} ({type(e).__name__}: {first}); expected a PyTorch checkpoint or a TorchScript archive"


class _Opaque(dict):
    """Stands in for an object of a checkpoint that is neither a tensor nor a plain container (a
    pickled yacs config, a numpy scalar, ...): an empty dict that accepts and ignores any arguments
    and state, so unpickling it runs no code of the original class."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __setstate__(self, state):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass


class _InertUnpickler(pickle.Unpickler):
    """Resolves only the globals torch's weights_only loader allows (tensor rebuilders, dtypes,
    OrderedDict, ...); every other global becomes an _Opaque subclass of the same name."""

    def find_class(self, module: str, name: str):
        from torch import _weights_only_unpickler

        allowed = _weights_only_unpickler._get_allowed_globals()
        full = f"{module}.{name}"
        if full in allowed:
            return allowed[full]
        return type(name, (_Opaque,), {"__module__": module, "__qualname__": name})


_inert_pickle = types.ModuleType("inert_pickle")
_inert_pickle.Unpickler = _InertUnpickler
_inert_pickle.load = lambda f, **kwargs: _InertUnpickler(f, **kwargs).load()


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


def _names(keys, limit: int = 4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f", ... {len(keys) - limit} more" if len(keys) > limit else "")


def _matches(key: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def drop_other_head(state: dict, own: dict, keys: Sequence[str], source: str, name: str, log=_log) -> tuple:
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
                 allow_missing: Sequence[str] = (), allow_unexpected: Sequence[str] = (), log=_log) -> dict:
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
            parts.append(f"{len(bad_missing)} missing ({_names(bad_missing)})")
        if bad_unexpected:
            parts.append(f"{len(bad_unexpected)} unexpected ({_names(bad_unexpected)})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of another shape ({k}: checkpoint {list(state[k].shape)} vs model "
                         f"{list(own[k].shape)}{', ...' if len(wrong) > 1 else ''})")
        raise SystemExit(f"error: {source} does not fit {name}: " + "; ".join(parts))
    with torch.no_grad():
        for k in set(own) & set(state):
            own[k].copy_(state[k])
    if missing:
        log(f"{name}: {len(missing)} tensors are not in {source} and keep their initialisation: {_names(missing)}")
    if unexpected:
        log(f"{name}: ignored {len(unexpected)} tensors of {source}: {_names(unexpected)}")
    log(f"{name}: loaded {len(own) - len(missing)} tensors from {source}")
    return {"loaded": len(own) - len(missing), "missing": missing, "unexpected": unexpected}
