"""Split CSVs: one schema for every dataset.

A prepared dataset is a folder with four CSVs and a small YAML file:

    train_set1.csv  val_set1.csv  train_set2.csv  val_set2.csv  dataset.yaml

Each CSV has the header `path,coarse_id,fine_id,set`; `path` is relative to the video root,
`fine_id` is the set-local id of the hierarchy. dataset.yaml records the dataset name, the video
root, how the lists were made and how many listed videos were missing on disk.
"""
import csv
from dataclasses import dataclass
from pathlib import Path

import yaml

from data.hierarchy import load_hierarchy

COLUMNS = ["path", "coarse_id", "fine_id", "set"]
SPLITS = ("train_set1", "val_set1", "train_set2", "val_set2")


@dataclass(frozen=True)
class Video:
    path: str
    coarse_id: int
    fine_id: int
    set: int


def split_name(split: str, set_id: int) -> str:
    return f"{split}_set{set_id}"


def write_split(path: Path, videos: list) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for v in videos:
            w.writerow([v.path, v.coarse_id, v.fine_id, v.set])
    tmp.replace(path)


def read_split(path: Path, dataset: str = None) -> list:
    """Read and validate a split CSV; a bad row is a one-line error with its line number."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"error: split file {path} not found; write it with `python -m data.prepare` (see README)")
    hierarchy = load_hierarchy(dataset) if dataset else None
    videos = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != COLUMNS:
            raise SystemExit(f"error: {path}:1: header must be {','.join(COLUMNS)}, found {','.join(header or [])}")
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                if len(row) != len(COLUMNS):
                    raise ValueError(f"expected {len(COLUMNS)} fields, found {len(row)}")
                video = Video(row[0], int(row[1]), int(row[2]), int(row[3]))
                if not video.path:
                    raise ValueError("empty path")
                if hierarchy:
                    check_labels(hierarchy, video)
            except ValueError as e:
                raise SystemExit(f"error: {path}:{line_no}: malformed row {','.join(row)!r}: {e}")
            videos.append(video)
    return videos


def check_labels(hierarchy, video: Video) -> None:
    if video.set not in (1, 2):
        raise ValueError(f"set must be 1 or 2, found {video.set}")
    fine = hierarchy.fine_classes(video.set)
    if not 0 <= video.fine_id < len(fine):
        raise ValueError(f"fine_id {video.fine_id} outside 0..{len(fine) - 1} of set {video.set}")
    if fine[video.fine_id].coarse_id != video.coarse_id:
        raise ValueError(
            f"coarse_id {video.coarse_id} is not the parent of fine class {video.fine_id} "
            f"('{fine[video.fine_id].name}', coarse {fine[video.fine_id].coarse_id})"
        )


def write_dataset(out_dir: Path, dataset: str, video_root: Path, lists: dict, info: dict) -> None:
    """Write the four split CSVs and dataset.yaml."""
    out_dir = Path(out_dir)
    for name in SPLITS:
        write_split(out_dir / f"{name}.csv", lists.get(name, []))
    meta = {"dataset": dataset, "video_root": str(Path(video_root).resolve()), **info}
    meta["videos"] = {name: len(lists.get(name, [])) for name in SPLITS}
    with open(out_dir / "dataset.yaml", "w") as f:
        yaml.safe_dump(meta, f, sort_keys=False)


def read_dataset_info(splits_dir: Path) -> dict:
    path = Path(splits_dir) / "dataset.yaml"
    if not path.is_file():
        raise SystemExit(
            f"error: {splits_dir} holds no prepared dataset (no dataset.yaml); "
            "prepare it with `python -m data.prepare` (see README) or pass --splits"
        )
    with open(path) as f:
        return yaml.safe_load(f)
