"""Weight and checkpoint files: nothing in them runs. TorchScript archives (OpenAI CLIP's releases) are
read as the state dict torch.jit.load would give, without torch.jit.load; a crafted archive whose code
writes a file when torch.jit.load restores it writes nothing here, through every model's `pretrained`
and through train.py's and evaluate.py's checkpoint reader; broken and hostile files are one-line errors."""
import io
import os
import pickle
import sys
import types
import warnings
import zipfile
from collections import OrderedDict
from typing import Dict, List, Tuple

import pytest
import torch
import torch.nn as nn

import evaluate
from conftest import one_line_error, tiny_cfg
from data.video import DecodeError
from models import build_model, list_models
from models import clip as mc
from models import weights
from test_clip import SMALL, save_torchscript_like_release


def quiet(message):
    pass


# ---------------------------------------------------------------------------------------------
# archives made here with torch.jit: a plain one, and crafted ones whose code has a side effect


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.proj = nn.Linear(3, 3, bias=False)  # an Optional parameter that is None
        self.register_buffer("count", torch.tensor(5))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)  # TorchScript keeps it as a buffer
        self.mask = torch.ones(3)  # a plain tensor attribute: not in the state dict
        self.sizes: List[int] = [1, 2]  # typed lists and dicts: pickled through torch.jit._pickle's helpers
        self.table: Dict[str, float] = {"a": 1.0}
        self.extras: List[torch.Tensor] = [torch.ones(1)]

    def forward(self, x):
        return self.proj(self.lin(x)) * self.mask + self.sizes[0] + self.table["a"] + self.extras[0]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(3).half())
        self.blocks = nn.Sequential(Block(), nn.ReLU(), Block())
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.blocks(x) * self.scale.float())


class WritesOnLoad(nn.Module):
    """What torch.jit.load runs: its __setstate__ maps `target` as shared memory (creating the file) and writes to it."""

    def __init__(self, target: str, with_weight: bool):
        super().__init__()
        self.target = target
        self.weight = nn.Parameter(torch.ones(3)) if with_weight else None

    def forward(self, x):
        return x

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.target, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.target = state[0]
        written = torch.from_file(self.target, True, 8, dtype=torch.uint8)
        self.training = bool(written.fill_(65)[0] == 65) and state[1]


class Carrier(nn.Module):
    def __init__(self, target: str, with_weight: bool = False):
        super().__init__()
        self.payload = WritesOnLoad(target, with_weight)
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        return self.lin(self.payload(x))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archives")
    paths = {name: folder / f"{name}.pt" for name in ("net", "clip", "crafted", "crafted_weight", "saved")}
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated
        torch.jit.script(Net()).save(str(paths["net"]))
        torch.jit.script(Carrier(str(folder / "written"))).save(str(paths["crafted"]))
        torch.jit.script(Carrier(str(folder / "written"), with_weight=True)).save(str(paths["crafted_weight"]))
    save_torchscript_like_release(mc.CLIP(**SMALL), paths["clip"])
    torch.save({"model": {"w": torch.arange(4.0)}, "epoch": 3}, paths["saved"])
    return folder, paths


@pytest.fixture
def written(made):
    target = made[0] / "written"
    target.unlink(missing_ok=True)
    yield target
    target.unlink(missing_ok=True)


@pytest.mark.parametrize("name", ["net", "clip"])
def test_a_torchscript_archive_reads_to_the_state_dict_torch_jit_load_gives(made, name):
    path = made[1][name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = torch.jit.load(str(path)).state_dict()  # trusted: made above
    got = weights.read_checkpoint(path, log=quiet)
    assert list(got) == list(expected)
    for k, v in expected.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and got[k].stride() == v.stride(), k
        assert torch.equal(got[k], v) and not got[k].requires_grad, k
    if name == "net":
        assert "blocks.0.scratch" in got and "blocks.0.mask" not in got and "blocks.0.proj.bias" not in got
        pickled_data = zipfile.ZipFile(path).read("net/data.pkl")
        assert b"build_intlist" in pickled_data and b"restore_type_tag" in pickled_data  # TorchScript's list/dict helpers


def test_torch_jit_load_runs_the_crafted_archive_and_the_reader_does_not(made, written):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(made[1]["crafted"]))
    assert written.read_bytes() == b"A" * 8  # the archive is potent: its code ran inside torch.jit.load
    written.unlink()
    state = weights.read_checkpoint(made[1]["crafted"], log=quiet)
    assert sorted(state) == ["lin.bias", "lin.weight"] and not written.exists()
    with pytest.raises(SystemExit) as e:
        weights.load_clip_state_dict(str(made[1]["crafted"]), log=quiet)
    one_line_error(e, "holds no OpenAI CLIP ViT weights")
    assert not written.exists()


def test_an_archive_whose_code_restores_its_tensors_is_refused_without_running_it(made, written):
    with pytest.raises(SystemExit) as e:
        weights.read_checkpoint(made[1]["crafted_weight"], "CLIP weights", log=quiet)
    one_line_error(e, "WritesOnLoad restores weight", "never run")
    assert not written.exists()


# ---------------------------------------------------------------------------------------------
# every entry point that reads a file


def entry_points():
    points = [(m, "pretrained") for m in list_models()]
    return points + [("froster", "model.teacher")]


@pytest.mark.parametrize("model,key", entry_points(), ids=[f"{m}-{k}" for m, k in entry_points()])
def test_every_pretrained_loader_reads_the_crafted_archive_without_running_it(made, written, model, key):
    cfg = tiny_cfg(model)
    if key == "pretrained":
        cfg["pretrained"] = str(made[1]["crafted"])
    else:
        cfg["model"]["teacher"] = str(made[1]["crafted"])
    with pytest.raises(SystemExit) as e:
        build_model(cfg, ["a", "b", "c"])
    one_line_error(e, str(made[1]["crafted"]))  # read (its tensors do not fit), not refused before reading
    assert not written.exists()


def test_checkpoints_of_train_and_evaluate_are_read_as_tensors_only(made, written, tmp_path):
    """train.py --resume, evaluate.py --ckpt and the demo read through evaluate.load_checkpoint."""
    with pytest.raises(SystemExit) as e:
        evaluate.load_checkpoint(made[1]["crafted"])
    one_line_error(e, "not a checkpoint written by train.py")
    assert not written.exists()
    ran = tmp_path / "ran"
    (tmp_path / "ckpt.pt").write_bytes(craft_archive(made, {"config": Call(eval, (f"open({str(ran)!r}, 'w')",))}))
    with pytest.raises(SystemExit) as e:
        evaluate.load_checkpoint(tmp_path / "ckpt.pt")
    one_line_error(e, "not a checkpoint written by train.py", "eval")
    assert not ran.exists()


# ---------------------------------------------------------------------------------------------
# crafted pickles: what a hostile data.pkl can say


class Call:
    """Pickles as a call of `func(*args)` (REDUCE), as a hostile file would."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


class Storage:
    """A reference to the archive record data/<key> (BINPERSID), as torch.save writes them."""

    def __init__(self, key, kind=torch.FloatStorage, numel=4):
        self.pid = ("storage", kind, key, "cpu", numel)


def tensor(storage, size=(4,), stride=(1,)):
    return Call(torch._utils._rebuild_tensor_v2, (storage, 0, size, stride, False, OrderedDict()))


SCRIPT_MODULE = "__torch__.test_reliability_weights"  # where TorchScript puts the classes of this file
script_classes = types.ModuleType(SCRIPT_MODULE)


def script_object(name="Net", **attributes):
    """An object that pickles as one of the TorchScript class SCRIPT_MODULE.<name>, with these attributes."""
    if not hasattr(script_classes, name):
        setattr(script_classes, name, type(name, (), {"__module__": SCRIPT_MODULE, "__qualname__": name}))
    obj = object.__new__(getattr(script_classes, name))
    obj.__dict__.update(attributes)
    return obj


def pickled(obj) -> bytes:
    """Protocol 2, as torch writes data.pkl; the TorchScript classes are importable only while pickling."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            return o.pid if isinstance(o, Storage) else None

    buffer, saved = io.BytesIO(), {k: sys.modules.get(k) for k in ("__torch__", SCRIPT_MODULE)}
    sys.modules.update({"__torch__": types.ModuleType("__torch__"), SCRIPT_MODULE: script_classes})
    try:
        Pickler(buffer, protocol=2).dump(obj)
    finally:
        for k, v in saved.items():
            sys.modules.pop(k) if v is None else sys.modules.update({k: v})
    return buffer.getvalue()


def craft_archive(made, data, records=None, drop=(), template="saved", outside=None) -> bytes:
    """An archive made here (torch.save or torch.jit.save) with data.pkl pickled from `data` (or
    `data` itself when bytes), records replaced or added from `records` (and `outside` its folder),
    and `drop` names left out."""
    source = zipfile.ZipFile(made[1][template])
    prefix = source.namelist()[0].split("/")[0] + "/"
    records = {**{prefix + k: v for k, v in (records or {}).items()}, **(outside or {})}
    records[prefix + "data.pkl"] = data if isinstance(data, bytes) else pickled(data)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name in source.namelist():
            if name[len(prefix):] not in drop and name not in records:
                z.writestr(name, source.read(name))
        for name, content in records.items():
            if name[len(prefix):] not in drop:
                z.writestr(name, content)
    return out.getvalue()


def self_containing():
    module = script_object(scale=None)
    module.blocks = module
    return module


def ran_marker(tmp_path):
    return tmp_path / "ran"


# name -> (bytes of the file, words of the error); `ran` is the file a payload would create
HOSTILE = {
    "empty file": lambda made, ran: (b"", ["cannot read"]),
    "text, not a checkpoint": lambda made, ran: (b"not a checkpoint\n", ["cannot read"]),
    "TorchScript archive cut in half": lambda made, ran: (made[1]["net"].read_bytes()[: made[1]["net"].stat().st_size // 2], ["cannot read"]),
    "torch.save archive cut in half": lambda made, ran: (made[1]["saved"].read_bytes()[:300], ["cannot read"]),
    "TorchScript archive without data.pkl": lambda made, ran: (
        craft_archive(made, b"", drop={"data.pkl"}, template="net"), ["has none"]),
    "archive with two data.pkl": lambda made, ran: (
        craft_archive(made, {}, outside={"other/data.pkl": b""}, template="net"), ["has 2"]),
    "TorchScript data.pkl calling os.system": lambda made, ran: (
        craft_archive(made, Call(os.system, (f"touch {ran}",)), template="net"), ["refers to", "system", "not read"]),
    "TorchScript data.pkl calling builtins.eval": lambda made, ran: (
        craft_archive(made, Call(eval, (f"open({str(ran)!r}, 'w')",)), template="net"), ["refers to builtins.eval"]),
    "TorchScript data.pkl building a subprocess.Popen": lambda made, ran: (
        craft_archive(made, script_object(x=Call(__import__("subprocess").Popen, (["touch", str(ran)],))), template="net"),
        ["Popen"]),
    "torch.save data.pkl calling os.system": lambda made, ran: (
        craft_archive(made, {"model": Call(os.system, (f"touch {ran}",))}), ["blocked"]),
    "data.pkl that is not a pickle": lambda made, ran: (craft_archive(made, b"\x80\x02garbage", template="net"), ["cannot read"]),
    "data.pkl in pickle protocol 5": lambda made, ran: (
        craft_archive(made, pickle.dumps({"w": 1}, protocol=5), template="net"), ["cannot read"]),
    "storage record missing": lambda made, ran: (
        craft_archive(made, {"w": tensor(Storage("99"))}, template="net"), ["data/99"]),
    "storage record shorter than its tensors": lambda made, ran: (
        craft_archive(made, {"w": tensor(Storage("99"))}, records={"data/99": b"\0" * 3}, template="net"), ["holds 3 bytes", "need 16"]),
    "tensor beyond its storage": lambda made, ran: (
        craft_archive(made, script_object(scale=tensor(Storage("99"), size=(1000,))), records={"data/99": b"\0" * 16}, template="net"),
        ["not resizable"]),
    "tensor beyond its empty storage": lambda made, ran: (
        craft_archive(made, script_object(scale=tensor(Storage("99", numel=0), size=(1000,))), records={"data/99": b""},
                      template="net"), ["beyond its empty storage"]),
    "storage of a negative size": lambda made, ran: (
        craft_archive(made, {"w": tensor(Storage("99", numel=-1))}, template="net"), ["storage reference"]),
    "storage reference that is not a storage": lambda made, ran: (
        craft_archive(made, {"w": tensor(Storage("99", kind="FloatStorage"))}, records={"data/99": b"\0" * 16}, template="net"),
        ["no tensor type"]),
    "TorchScript module that contains itself": lambda made, ran: (
        craft_archive(made, self_containing(), template="net"), ["RecursionError"]),
    "TorchScript data.pkl holding no module": lambda made, ran: (craft_archive(made, {"w": 1}, template="net"), ["no TorchScript module"]),
    "TorchScript archive of the other byte order": lambda made, ran: (
        craft_archive(made, script_object(), records={"byteorder": b"big" if sys.byteorder == "little" else b"little"},
                      template="net"), ["byte order"]),
    "pickle file (not torch's format) calling os.system": lambda made, ran: (
        pickle.dumps({"model": Call(os.system, (f"touch {ran}",))}, protocol=2), ["zip format", "system"]),
    "pickle file of protocol 4": lambda made, ran: (pickle.dumps({"model": 1}, protocol=4), ["Unsupported operand"]),
    "torch.save of the pre-1.6 format pickling an object": lambda made, ran: (legacy_with_object(), ["zip format"]),
}


def legacy_with_object() -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.ones(2), "when": __import__("datetime").date(2020, 1, 1)}, buffer,
               _use_new_zipfile_serialization=False)
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_broken_or_hostile_file_is_a_one_line_error_and_nothing_runs(made, tmp_path, case):
    ran = ran_marker(tmp_path)
    content, words = HOSTILE[case](made, ran)
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(SystemExit) as e:
        weights.read_checkpoint(path, "CLIP weights", log=quiet)
    one_line_error(e, "CLIP weights", str(path), *words)
    assert not ran.exists()


def test_other_objects_of_a_checkpoint_stay_inert_stand_ins(made, tmp_path):
    """A release that pickles more than tensors (X-CLIP's yacs config) is read; the objects are
    stand-ins created without running anything, even a call of builtins.eval."""
    ran = ran_marker(tmp_path)
    path = tmp_path / "release.pth"
    path.write_bytes(craft_archive(made, {"model": {"w": tensor(Storage("0"))}, "config": Call(eval, (f"open({str(ran)!r}, 'w')",))},
                                   records={"data/0": torch.arange(4.0).numpy().tobytes()}))
    logs = []
    obj = weights.read_checkpoint(path, log=logs.append)
    assert torch.equal(obj["model"]["w"], torch.arange(4.0)) and isinstance(obj["config"], weights._Opaque)
    assert not ran.exists() and len(logs) == 1 and "builtins.eval" in logs[0]


# ---------------------------------------------------------------------------------------------
# the one-video demo: only a file that cannot be decoded is reported as one


@pytest.fixture(scope="module")
def one_video(tmp_path_factory):
    from conftest import moving_square, write_video

    path = tmp_path_factory.mktemp("demo") / "clip.mp4"
    write_video(path, moving_square(0, 0, 0))
    return path


def test_the_demo_reports_an_undecodable_file_as_one(one_video, tmp_path):
    cfg = tiny_cfg("i3d_small")
    assert evaluate.read_clip(one_video, cfg).shape[1] == cfg["input"]["frames"]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(one_video.read_bytes()[:200])
    with pytest.raises(SystemExit) as e:
        evaluate.read_clip(broken, cfg)
    one_line_error(e, "cannot decode video", str(broken))


@pytest.mark.parametrize("setting", [{"sampling": "tsn"}, {"frames": 0}, {"sampling": "dense", "stride": "2"}])
def test_the_demo_does_not_call_a_setting_error_a_decode_failure(one_video, setting):
    cfg = tiny_cfg("i3d_small")
    cfg["input"].update(setting)
    with pytest.raises(BaseException) as e:  # SystemExit included: its own message, or the error itself
        evaluate.read_clip(one_video, cfg)
    assert "cannot decode" not in str(e.value) and not isinstance(e.value, DecodeError)


# ---------------------------------------------------------------------------------------------
# a run on other data than it was trained on: refused, or a note where --splits names the folder


def syn_folder(folder, version=3, rows=2):
    """A prepared Syn-TA folder of a generated video root (its manifest; no videos needed) -> splits dir."""
    import json

    from data.hierarchy import load_hierarchy
    from data.splits import SPLITS, Video, write_dataset

    synta = load_hierarchy("synta")
    (folder / "synta_manifest.json").parent.mkdir(parents=True, exist_ok=True)
    (folder / "synta_manifest.json").write_text(json.dumps({"generator": "data.synta", "options": {"version": version, "seed": 0}}))
    lists = {name: [Video(f"{c.source}_id_{i}.mp4", c.coarse_id, c.fine_id, c.set)
                    for c in synta.fine_classes(int(name[-1]))[:rows] for i in ((1, 2) if name.startswith("train") else (31,))]
             for name in SPLITS}
    write_dataset(folder / "splits", "synta", folder, lists, {})
    return folder / "splits"


def run_config(splits, fingerprint=None):
    from models import load_recipe

    cfg = load_recipe("i3d_small", "synta", tiny=True)
    cfg.update(dataset="synta", task="coarse", train_set=1, splits=str(splits))
    return {**cfg, "data_fingerprint": fingerprint} if fingerprint else cfg


def test_a_run_records_its_data_and_is_not_scored_on_other_data_silently(tmp_path, capsys):
    splits = syn_folder(tmp_path / "synta")
    cfg = run_config(splits)
    evaluate.resolve_data(cfg)
    recorded = cfg["data_fingerprint"]
    assert evaluate.resolve_data(run_config(splits, recorded)) == (splits, tmp_path / "synta")
    for change, other in (("videos rendered again", lambda: syn_folder(tmp_path / "synta", version=4)),
                          ("split lists", lambda: syn_folder(tmp_path / "synta", rows=1))):
        other()
        with pytest.raises(SystemExit) as e:
            evaluate.resolve_data(run_config(splits, recorded), source="run/ckpt.pt")
        one_line_error(e, "run/ckpt.pt was trained on other data", f"--splits {splits}")
        evaluate.resolve_data(run_config(splits, recorded), splits=str(splits))  # named: goes on, with a note
        assert "note: the run was trained on other data" in capsys.readouterr().err
        syn_folder(tmp_path / "synta")
        assert evaluate.resolve_data(run_config(splits, recorded)) == (splits, tmp_path / "synta")


@pytest.mark.parametrize("rendered_again", [False, True])
def test_the_main_job_does_not_score_its_old_runs_on_videos_rendered_again(tmp_path, monkeypatch, rendered_again):
    import data.synta
    import train

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(data.synta, "generate", lambda *args, **kwargs: None)  # the cache below is what it left
    cache = tmp_path / "cache" / "synta_small_coupled"
    splits = syn_folder(cache)
    cfg = run_config(splits)
    evaluate.resolve_data(cfg)
    (tmp_path / "runs" / "main_job_coupled" / "set1").mkdir(parents=True)
    torch.save({"config": cfg, "model": {}}, tmp_path / "runs" / "main_job_coupled" / "set1" / "ckpt.pt")
    if rendered_again:
        syn_folder(cache, version=4)
    with pytest.raises(SystemExit) as e:
        train.main(["--workers", "0"])
    if rendered_again:
        one_line_error(e, "runs/main_job_coupled/set1 was trained on other videos", "delete runs/main_job_coupled", "--out DIR")
    else:  # the same data passes; the launcher then finds this hand-made run's settings are not the main job's
        one_line_error(e, "runs/main_job_coupled/set1 holds a run with", "give another --out")
