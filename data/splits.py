"""Split CSVs: one schema for every dataset.

A prepared dataset is a folder with four CSVs and a small YAML file:

    train_set1.csv  val_set1.csv  train_set2.csv  val_set2.csv  dataset.yaml

Each CSV has the header `path,coarse_id,fine_id,set`; `path` is relative to the video root,
`fine_id` is the set-local id of the hierarchy. dataset.yaml records the dataset name, the video
root, how the lists were made and how many listed videos were missing on disk.

Reading is strict, because a bad list gives a wrong accuracy rather than a crash: every row must
name a known class of its file's set, every video is listed once in the whole folder (a video in
two splits would leak a test video into training), and no split is empty. Accepted as written by
other tools: a UTF-8 BOM, CRLF line endings, blank lines, spaces around cells, columns in any order.
"""
import csv
import io
import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from data.hierarchy import DATASETS, load_hierarchy

COLUMNS = ["path", "coarse_id", "fine_id", "set"]
SPLITS = ("train_set1", "val_set1", "train_set2", "val_set2")
SPLIT_FILE = re.compile(r"^(train|val)_set(?P<set>[12])\.csv$")
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f]")


@dataclass(frozen=True)
class Video:
    path: str
    coarse_id: int
    fine_id: int
    set: int


def split_name(split: str, set_id: int) -> str:
    return f"{split}_set{set_id}"


def read_text(path: Path) -> str:
    """A text file as UTF-8 (a leading BOM dropped); anything else is a one-line error that says where."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SystemExit(f"error: cannot read {path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SystemExit(f"error: {path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as UTF-8") from None


def check_path(path: str) -> str:
    """A video path as the lists hold it, normalised ('a/./b' -> 'a/b'); ValueError unless it is a
    '/'-separated path inside the video root (relative, without '..'), so that --root moves every video."""
    if not path:
        raise ValueError("empty path")
    if CONTROL_CHARACTER.search(path):
        raise ValueError(f"path {path!r} contains a control character")
    if "\\" in path:
        raise ValueError(f"path {path!r} contains '\\'; separate folders with '/'")
    if path.startswith("/") or re.match(r"^[A-Za-z]:/", path):
        raise ValueError(f"path {path!r} is absolute; paths are relative to the video root")
    if ".." in path.split("/"):
        raise ValueError(f"path {path!r} leaves the video root ('..')")
    return posixpath.normpath(path)


def split_text(videos: list) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")  # quotes a path with a comma
    w.writerow(COLUMNS)
    w.writerows([v.path, v.coarse_id, v.fine_id, v.set] for v in videos)
    return out.getvalue()


def write_files(out_dir: Path, files: dict) -> None:
    """{name: text} into out_dir, in order, each file replaced at once (never half-written)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        tmp = out_dir / f"{name}.tmp"
        tmp.write_bytes(text.encode("utf-8"))
        tmp.replace(out_dir / name)


def write_split(path: Path, videos: list) -> None:
    write_files(Path(path).parent, {Path(path).name: split_text(videos)})


def read_split(path: Path, dataset: str = None) -> list:
    """Read and validate a split CSV; a bad row is a one-line error with its line number."""
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"error: split file {path} not found; write it with `python -m data.prepare` (see README)")
    text = read_text(path)
    if not text.strip():
        raise SystemExit(f"error: {path} is empty (not even a header); prepare the dataset again with `python -m data.prepare`")
    parent = label_checker(dataset) if dataset else None
    file_set = SPLIT_FILE.match(path.name)
    file_set = int(file_set["set"]) if file_set else None
    videos, first_line = [], {}
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next((row for row in reader if any(c.strip() for c in row)), [])]
        if sorted(header) != sorted(COLUMNS):
            raise SystemExit(f"error: {path}:{reader.line_num}: header must name the columns {','.join(COLUMNS)} (any order), found {','.join(header)!r}")
        column = [header.index(c) for c in COLUMNS]
        for row in reader:
            line_no = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            try:
                if len(row) != len(COLUMNS):
                    raise ValueError(f"expected {len(COLUMNS)} fields, found {len(row)}")
                cells = [row[i].strip() for i in column]
                video = Video(check_path(cells[0]), *(integer(name, cell) for name, cell in zip(COLUMNS[1:], cells[1:])))
                if file_set and video.set != file_set:
                    raise ValueError(f"a set-{video.set} video in {path.name}, which holds set {file_set} only")
                if parent:
                    parent(video.set, video.fine_id, video.coarse_id)
            except ValueError as e:
                raise SystemExit(f"error: {path}:{line_no}: malformed row {','.join(row)!r}: {e}")
            if video.path in first_line:
                raise SystemExit(f"error: {path}:{line_no}: video {video.path!r} is listed again (first at line "
                                 f"{first_line[video.path]}); list every video once")
            first_line[video.path] = line_no
            videos.append(video)
    except csv.Error as e:
        raise SystemExit(f"error: {path}:{reader.line_num}: not a readable CSV ({e})") from None
    if not videos:
        raise SystemExit(f"error: {path} lists no videos (a header only); every split needs videos: prepare the dataset again "
                         "with `python -m data.prepare`")
    return videos


def integer(name: str, cell: str) -> int:
    try:
        return int(cell)
    except ValueError:
        raise ValueError(f"{name} {cell!r} is not an integer") from None


def label_checker(dataset: str):
    """-> check(set, fine_id, coarse_id) raising ValueError unless the fine class exists in that set
    and the coarse id is its parent."""
    hierarchy = load_hierarchy(dataset)
    fine = {s: hierarchy.fine_classes(s) for s in (1, 2)}

    def check(set_id: int, fine_id: int, coarse_id: int) -> None:
        if set_id not in fine:
            raise ValueError(f"set must be 1 or 2, found {set_id}")
        if not 0 <= fine_id < len(fine[set_id]):
            raise ValueError(f"fine_id {fine_id} outside 0..{len(fine[set_id]) - 1} of set {set_id}")
        cls = fine[set_id][fine_id]
        if cls.coarse_id != coarse_id:
            raise ValueError(f"coarse_id {coarse_id} is not the parent of fine class {fine_id} ('{cls.name}', coarse {cls.coarse_id})")

    return check


def dataset_files(dataset: str, video_root: Path, lists: dict, info: dict) -> dict:
    """{file name: text} of a prepared folder: the four split CSVs, then dataset.yaml (written last:
    a folder without it is unfinished)."""
    files = {f"{name}.csv": split_text(lists.get(name, [])) for name in SPLITS}
    # absolute but not resolved: a root reached through a symlink stays valid when the link is moved
    meta = {"dataset": dataset, "video_root": os.path.abspath(video_root), **info}
    meta["videos"] = {name: len(lists.get(name, [])) for name in SPLITS}
    files["dataset.yaml"] = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return files


def write_dataset(out_dir: Path, dataset: str, video_root: Path, lists: dict, info: dict) -> None:
    """Write the four split CSVs and dataset.yaml."""
    write_files(out_dir, dataset_files(dataset, video_root, lists, info))


def read_dataset(splits_dir: Path) -> tuple:
    """-> (dataset.yaml as a dict, {split: [Video]}) of a prepared folder, everything checked: the
    YAML names a dataset and a video root, each of the four files passes read_split, and no video is
    in two splits (train and val of one set would leak test videos into training; the two sets'
    fine classes are disjoint, so a video in both sets has two labels)."""
    splits_dir = Path(splits_dir)
    path = splits_dir / "dataset.yaml"
    if not path.is_file():
        raise SystemExit(
            f"error: {splits_dir} holds no prepared dataset (no dataset.yaml); "
            "prepare it with `python -m data.prepare` (see README) or pass --splits"
        )
    try:
        info = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        where = f":{e.problem_mark.line + 1}" if getattr(e, "problem_mark", None) else ""
        raise SystemExit(f"error: {path}{where}: not valid YAML ({getattr(e, 'problem', None) or ' '.join(str(e).split())}); "
                         "prepare the folder again with `python -m data.prepare`") from None
    if not isinstance(info, dict) or not isinstance(info.get("dataset"), str) or not isinstance(info.get("video_root"), str):
        raise SystemExit(f"error: {path} must be a mapping with the keys dataset and video_root, as `python -m data.prepare` writes it")
    if info["dataset"] not in DATASETS:
        raise SystemExit(f"error: {path} names the dataset {info['dataset']!r}, not one of {', '.join(DATASETS)}")
    lists, seen = {}, {}
    for name in SPLITS:
        lists[name] = read_split(splits_dir / f"{name}.csv", info["dataset"])
        for v in lists[name]:
            if v.path in seen:
                raise SystemExit(f"error: {splits_dir}: video {v.path!r} is in both {seen[v.path]}.csv and {name}.csv; "
                                 "a video belongs to one split only (a test video seen in training is a leak)")
            seen[v.path] = name
    return info, lists


def read_dataset_info(splits_dir: Path) -> dict:
    """dataset.yaml of a prepared folder. The four split files are read and checked as well
    (read_dataset), so that a bad file stops a run before it starts rather than after training."""
    return read_dataset(splits_dir)[0]
