"""Shared fixtures and helpers: tiny real videos written with PyAV, the optional ../shared folder of
official files, the released checkpoints' key layouts (tests/data), tiny recipes and CLIP weights, and
the checks of the harness's one-line errors."""
import gzip
import json
import os
import zlib
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def write_video(path: Path, frames: np.ndarray, fps: int = 24) -> None:
    """frames: uint8 [T, H, W, 3] (H, W even) -> H.264 .mp4, or VP8 .webm as SSv2 ships."""
    path.parent.mkdir(parents=True, exist_ok=True)
    webm = path.suffix == ".webm"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx" if webm else "libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {} if webm else {"crf": "18", "preset": "ultrafast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def moving_square(coarse_id: int, variant: int, seed: int, frames: int = 12, size: int = 32) -> np.ndarray:
    """A square whose motion direction encodes the coarse class and whose colour and size encode the
    fine variant: learnable from motion, with a context shift between variants."""
    rng = np.random.default_rng(seed)
    video = np.full((frames, size, size, 3), 40, np.uint8)
    angle = 2 * np.pi * coarse_id / 4 + rng.normal(0, 0.1)
    side = 6 + 4 * (variant % 2)
    colour = np.array([[230, 60, 60], [60, 200, 60], [60, 90, 230], [220, 220, 60]][variant % 4], np.uint8)
    start = size / 2 - np.array([np.cos(angle), np.sin(angle)]) * size / 4
    for t in range(frames):
        x, y = (start + np.array([np.cos(angle), np.sin(angle)]) * size / 2 * t / frames).astype(int)
        video[t, max(0, y - side // 2) : y + side // 2, max(0, x - side // 2) : x + side // 2] = colour
    return video


def make_synta_tree(root: Path, coarse_ids=(0, 1, 2, 3), train_ids=(1, 2, 3), val_ids=(31, 32), frames=12, size=32) -> Path:
    """Syn-TA-layout folder with moving-square videos for the fine classes of a few coarse classes."""
    from data.hierarchy import load_hierarchy

    for cls in load_hierarchy("synta").fine:
        if cls.coarse_id not in coarse_ids:
            continue
        folder, base = cls.source.split("/")
        for view in ("", "_front"):
            for i in (*train_ids, *val_ids):
                seed = zlib.crc32(f"{cls.source}{view}{i}".encode())
                write_video(root / folder / f"{base}{view}_id_{i}.mp4", moving_square(cls.coarse_id, cls.set - 1, seed, frames, size))
    return root


@pytest.fixture(scope="session")
def synta_tiny(tmp_path_factory):
    """A prepared tiny Syn-TA folder: videos + split CSVs. Returns (video_root, splits_dir)."""
    from data.prepare import prepare

    root = make_synta_tree(tmp_path_factory.mktemp("synta_videos"))
    splits = tmp_path_factory.mktemp("synta_splits")
    prepare("synta", root, splits)
    return root, splits


@pytest.fixture
def shared():
    if not SHARED.is_dir():
        pytest.skip("../shared (official reference files) is not present")
    return SHARED


def quiet(msg):
    pass


def one_line_error(excinfo, *words) -> str:
    """The message of a SystemExit as the harness writes them: 'error: ...', one line, with `words` in it."""
    msg = str(excinfo.value)
    assert msg.startswith("error: ") and "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def release_layout(name: str) -> dict:
    """A released checkpoint's key layout (names, shapes, parameter counts; tests/data/README.md)."""
    return json.loads(gzip.decompress((REPO / "tests" / "data" / "release_layouts.json.gz").read_bytes()))[name]


def tiny_cfg(model: str, dataset: str = "synta", **model_overrides) -> dict:
    """A model's CPU-sized recipe, with `model_overrides` in its model section."""
    from models import load_recipe

    cfg = load_recipe(model, dataset, tiny=True)
    cfg["model"].update(model_overrides)
    return cfg


def build_unloaded(cfg: dict, classes):
    """The model of `cfg` as its build_model makes it, without loading `pretrained`; `classes`: the
    class names, or a count for a classifier."""
    from models import build_model

    names = [f"class {i}" for i in range(classes)] if isinstance(classes, int) else list(classes)
    return build_model({**cfg, "pretrained": "none"}, names)


def random_clips(batch=2, frames=4, size=32, seed=0) -> torch.Tensor:
    """A uint8 clip batch [batch, frames, 3, size, size] of random pixels."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, frames, 3, size, size), dtype=torch.uint8, generator=g)


def perturb(module, scale=0.05, seed=1):
    """Add scale * N(0, 1) noise to every parameter (off zero-initialised branches and identities)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def save_checkpoint(obj, folder) -> str:
    """torch.save(obj) to a new weights<N>.pth in folder -> its path."""
    path = Path(folder) / f"weights{len(list(Path(folder).glob('*.pth')))}.pth"
    torch.save(obj, path)
    return str(path)


def tiny_vision_clip(seed=0, **overrides):
    """A CLIP whose image tower has the tiny vit / AIM / UniFormerV2 recipes' architecture (width 64,
    2 layers, patch 8, 32 px); its LayerNorms are off 1/0, so that a missed one would show."""
    from models import clip as mc

    torch.manual_seed(seed)
    args = dict(embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=8,
                context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=1,
                vision_heads=2)
    clip = mc.CLIP(**{**args, **overrides})
    with torch.no_grad():
        for name, p in clip.visual.named_parameters():
            if ".ln_" in name or name.startswith("ln_"):
                p.add_(torch.randn_like(p) * 0.1)
    return clip


def record_text_batches(model) -> list:
    """Wrap model.encode_text: every call appends its batch size to the returned list."""
    calls, encode = [], model.encode_text
    model.encode_text = lambda tokens: calls.append(len(tokens)) or encode(tokens)
    return calls


def write_descriptions(path: Path, descriptions: dict) -> Path:
    """{class name: description} as a descriptions CSV in the project's format (name,description)."""
    import csv

    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "description"])
        w.writerows(descriptions.items())
    return path


# ---------------------------------------------------------------------------------------------
# tiny runs through train.py and evaluate.py


def train_args(splits, out, model: str, *extra) -> list:
    """train.py arguments for a tiny one-epoch run on the prepared Syn-TA splits folder `splits`."""
    return ["--model", model, "--data", "synta", "--splits", str(splits), "--out", str(out), "--tiny",
            "--epochs", "1", "--batch-size", "8", "--workers", "0", *extra]


def train_and_evaluate_both_sets(splits, out: Path, model: str, capsys, *extra) -> dict:
    """Train `model` on set 1 (out/set1) and on set 2 (out/set2), check each run's result, then
    evaluate.py both checkpoints and check the average of the two directions -> evaluate's summary."""
    import evaluate
    import train

    for s in (1, 2):
        result = train.main(train_args(splits, out / f"set{s}", model, "--train-set", str(s), *extra))
        assert result["model"] == model and result["train_set"] == s
        assert result["known"]["videos"] > 0 and result["unknown"]["videos"] > 0
    capsys.readouterr()
    summary = evaluate.main(["--ckpt", str(out / "set1" / "ckpt.pt"), str(out / "set2" / "ckpt.pt"), "--workers", "0"])
    assert "average of the two directions" in capsys.readouterr().out
    assert summary["averages"][0]["top1"]["known"] == pytest.approx(
        (summary["directions"][0]["top1"]["known"] + summary["directions"][1]["top1"]["known"]) / 2)
    return summary


def interrupt_after_step(monkeypatch, step: int) -> None:
    """Send a real SIGINT, as Ctrl-C does, right after optimizer step `step` (from 1) of the next run."""
    import signal

    import train

    done, optimizer_step = [], train.optimizer_step

    def step_then_signal(*args, **kwargs):
        optimizer_step(*args, **kwargs)
        done.append(1)
        if len(done) == step:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(train, "optimizer_step", step_then_signal)


def check_resume_matches_uninterrupted(splits, out: Path, model: str, monkeypatch, *extra) -> dict:
    """Train `model` for 2 epochs uninterrupted (out/full) and again (out/cut) stopped by a SIGINT at
    step 12, then resumed: both must end with the same scores and bit-identical weights. -> the
    interrupted run's checkpoint as it was before resuming."""
    import train

    full = train.main(train_args(splits, out / "full", model, "--epochs", "2", *extra))
    with monkeypatch.context() as m, pytest.raises(SystemExit) as stop:
        interrupt_after_step(m, 12)  # in the middle of epoch 2
        train.main(train_args(splits, out / "cut", model, "--epochs", "2", *extra))
    assert stop.value.code == 130
    cut = torch.load(out / "cut" / "ckpt.pt", weights_only=True)
    resumed = train.main(["--resume", "--out", str(out / "cut"), "--workers", "0"])
    assert resumed["top1"] == full["top1"] and resumed["mean_class"] == full["mean_class"]
    a, b = (torch.load(out / d / "ckpt.pt", weights_only=True)["model"] for d in ("full", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    return cut
