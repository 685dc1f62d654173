"""Hostile settings, checkpoint files and split files given to train.py and evaluate.py: each is one
line naming the key or the file, found before the work that does not need it (reading the split
files, building the model, reading videos: each of those raises Forbidden here when it comes too early).

No videos are needed: the split files list videos of an empty folder, and the checkpoint is made by
hand from a tiny model after one optimizer step."""
import copy
import shutil

import pytest
import torch

import evaluate
import train
from conftest import one_line_error, random_clips
from data.hierarchy import load_hierarchy
from data.splits import SPLITS, Video, write_dataset
from models import build_model, load_recipe

SYNTA = load_hierarchy("synta")


class Forbidden(BaseException):
    """Not an Exception: no handler on the way may take it for a decode failure."""


@pytest.fixture
def forbid(monkeypatch):
    """forbid("splits", "model", "videos"): reading split files, building a model or reading videos raises Forbidden."""

    def raise_forbidden(what):
        def call(*args, **kwargs):
            raise Forbidden(f"{what} before the mistake was reported")
        return call

    targets = {"splits": ["load_videos"], "model": ["build_model"], "videos": ["make_loader"]}

    def apply(*what):
        for name in what:
            for module in (train, evaluate):
                for attr in targets[name]:
                    monkeypatch.setattr(module, attr, raise_forbidden(name), raising=False)
    return apply


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A prepared Syn-TA folder (four split files of an empty video folder) and a valid checkpoint of a
    tiny vit run on it, one epoch of two done -> (splits dir, checkpoint path, the checkpoint)."""
    root = tmp_path_factory.mktemp("reliability")
    (root / "videos").mkdir()
    lists = {name: [Video(f"{c.source}_id_{i}.mp4", c.coarse_id, c.fine_id, c.set)
                    for c in SYNTA.fine_classes(int(name[-1]))[:6] for i in ((1, 2) if name.startswith("train") else (31, 32))]
             for name in SPLITS}
    write_dataset(root / "splits", "synta", root / "videos", lists, {})
    cfg = load_recipe("vit", "synta", tiny=True)
    cfg.update(dataset="synta", task="coarse", train_set=1, splits=str(root / "splits"))
    cfg["train"].update(epochs=2, batch_size=4, workers=0)
    torch.manual_seed(0)
    model = build_model(cfg, SYNTA.coarse_names)
    optimizer = train.make_optimizer(model, cfg["train"], torch.device("cpu"))
    size, frames = cfg["input"]["size"], cfg["input"]["frames"]
    model(random_clips(4, frames, size)).logsumexp(1).mean().backward()
    optimizer.step()  # every parameter now has its AdamW state
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    ckpt = dict(model=model.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                scaler=torch.amp.GradScaler("cuda", enabled=False).state_dict(), epoch=1, step_in_epoch=0,
                rng=train.rng_state(), config=cfg, git="test")
    (root / "run").mkdir()
    torch.save(ckpt, root / "run" / "ckpt.pt")
    return root / "splits", root / "run" / "ckpt.pt", ckpt


def new_run(splits, out, *flags, model="vit"):
    return ["--model", model, "--data", "synta", "--tiny", "--splits", str(splits), "--out", str(out), "--workers", "0", *flags]


# ---------------------------------------------------------------------------------------------
# settings: flags, --set, and flags a run would ignore; nothing read, nothing built


TRAIN_SETTINGS = [  # (flags, words of the error)
    (["--epochs", "0"], "train.epochs"),
    (["--epochs", "-1"], "train.epochs"),
    (["--lr", "-1"], "train.lr"),
    (["--lr", "0"], "train.lr"),
    (["--accum-steps", "0"], "train.accum_steps"),
    (["--log-every", "0"], "--log-every"),
    (["--batch-size", "-4"], "train.batch_size"),
    (["--workers", "-1"], "train.workers"),
    (["--device", "foo"], "--device"),
    (["--frames", "0"], "input.frames"),
    (["--seed", "-1"], "train.seed"),
    (["--set", "train.lr=abc"], "train.lr"),
    (["--set", "train.epochs=2.5"], "train.epochs"),
    (["--set", "input.size=0"], "input.size"),
    (["--set", "input.size=48"], "input.size", "input.jitter"),  # larger than the short side it is cropped from
    (["--set", "test.short_side=16"], "input.size", "test.short_side"),
    (["--set", "input.jitter=[40, 32]"], "input.jitter"),
    (["--set", "input.mean=[1, 2]"], "input.mean"),
    (["--set", "input.mean=[.nan, .nan, .nan]"], "input.mean"),
    (["--set", "input.std=[0, 1, 1]"], "input.std"),
    (["--set", "input.flip=3"], "input.flip"),
    (["--set", "input.sampling=random"], "input.sampling"),
    (["--set", "input.stride=0"], "input.stride"),
    (["--set", "train.optimizer=adam"], "train.optimizer"),
    (["--set", "train.precision=fp8"], "train.precision"),
    (["--set", "train.betas=[0.9]"], "train.betas"),
    (["--set", "train.momentum=1.5"], "train.momentum"),
    (["--set", "train.min_lr=1"], "train.min_lr"),
    (["--set", "train.label_smoothing=1.5"], "train.label_smoothing"),
    (["--set", "train.warmup_epochs=-1"], "train.warmup_epochs"),
    (["--set", "train.compile=maybe"], "train.compile"),
    (["--set", "test.crops=2"], "test.crops"),
    (["--set", "test.clips=0"], "test.clips"),
    (["--set", "test.batch_size=0"], "test.batch_size"),
    (["--set", "pretrained=null"], "pretrained"),
    (["--appearance", "shared"], "--appearance"),
]


@pytest.mark.parametrize("flags, words", [(c[0], c[1:]) for c in TRAIN_SETTINGS], ids=[" ".join(c[0]) for c in TRAIN_SETTINGS])
def test_train_setting(flags, words, prepared, forbid, tmp_path):
    forbid("splits", "model", "videos")
    with pytest.raises(SystemExit) as e:
        train.main(new_run(prepared[0], tmp_path / "run", *flags))
    one_line_error(e, *words)


def test_text_templates_are_checked_before_the_model_is_built(prepared, forbid, tmp_path):
    forbid("splits", "model", "videos")
    with pytest.raises(SystemExit) as e:
        train.main(new_run(prepared[0], tmp_path / "run", "--set", "text.templates=[no class name]", model="xclip"))
    one_line_error(e, "text.templates")


def test_a_gpu_that_is_not_there(prepared, forbid, tmp_path, monkeypatch):
    forbid("splits", "model", "videos")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(SystemExit) as e:
        train.main(new_run(prepared[0], tmp_path / "run", "--device", "cuda:3"))
    one_line_error(e, "--device cuda:3", "1 GPU")


def test_out_that_is_a_file(prepared, forbid, tmp_path):
    forbid("splits", "model", "videos")
    (tmp_path / "taken").write_text("a user's file")
    with pytest.raises(SystemExit) as e:
        train.main(new_run(prepared[0], tmp_path / "taken"))
    one_line_error(e, "--out", "is a file")
    assert (tmp_path / "taken").read_text() == "a user's file"


@pytest.mark.parametrize("flags, word", [(["--lr", "3e-4"], "--lr"), (["--epochs", "5"], "--epochs"), (["--tiny"], "--tiny"),
                                         (["--set", "train.lr=1"], "--set"), (["--task", "fine"], "--task")])
def test_flags_a_resumed_run_would_ignore(flags, word, prepared, forbid):
    forbid("splits", "model", "videos")
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", str(prepared[1]), *flags])
    one_line_error(e, word)


@pytest.mark.parametrize("flags", [["--epochs", "2"], ["--set", "train.lr=1"], ["--splits", "x"]])
def test_flags_the_main_job_would_ignore(flags, forbid, tmp_path, monkeypatch):
    forbid("splits", "model", "videos")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        train.main(flags)
    one_line_error(e, flags[0], "needs --model and --data")
    assert not (tmp_path / "cache").exists()  # nothing generated


EVALUATE_SETTINGS = [
    (["--views", "0x1"], "test.clips"),
    (["--views", "1x2"], "test.crops"),
    (["--batch-size", "-1"], "test.batch_size"),
    (["--batch-size", "0"], "test.batch_size"),
    (["--workers", "-2"], "train.workers"),
    (["--device", "foo"], "--device"),
    (["--json", "/nonexistent/folder/all.json"], "--json"),
]


@pytest.mark.parametrize("flags, word", EVALUATE_SETTINGS, ids=[" ".join(c[0]) for c in EVALUATE_SETTINGS])
def test_evaluate_setting(flags, word, prepared, forbid):
    forbid("splits", "model", "videos")
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--ckpt", str(prepared[1]), *flags])
    one_line_error(e, word)


@pytest.mark.parametrize("flags, word", [(["--top", "0"], "--top"), (["--set", "input.frames=0"], "input.frames")])
def test_demo_setting(flags, word, forbid, tmp_path):
    forbid("model", "videos")
    (tmp_path / "clip.mp4").write_bytes(b"never read")
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--video", str(tmp_path / "clip.mp4"), "--classes", "a,b", "--model", "xclip", "--tiny", *flags])
    one_line_error(e, word)


def test_two_checkpoints_of_one_set_are_refused_before_either_is_evaluated(prepared, forbid):
    forbid("model", "videos")
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--ckpt", str(prepared[1]), str(prepared[1])])
    one_line_error(e, "one checkpoint trained on set 1 and one trained on set 2", "got sets [1, 1]")


# ---------------------------------------------------------------------------------------------
# checkpoint files given to train.py --resume and evaluate.py --ckpt


# each case writes, in place of the valid checkpoint (`ckpt`, its bytes `raw`), bytes or an object torch.save writes


def named(e, path, *words) -> None:
    """A one-line error naming the file `path` and, elsewhere in the line, every word."""
    rest = one_line_error(e, path).replace(path, "")
    assert all(w in rest for w in words), rest


def without(*keys):
    return lambda ckpt, raw: {k: v for k, v in ckpt.items() if k not in keys}


def replace(**entries):
    return lambda ckpt, raw: {**ckpt, **entries}


def edit(entry, change):
    """`change` applied to a copy of one entry (copying the weights for every case would cost seconds)."""
    def apply(ckpt, raw):
        part = copy.deepcopy(ckpt[entry])
        change(part)
        return {**ckpt, entry: part}
    return apply


def other_models_optimizer(ckpt, raw):
    torch.manual_seed(1)
    cfg = load_recipe("timesformer", "synta", tiny=True)
    other = build_model(cfg, SYNTA.coarse_names)
    return {**ckpt, "optimizer": train.make_optimizer(other, cfg["train"], torch.device("cpu")).state_dict()}


def first_state(optimizer):
    return next(iter(optimizer["state"].values()))


FILES = {  # name: (what is written in place of the checkpoint, words of the error)
    "empty file": (lambda ckpt, raw: b"", ("not a checkpoint",)),
    "truncated": (lambda ckpt, raw: raw[: len(raw) // 2], ("not a checkpoint", "truncated")),
    "config not a dict": (replace(config="vit"), ("no 'config'/'model'",)),
    "weights not a dict": (replace(model=[1, 2]), ("no 'config'/'model'",)),
    "config without dataset": (edit("config", lambda c: c.pop("dataset")), ("'dataset'",)),
    "unknown model name": (edit("config", lambda c: c.update(model_name="vitt")), ("vitt",)),
    "unknown dataset": (edit("config", lambda c: c.update(dataset="kinetics")), ("kinetics",)),
    "a NaN mean in its config": (edit("config", lambda c: c["input"].update(mean=[float("nan")] * 3)), ("input.mean",)),
    "an unknown setting in its config": (edit("config", lambda c: c["train"].update(lrr=1)), ("train.lrr",)),
}
RESUME_ONLY = {  # what only resuming needs; after the model is built, before any data is read
    "no rng": (without("rng"), ("'rng'",)),
    "no optimizer": (without("optimizer"), ("'optimizer'",)),
    "no scheduler": (without("scheduler"), ("'scheduler'",)),
    "another model's optimizer": (other_models_optimizer, ("optimizer",)),
    "SGD state in an AdamW run": (edit("optimizer", lambda o: [g.pop("betas") for g in o["param_groups"]]), ("optimizer", "betas")),
    "optimizer tensor of another shape": (edit("optimizer", lambda o: first_state(o).update(exp_avg=torch.zeros(7))), ("optimizer", "exp_avg")),
    "empty scheduler": (replace(scheduler={}), ("scheduler",)),
    "rng of another kind": (replace(rng={"torch": torch.zeros(3, dtype=torch.uint8), "numpy": [1]}), ("rng",)),
    "position past the run": (replace(step_in_epoch=99), ("position",)),
}


def write_bad(tmp_path, prepared, make) -> str:
    path = tmp_path / "run" / "ckpt.pt"
    path.parent.mkdir()
    made = make(prepared[2], prepared[1].read_bytes())
    if isinstance(made, bytes):
        path.write_bytes(made)
    else:
        torch.save(made, path)
    return str(path)


@pytest.mark.parametrize("tool", ["resume", "evaluate"])
@pytest.mark.parametrize("case", list(FILES))
def test_checkpoint_file(case, tool, prepared, forbid, tmp_path):
    forbid("splits", "model", "videos")
    path = write_bad(tmp_path, prepared, FILES[case][0])
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", path, "--workers", "0"]) if tool == "resume" else evaluate.main(["--ckpt", path, "--workers", "0"])
    named(e, path, *FILES[case][1])


@pytest.mark.parametrize("case", list(RESUME_ONLY))
def test_checkpoint_state_for_resuming(case, prepared, forbid, tmp_path):
    forbid("videos")
    path = write_bad(tmp_path, prepared, RESUME_ONLY[case][0])
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", path, "--workers", "0"])
    named(e, path, *RESUME_ONLY[case][1])


def test_the_valid_checkpoint_resumes_and_evaluates_up_to_reading_videos(prepared, forbid):
    """The control of the cases above: the unedited checkpoint passes every check."""
    forbid("videos")
    with pytest.raises(Forbidden):
        train.main(["--resume", str(prepared[1]), "--workers", "0"])
    with pytest.raises(Forbidden):
        evaluate.main(["--ckpt", str(prepared[1]), "--workers", "0"])


@pytest.mark.parametrize("tool", ["resume", "evaluate"])
def test_a_folder_given_as_checkpoint(tool, prepared, forbid):
    forbid("splits", "model", "videos")
    folder = str(prepared[1].parent)
    with pytest.raises(SystemExit) as e:
        train.main(["--resume", folder]) if tool == "resume" else evaluate.main(["--ckpt", folder])
    named(e, folder, "is a folder", "ckpt.pt")


# ---------------------------------------------------------------------------------------------
# split files: all of them read before the model is built


def write_header_only(path):
    path.write_text("path,coarse_id,fine_id,set\n")


SPLIT_FILES = {  # name: (file, how it is spoilt, words of the error, tools)
    "empty val split": ("val_set2", write_header_only, ("val_set2.csv", "no videos"), ("train", "evaluate")),
    "malformed val row": ("val_set1", lambda p: p.open("a").write("x.mp4,0,zero,1\n"), ("val_set1.csv:", "malformed"), ("train", "evaluate")),
    "missing val split": ("val_set2", lambda p: p.unlink(), ("val_set2.csv", "not found"), ("train", "evaluate")),
    "empty other training split": ("train_set2", write_header_only, ("train_set2.csv", "no videos"), ("train",)),
    "malformed other training split": ("train_set2", lambda p: p.open("a").write("x.mp4,0\n"), ("train_set2.csv:", "malformed"), ("train",)),
}


@pytest.mark.parametrize("case, tool", [(c, t) for c, v in SPLIT_FILES.items() for t in v[3]])
def test_split_file(case, tool, prepared, forbid, tmp_path):
    forbid("model", "videos")
    name, spoil, words, _ = SPLIT_FILES[case]
    splits = tmp_path / "splits"
    shutil.copytree(prepared[0], splits)
    spoil(splits / f"{name}.csv")
    with pytest.raises(SystemExit) as e:
        if tool == "train":
            train.main(new_run(splits, tmp_path / "run"))
        else:
            evaluate.main(["--ckpt", str(prepared[1]), "--splits", str(splits)])
    one_line_error(e, *words)
