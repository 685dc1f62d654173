"""Batches: a dataset of videos from a split CSV, the samplers, and the DataLoader around them.

Training samples one clip per video: [T, 3, S, S] uint8, or `repeats` clips of one sampled set of
frames, each augmented on its own (repeated augmentation: a batch of B videos holds B x repeats clips,
PySlowFast's AUG.NUM_SAMPLE). Testing samples a fixed grid of views,
clips x crops: [V, T, 3, S, S] uint8. Every random choice of a training sample comes from a
generator seeded by (seed, epoch, index), so a run is the same whatever the number of workers or
processes, and a resumed run repeats exactly what an uninterrupted one would have done.

Only a file that cannot be decoded (data.video.DecodeError) counts as a decode failure: replaced by
another video in training, reported in testing. Any other exception (a setting out of range, a bug)
propagates.

With a FrameCache (train.py --cache-frames), every frame of every video of a split is decoded once by
the same reader and read back from a memory-mapped file, so a clip costs an array read instead of a
decode, with the same frames.
"""
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from data.augment import crop_views, train_augment, view_size
from data.splits import read_split
from data.video import DecodeError, open_video, sample_indices, temporal_views

log = logging.getLogger(__name__)
TRIES = 10  # a training sample gives up after this many undecodable videos in a row


class Split(list):
    """The videos of one split CSV, which knows its file (named in error messages)."""

    def __init__(self, videos, path: Path):
        super().__init__(videos)
        self.path = Path(path)


class LoaderError(Exception):
    """A one-line "error: ..." from the dataset. A DataLoader worker re-raises it in the main process
    with the worker's traceback in front; only the error line is kept."""

    def __init__(self, message: str):
        line = message.strip().splitlines()[-1]
        super().__init__(line[line.find("error: "):])


class Loader(torch.utils.data.DataLoader):
    """A DataLoader that ends the run with the dataset's one-line error, whichever process raised it."""

    def __iter__(self):
        batches = super().__iter__()
        try:
            yield from batches
        except LoaderError as e:
            if hasattr(batches, "_shutdown_workers"):  # now: left to the garbage collector, it takes 5 s
                batches._shutdown_workers()
            raise SystemExit(str(e)) from None


def flip_allowed(dataset: str, task: str) -> bool:
    """Horizontal flips change labels where classes have a direction: SSv2-TA's left/right and
    camera-turn classes, Syn-TA's fine left/right and (counter-)clockwise classes."""
    return not (dataset == "ssv2ta" or (dataset == "synta" and task == "fine"))


class VideoDataset(torch.utils.data.Dataset):
    def __init__(self, videos, root, label: str, cfg: dict, train: bool, seed: int = 0, backend: str = "decord", flip=True,
                 repeats: int = 1, frames: "FrameCache" = None):
        self.videos, self.root = list(videos), Path(root)
        self.split_file = videos.path if isinstance(videos, Split) else None
        # label: "coarse" or "fine" (class ids), or "both" ((coarse, fine) pairs: labels [B, 2] in a batch)
        self.labels = [{"coarse": v.coarse_id, "fine": v.fine_id, "both": (v.coarse_id, v.fine_id)}[label] for v in self.videos]
        self.cfg_input, self.cfg_test = cfg["input"], cfg["test"]
        self.train, self.seed, self.backend, self.repeats = train, seed, backend, repeats
        self.flip = flip and self.cfg_input["flip"]
        self.frames = frames  # a FrameCache of these videos, or None: decode every clip
        self.epoch = 0

    def __len__(self):
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load(self, index: int, rng) -> torch.Tensor:
        reader = self.frames.reader(index) if self.frames else open_video(self.root / self.videos[index].path, self.backend)
        n = len(reader)
        if self.train:
            frames = torch.from_numpy(reader.get(sample_indices(n, self.cfg_input, rng))).permute(0, 3, 1, 2)
            clips = [train_augment(frames, self.cfg_input, rng, self.flip) for _ in range(self.repeats)]
            return clips if self.repeats > 1 else clips[0]
        views = []
        for position in temporal_views(self.cfg_test["clips"], self.cfg_input["sampling"]):
            frames = torch.from_numpy(reader.get(sample_indices(n, self.cfg_input, None, position))).permute(0, 3, 1, 2)
            views += crop_views(frames, view_size(self.cfg_input, self.cfg_test), self.cfg_test["short_side"], self.cfg_test["crops"])
        return torch.stack(views)

    def __getitem__(self, index: int):
        """-> (clip, label, index, number of videos that failed to decode on the way); a test video
        that fails comes back as zeros with index -1 - index."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        failures = []
        while len(failures) < TRIES:
            try:
                return self.load(index, rng), self.labels[index], index, len(failures)
            except DecodeError as e:
                failures.append(str(e))
                log.warning("could not decode %s", e)
                if not self.train:  # a test video is never replaced by another: it is reported as failed
                    return torch.zeros(self.view_shape(), dtype=torch.uint8), self.labels[index], -1 - index, 1
                index = int(rng.integers(len(self.videos)))
        where, check = f"the videos under {self.root}", "--splits DIR"
        if self.split_file:
            where, check = f"split {self.split_file.stem} ({self.split_file})", f"--splits {self.split_file.parent}"
        raise LoaderError(f"error: {where}: {TRIES} videos in a row failed to decode: {' | '.join(failures[:3])}"
                          f"{' | ...' if len(failures) > 3 else ''}; list and remove the broken files with "
                          f"`python -m data.check {check}`")

    def view_shape(self):
        s, t = view_size(self.cfg_input, self.cfg_test), self.cfg_input["frames"]
        return (self.cfg_test["clips"] * self.cfg_test["crops"], t, 3, s, s)


class TrainSampler(torch.utils.data.Sampler):
    """One permutation per (seed, epoch) cut into micro-batches of `world * micro_batch` indices;
    each process takes its share of every micro-batch. The tail that does not fill an optimizer
    step is dropped. `skip` micro-batches are left out at the start (resuming mid-epoch)."""

    def __init__(self, n: int, micro_batch: int, accum_steps: int, rank: int = 0, world: int = 1, seed: int = 0):
        self.n, self.micro_batch, self.accum, self.rank, self.world, self.seed = n, micro_batch, accum_steps, rank, world, seed
        self.epoch, self.skip = 0, 0

    def steps_per_epoch(self) -> int:
        return self.n // (self.micro_batch * self.world * self.accum)

    def set_epoch(self, epoch: int, skip_micro_batches: int = 0) -> None:
        self.epoch, self.skip = epoch, skip_micro_batches

    def __len__(self):
        return (self.steps_per_epoch() * self.accum - self.skip) * self.micro_batch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        chunk = self.micro_batch * self.world
        for m in range(self.skip, self.steps_per_epoch() * self.accum):
            start = m * chunk + self.rank * self.micro_batch
            yield from order[start : start + self.micro_batch]


# ---------------------------------------------------------------------------------------------
# the decoded-frame cache


class CachedVideo:
    """A video's frames from the cache, behind the reader interface of data.video (len, get)."""

    def __init__(self, frames: np.ndarray):
        self.frames = frames  # uint8 [F, H, W, 3], a view of the memory map

    def __len__(self):
        return len(self.frames)

    def get(self, indices) -> np.ndarray:
        return self.frames[np.asarray(indices, dtype=np.int64)]


class FrameCache:
    """The frames of a split's videos as cache_frames wrote them: `frames.u8`, every frame of every
    video one after the other (uint8, H x W x 3, as the reader returned them), memory-mapped read-only
    and shared by every run and loader process; `index.npy`, per video (byte offset, frames, height,
    width), frames 0 for a video that failed to decode, whose reason is in `failures.json`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.index = np.load(self.folder / "index.npy")
        self.failures = {int(k): v for k, v in json.loads((self.folder / "failures.json").read_text()).items()}
        size = (self.folder / "frames.u8").stat().st_size
        self.data = np.memmap(self.folder / "frames.u8", np.uint8, "r") if size else np.zeros(0, np.uint8)

    def __reduce__(self):  # a spawned loader process maps the file again instead of receiving a copy
        return FrameCache, (self.folder,)

    def __len__(self):
        return len(self.index)

    def reader(self, i: int) -> CachedVideo:
        offset, n, h, w = (int(x) for x in self.index[i])
        if n == 0:
            raise DecodeError(self.failures[i])
        return CachedVideo(self.data[offset : offset + n * h * w * 3].reshape(n, h, w, 3))


class _WholeVideos(torch.utils.data.Dataset):
    def __init__(self, paths, backend):
        self.paths, self.backend = paths, backend

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        """-> (index, all frames [F, H, W, 3] or the reason the video failed to decode)"""
        try:
            reader = open_video(self.paths[i], self.backend)
            return i, reader.get(range(len(reader)))
        except DecodeError as e:
            return i, str(e)


def cache_key(videos, root, backend: str) -> str:
    """Hash of the split's video list, the video root, the reader and each file's size and mtime, so a
    changed, replaced or moved video gives another key and is decoded again."""
    h = hashlib.sha256(json.dumps([str(Path(root).resolve()), backend]).encode())
    for v in videos:
        try:
            st = os.stat(Path(root) / v.path)
            h.update(json.dumps([v.path, st.st_size, st.st_mtime_ns]).encode())
        except OSError:  # a missing file: decoding records the failure
            h.update(json.dumps([v.path, None]).encode())
    return h.hexdigest()[:24]


def cache_frames(videos, root, backend: str, cache_dir, workers: int = 0, name: str = "") -> FrameCache:
    """The FrameCache of `videos` under cache_dir/<cache_key>: opened if there, else every video decoded once
    by data.video.open_video (all frames, source resolution; in `workers` loader processes, 0: in this one)
    and written to a temporary folder renamed into place, so a half-written cache is never read and
    concurrent runs each write a whole one (the first rename wins). Too little disk space is a one-line error."""
    folder = Path(cache_dir) / cache_key(videos, root, backend)
    if (folder / "index.npy").is_file():
        return FrameCache(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    print(f"decoding the {len(videos)} videos of {name or 'a split'} once into {folder}", file=sys.stderr, flush=True)
    index, failures, offset = np.zeros((len(videos), 4), np.int64), {}, 0
    paths = [Path(root) / v.path for v in videos]
    decoded = torch.utils.data.DataLoader(_WholeVideos(paths, backend), batch_size=None, num_workers=workers,
                                          worker_init_fn=_worker_init)  # frames come back as tensors, in shared memory
    try:
        with open(tmp / "frames.u8", "wb") as f:
            for i, frames in decoded:
                if isinstance(frames, str):
                    failures[i] = frames
                    log.warning("could not decode %s", frames)
                    continue
                if offset == 0:  # the first video sizes the whole split
                    need, free = frames.nbytes * len(videos), shutil.disk_usage(tmp).free
                    if need > free:
                        raise OSError(errno.ENOSPC, f"about {need / 2**30:.1f} GiB needed, {free / 2**30:.1f} GiB free")
                f.write(frames.numpy().data)
                index[i] = (offset, *frames.shape[:3])
                offset += frames.nbytes
        np.save(tmp / "index.npy", index)
        (tmp / "failures.json").write_text(json.dumps(failures))
        try:
            os.rename(tmp, folder)
        except OSError:  # another run renamed its copy first
            if not (folder / "index.npy").is_file():
                raise
    except OSError as e:
        if e.errno != errno.ENOSPC:
            raise
        raise SystemExit(f"error: the decoded frames of {name or 'a split'} ({len(videos)} videos) do not fit on the disk "
                         f"of {cache_dir} ({e.strerror}); free space there or train without --cache-frames") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return FrameCache(folder)


def _worker_init(_):
    torch.set_num_threads(1)


def collate(batch):
    """A training sample with repeated augmentation (a list of clips of one video) gives each clip its label and index."""
    rows = [(c, label, index) for clip, label, index, _ in batch for c in (clip if isinstance(clip, list) else [clip])]
    clips, labels, indices = zip(*rows)
    return torch.stack(clips), torch.tensor(labels), torch.tensor(indices), sum(failures for *_, failures in batch)


def make_loader(dataset, batch_size: int, sampler, workers: int, pin_memory: bool):
    return Loader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init,
        generator=torch.Generator().manual_seed(0),  # keeps the global RNG untouched by loader start-up
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )


def load_videos(splits_dir: Path, split: str, dataset: str) -> Split:
    path = Path(splits_dir) / f"{split}.csv"
    return Split(read_split(path, dataset), path)
