"""Shared fixtures: tiny real videos written with PyAV, and the optional ../shared reference folder."""
import os
import zlib
import sys
from pathlib import Path

import av
import numpy as np
import pytest

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
