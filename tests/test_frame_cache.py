"""The decoded-frame cache (train.py --cache-frames): the same frames as decoding, invalidated by a changed
file, the same decode failures, and a run that trains from it ends bit-identical to one that decodes."""
import os
import shutil
from collections import namedtuple

import numpy as np
import pytest
import torch

import train
from conftest import interrupt_after_step, moving_square, one_line_error, train_args, write_video
from data.loader import VideoDataset, cache_frames
from data.splits import Video
from data.video import DecodeError, open_video

CFG = {"input": {"frames": 4, "sampling": "segment", "size": 16, "train_crop": "jitter", "jitter": [16, 20], "flip": True},
       "test": {"clips": 2, "crops": 3, "short_side": 16}}


@pytest.fixture
def folder(tmp_path):
    """Three tiny videos of other sizes and lengths (the 64 px one is read by decord, the others by PyAV)
    and a file that is no video."""
    write_video(tmp_path / "a.mp4", moving_square(0, 0, 0, frames=12, size=32))
    write_video(tmp_path / "b" / "b.mp4", np.random.default_rng(1).integers(0, 255, (9, 64, 64, 3), dtype=np.uint8))
    write_video(tmp_path / "c.webm", moving_square(2, 1, 2, frames=7, size=32)[:, :, :24])
    (tmp_path / "broken.mp4").write_bytes(b"garbage" * 50)
    videos = [Video(p, i % 3, i, 1) for i, p in enumerate(["a.mp4", "b/b.mp4", "broken.mp4", "c.webm"])]
    return tmp_path, videos


def test_cached_frames_are_the_decoded_frames_and_failures_stay_failures(folder, caplog):
    root, videos = folder
    cache = cache_frames(videos, root, "decord", root / "frames", workers=0)
    for i, v in enumerate(videos):
        if v.path == "broken.mp4":
            with pytest.raises(DecodeError, match="broken.mp4"):
                cache.reader(i)
            continue
        decoded, cached = open_video(root / v.path), cache.reader(i)
        assert len(cached) == len(decoded)
        for indices in (range(len(decoded)), [0, 3, 3, len(decoded) - 1]):
            assert np.array_equal(cached.get(indices), decoded.get(indices))
    # the loader's samples, training (the broken video replaced) and testing (reported), are the same
    for is_train in (True, False):
        plain = VideoDataset(videos, root, "coarse", CFG, train=is_train, seed=5)
        fast = VideoDataset(videos, root, "coarse", CFG, train=is_train, seed=5, frames=cache)
        for dataset in (plain, fast):
            dataset.set_epoch(3)
        for i in range(len(videos)):
            a, b = plain[i], fast[i]
            assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    assert "could not decode" in caplog.text


def test_the_cache_is_reused_and_a_changed_video_is_decoded_again(folder, monkeypatch):
    root, videos = folder
    first = cache_frames(videos, root, "decord", root / "frames", workers=0)
    with monkeypatch.context() as m:  # the same files: opened, nothing decoded
        m.setattr("data.loader.open_video", lambda *a: pytest.fail("decoded again"))
        assert cache_frames(videos, root, "decord", root / "frames", workers=0).folder == first.folder
    write_video(root / "a.mp4", moving_square(1, 0, 0, frames=10, size=32))
    second = cache_frames(videos, root, "decord", root / "frames", workers=0)
    assert second.folder != first.folder and len(second.reader(0)) == 10
    assert np.array_equal(second.reader(0).get(range(10)), open_video(root / "a.mp4").get(range(10)))
    assert sorted(p.name for p in (root / "frames").iterdir()) == sorted([first.folder.name, second.folder.name])


def test_a_cache_that_does_not_fit_on_the_disk_is_a_one_line_error(folder, monkeypatch):
    root, videos = folder
    monkeypatch.setattr(shutil, "disk_usage", lambda path: namedtuple("usage", "total used free")(10**6, 10**6 - 1000, 1000))
    with pytest.raises(SystemExit) as e:
        cache_frames(videos, root, "decord", root / "frames", workers=0, name="train_set1")
    assert "do not fit on the disk" in one_line_error(e, "train_set1", "--cache-frames")
    assert os.listdir(root / "frames") == []  # nothing half-written is left


def test_a_resumed_run_from_the_cache_ends_as_a_run_that_decodes(synta_tiny, tmp_path, monkeypatch):
    _, splits = synta_tiny
    monkeypatch.setattr(train, "FRAME_CACHE", tmp_path / "frames")
    args = lambda out: train_args(splits, tmp_path / out, "i3d_small", "--batch-size", "4")
    plain = train.main(args("plain"))
    with monkeypatch.context() as m, pytest.raises(SystemExit):
        interrupt_after_step(m, 3)
        train.main(args("cached") + ["--cache-frames"])
    resumed = train.main(["--resume", "--out", str(tmp_path / "cached"), "--workers", "0", "--cache-frames"])
    assert resumed["top1"] == plain["top1"] and resumed["mean_class"] == plain["mean_class"]
    a, b = (torch.load(tmp_path / d / "ckpt.pt", weights_only=True)["model"] for d in ("plain", "cached"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(list((tmp_path / "frames").iterdir())) == 3  # train_set1, val_set1, val_set2
