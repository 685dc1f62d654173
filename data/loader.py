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
"""
import logging
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
                 repeats: int = 1):
        self.videos, self.root = list(videos), Path(root)
        self.split_file = videos.path if isinstance(videos, Split) else None
        # label: "coarse" or "fine" (class ids), or "both" ((coarse, fine) pairs: labels [B, 2] in a batch)
        self.labels = [{"coarse": v.coarse_id, "fine": v.fine_id, "both": (v.coarse_id, v.fine_id)}[label] for v in self.videos]
        self.cfg_input, self.cfg_test = cfg["input"], cfg["test"]
        self.train, self.seed, self.backend, self.repeats = train, seed, backend, repeats
        self.flip = flip and self.cfg_input["flip"]
        self.epoch = 0

    def __len__(self):
        return len(self.videos)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load(self, index: int, rng) -> torch.Tensor:
        reader = open_video(self.root / self.videos[index].path, self.backend)
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
