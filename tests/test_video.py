import numpy as np
import pytest
import torch

from conftest import moving_square, write_video
from data.augment import crop_views, train_augment
from data.loader import TrainSampler, VideoDataset, flip_allowed
from data.splits import Video
from data.video import dense_indices, open_video, segment_indices, temporal_views

CFG = {
    "input": {"frames": 4, "sampling": "segment", "stride": 2, "size": 16, "train_crop": "jitter", "jitter": [16, 24],
              "rrc_scale": [0.3, 1.0], "flip": True},
    "test": {"clips": 2, "crops": 3, "short_side": 16},
}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "clip.mp4"
    frames = np.zeros((20, 64, 96, 3), np.uint8)
    for t in range(20):
        frames[t, :, :, 0] = 10 * t  # frame index readable from the red channel
    write_video(path, frames)
    return path


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_readers_return_the_requested_frames(video, backend):
    reader = open_video(video, backend)
    assert len(reader) == 20
    frames = reader.get([0, 5, 19, 5])
    assert frames.shape == (4, 64, 96, 3) and frames.dtype == np.uint8
    assert np.abs(frames[..., 0].mean((1, 2)) - [0, 50, 190, 50]).max() < 4


def test_backends_agree(video, tmp_path):
    a = open_video(video, "decord").get([1, 7, 13])
    b = open_video(video, "pyav").get([1, 7, 13])
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
    narrow = tmp_path / "narrow.mp4"  # decord cannot copy frames narrower than 64 px: PyAV takes over
    write_video(narrow, np.full((6, 32, 48, 3), 200, np.uint8))
    assert open_video(narrow, "decord").get([0, 5]).shape == (2, 32, 48, 3)


def test_corrupt_file_raises_in_both_backends(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(Exception):
        open_video(bad, "decord").get([0])


def test_segment_sampling():
    assert segment_indices(80, 8).tolist() == [5, 15, 25, 35, 45, 55, 65, 75]  # centre of each segment
    assert segment_indices(80, 8, view=0.0).tolist() == list(range(0, 80, 10))
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = segment_indices(80, 8, rng)
        assert ((idx >= np.arange(8) * 10) & (idx < np.arange(1, 9) * 10)).all()
    assert segment_indices(3, 8).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]  # short videos repeat frames


def test_dense_sampling():
    assert dense_indices(100, 8, 4, view=0.0).tolist() == list(range(0, 32, 4))
    assert dense_indices(100, 8, 4, view=1.0).tolist() == list(range(71, 100, 4))
    assert dense_indices(10, 4, 4).tolist() == [0, 4, 8, 9]  # past the end: the last frame repeats
    rng = np.random.default_rng(0)
    starts = {dense_indices(100, 8, 4, rng)[0] for _ in range(50)}
    assert len(starts) > 10 and max(starts) <= 71


def test_temporal_views_are_fixed_positions():
    assert temporal_views(1, "segment") == [0.5]
    assert temporal_views(4, "segment") == [0.125, 0.375, 0.625, 0.875]
    assert temporal_views(3, "dense") == [0.0, 0.5, 1.0]


def test_train_augment_shapes_and_flip():
    clip = torch.arange(48).view(1, 1, 1, 48).expand(4, 3, 32, 48).to(torch.uint8).contiguous()
    rng = np.random.default_rng(0)
    for crop in ("jitter", "rrc"):
        out = train_augment(clip, {**CFG["input"], "train_crop": crop}, rng, flip=False)
        assert out.shape == (4, 3, 16, 16) and out.dtype == torch.uint8
        assert (out[0, 0, 0, 1:].int() >= out[0, 0, 0, :-1].int()).all()  # no flip: left-to-right ramp kept
    flipped = [train_augment(clip, CFG["input"], np.random.default_rng(i), flip=True) for i in range(20)]
    assert any((f[0, 0, 0, 0] > f[0, 0, 0, -1]).item() for f in flipped)


def test_three_crops_along_the_long_side():
    clip = torch.arange(48).view(1, 1, 1, 48).expand(2, 3, 32, 48).to(torch.uint8).contiguous()
    crops = crop_views(clip, 16, 16, 3)  # short side 32 -> 16, long side 48 -> 24
    assert [c.shape for c in crops] == [(2, 3, 16, 16)] * 3
    left, centre, right = (c[0, 0, 0].float().mean().item() for c in crops)
    assert left < centre < right
    with pytest.raises(SystemExit, match="test.crops must be 1 or 3"):
        crop_views(clip, 16, 16, 2)


def test_flip_rules():
    assert flip_allowed("k400ta", "coarse") and flip_allowed("synta", "coarse")
    assert not flip_allowed("ssv2ta", "coarse") and not flip_allowed("synta", "fine")


def test_failed_videos_are_replaced_in_training_and_reported_in_testing(tmp_path, caplog):
    write_video(tmp_path / "good.mp4", moving_square(0, 0, 0, frames=8))
    (tmp_path / "broken.mp4").write_bytes(b"garbage" * 50)
    videos = [Video("broken.mp4", 1, 2, 1), Video("good.mp4", 0, 0, 1)]
    train = VideoDataset(videos, tmp_path, "coarse", CFG, train=True)
    clip, label, index, failures = train[0]
    assert failures >= 1 and index == 1 and label == 0 and clip.shape == (4, 3, 16, 16)
    assert "could not decode" in caplog.text
    test = VideoDataset(videos, tmp_path, "coarse", CFG, train=False)
    clip, label, index, failures = test[0]
    assert failures == 1 and index == -1 and clip.shape == (6, 4, 3, 16, 16)
    clip, label, index, failures = test[1]
    assert failures == 0 and index == 1 and clip.shape == (6, 4, 3, 16, 16)


def test_train_samples_depend_only_on_seed_epoch_and_index(tmp_path):
    write_video(tmp_path / "a.mp4", np.random.default_rng(0).integers(0, 255, (24, 64, 64, 3), dtype=np.uint8))
    make = lambda: VideoDataset([Video("a.mp4", 0, 0, 1)], tmp_path, "coarse", CFG, train=True, seed=3)
    a, b = make(), make()
    a.set_epoch(2)
    b.set_epoch(2)
    assert torch.equal(a[0][0], b[0][0])  # a fresh dataset (another worker, a resumed run) draws the same clip
    b.set_epoch(3)
    assert not torch.equal(a[0][0], b[0][0])


def test_sampler_shards_cover_each_optimizer_step_once():
    single = list(TrainSampler(23, micro_batch=4, accum_steps=1, seed=1))
    shards = [list(TrainSampler(23, micro_batch=2, accum_steps=1, rank=r, world=2, seed=1)) for r in (0, 1)]
    assert len(single) == 20  # 5 full steps of 4, the tail of 3 dropped
    for step in range(5):
        assert sorted(single[4 * step : 4 * step + 4]) == sorted(shards[0][2 * step : 2 * step + 2] + shards[1][2 * step : 2 * step + 2])
    resumed = TrainSampler(23, micro_batch=4, accum_steps=1, seed=1)
    resumed.set_epoch(0, skip_micro_batches=2)
    assert list(resumed) == single[8:] and len(resumed) == 12


def test_reencode_shrinks_checks_and_rewrites_the_splits(tmp_path):
    from data.reencode import main as reencode
    from data.splits import read_dataset_info, read_split, write_dataset

    src = tmp_path / "src"
    for i in range(5):
        write_video(src / f"clips/v{i}.webm", np.random.default_rng(i).integers(0, 255, (12, 64, 96, 3), dtype=np.uint8))
    (src / "clips" / "broken.webm").write_bytes(b"garbage" * 100)
    videos = [Video(f"clips/v{i}.webm", 0, 0, 1) for i in range(2)] + [Video("clips/broken.webm", 0, 0, 1)]
    others = {"val_set1": [Video("clips/v2.webm", 0, 0, 1)], "train_set2": [Video("clips/v3.webm", 0, 0, 2)],
              "val_set2": [Video("clips/v4.webm", 0, 0, 2)]}  # a prepared folder has videos in every split
    write_dataset(tmp_path / "splits", "synta", src, {"train_set1": videos, **others}, {})
    args = ["--splits", str(tmp_path / "splits"), "--dst", str(tmp_path / "dst"), "--out", str(tmp_path / "new"),
            "--short-side", "32", "--workers", "1"]
    reencode(args)
    new = read_split(tmp_path / "new" / "train_set1.csv", "synta")
    assert [v.path for v in new] == ["clips/v0.mp4", "clips/v1.mp4"]
    assert "clips/broken.webm" in (tmp_path / "new" / "broken.txt").read_text()
    assert read_dataset_info(tmp_path / "new")["broken"] == 1
    reader = open_video(tmp_path / "dst" / "clips" / "v0.mp4", "pyav")
    assert len(reader) == 12 and reader.get([0]).shape == (1, 32, 48, 3)
    mtime = (tmp_path / "dst" / "clips" / "v0.mp4").stat().st_mtime_ns
    reencode(args)  # a second run skips what is done
    assert (tmp_path / "dst" / "clips" / "v0.mp4").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_webm_videos_like_ssv2(tmp_path, backend):
    frames = np.zeros((10, 64, 96, 3), np.uint8)
    frames[:, :, :, 1] = (np.arange(10) * 20)[:, None, None]
    write_video(tmp_path / "1234.webm", frames, fps=12)
    reader = open_video(tmp_path / "1234.webm", backend)
    assert len(reader) == 10
    assert np.abs(reader.get([2, 9])[..., 1].mean((1, 2)) - [40, 180]).max() < 6
