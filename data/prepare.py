"""Write the split CSVs of a dataset (see data/splits.py for the schema).

Three routes:

  official lists (recommended: the study's exact videos)
      python -m data.prepare k400ta --videos /data/k400 --lists Motion-Transfer/dataset_splits/k400_ta
  source annotations (fallback when the lists are not at hand)
      python -m data.prepare k400ta --videos /data/k400 --annotations /data/k400/annotations
      python -m data.prepare ssv2ta --videos /data/ssv2/videos --annotations /data/ssv2/labels
  Syn-TA from its video folder (official layout <coarse>/<coarse><k>[_front]_id_<i>.mp4)
      python -m data.prepare synta --videos /data/synta

Videos listed but absent on disk are left out of the CSVs, counted, and listed in missing.txt.
"""
import argparse
import csv
import json
import re
import sys
from collections import Counter
from pathlib import Path

from data.hierarchy import DATASETS, load_hierarchy
from data.splits import Video, write_dataset

SYNTA_NAME = re.compile(r"^(?P<folder>[a-z_]+)/(?P<base>[a-z_]+\d+)(?P<front>_front)?_id_(?P<id>\d+)\.mp4$")
SYNTA_TRAIN_IDS, SYNTA_VAL_IDS = range(1, 31), range(31, 51)
K400_ALIASES = {"dyeing hair": "dying hair"}  # the benchmark keeps Kinetics-400's original spelling


def fail(message: str):
    raise SystemExit(f"error: {message}")


def empty_lists() -> dict:
    return {f"{split}_set{s}": [] for s in (1, 2) for split in ("train", "val")}


# ---------------------------------------------------------------------------------------------
# route 1: the benchmark's own split lists (Motion-Transfer: dataset_splits/<ds>/)


def read_list(path: Path) -> list:
    """`<path> <label>` rows of an official list -> [(path, label, line number)]."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").rsplit(" ", 1)
            if len(parts) != 2 or not parts[1].strip().lstrip("-").isdigit():
                fail(f"{path}:{line_no}: expected '<path> <label>', found {line.strip()!r}")
            rows.append((parts[0].strip(), int(parts[1]), line_no))
    return rows


def from_official_lists(dataset: str, lists_dir: Path) -> dict:
    hierarchy = load_hierarchy(dataset)
    lists = empty_lists()
    for s in (1, 2):
        fine = hierarchy.fine_classes(s)
        for split in ("train", "val"):
            coarse_file = lists_dir / "coarse_classes" / f"{split}_set{s}_coarse.txt"
            fine_file = lists_dir / "fine_classes" / f"{split}_set{s}_fine.txt"
            for p in (coarse_file, fine_file):
                if not p.is_file():
                    fail(f"{p} not found; --lists must be the folder dataset_splits/<dataset> of the Motion-Transfer repository")
            coarse_rows, fine_rows = read_list(coarse_file), read_list(fine_file)
            if len(coarse_rows) != len(fine_rows):
                fail(f"{coarse_file} has {len(coarse_rows)} rows but {fine_file} has {len(fine_rows)}; they must list the same videos")
            for (path, coarse_id, line_no), (fine_path, fine_id, _) in zip(coarse_rows, fine_rows):
                where = f"{fine_file}:{line_no}"
                if path != fine_path:
                    fail(f"{where}: video {fine_path!r} differs from {path!r} at the same row of {coarse_file.name}")
                if not 0 <= fine_id < len(fine):
                    fail(f"{where}: fine label {fine_id} outside 0..{len(fine) - 1} of set {s}")
                if fine[fine_id].coarse_id != coarse_id:
                    fail(f"{where}: fine class {fine_id} ('{fine[fine_id].name}') is not a child of coarse class {coarse_id}")
                lists[f"{split}_set{s}"].append(Video(path, coarse_id, fine_id, s))
    return lists


# ---------------------------------------------------------------------------------------------
# route 2: the source datasets' own annotations


def by_source_name(dataset: str) -> dict:
    return {c.source: c for c in load_hierarchy(dataset).fine}


def check_all_classes_seen(dataset: str, seen: set, where: str) -> None:
    unseen = [c.source for c in load_hierarchy(dataset).fine if c.source not in seen]
    if unseen:
        fail(f"{len(unseen)} classes of {dataset} never appear in {where} (e.g. {unseen[0]!r}); is this the right annotation folder?")


def from_kinetics_annotations(ann_dir: Path) -> tuple:
    """Kinetics-400 CSVs `label,youtube_id,time_start,time_end,split`; clips `<split>/<id>_<s:06d>_<e:06d>.mp4`."""
    classes = by_source_name("k400ta")
    lists, skipped, seen = empty_lists(), Counter(), set()
    files = [p for name in ("train.csv", "validate.csv", "val.csv") if (p := ann_dir / name).is_file()]
    if not files:
        fail(f"no Kinetics-400 annotation CSV (train.csv, validate.csv or val.csv) in {ann_dir}")
    for path in files:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing_cols = {"label", "youtube_id", "time_start", "time_end", "split"} - set(reader.fieldnames or [])
            if missing_cols:
                fail(f"{path}:1: missing columns {sorted(missing_cols)}; expected label,youtube_id,time_start,time_end,split")
            for line_no, row in enumerate(reader, start=2):
                label = K400_ALIASES.get(row["label"], row["label"])
                cls = classes.get(label)
                if cls is None:
                    skipped[label] += 1
                    continue
                seen.add(label)
                split = {"train": "train", "val": "val", "validate": "val"}.get(row["split"])
                if split is None:
                    fail(f"{path}:{line_no}: unknown split {row['split']!r} (expected train or val)")
                try:
                    start, end = int(float(row["time_start"])), int(float(row["time_end"]))
                except ValueError:
                    fail(f"{path}:{line_no}: time_start/time_end must be numbers, found {row['time_start']!r}, {row['time_end']!r}")
                clip = f"{split}/{row['youtube_id']}_{start:06d}_{end:06d}.mp4"
                lists[f"{split}_set{cls.set}"].append(Video(clip, cls.coarse_id, cls.fine_id, cls.set))
    check_all_classes_seen("k400ta", seen, ", ".join(str(p) for p in files))
    return lists, {"source_classes_not_in_benchmark": len(skipped)}


def from_ssv2_annotations(ann_dir: Path) -> tuple:
    """SSv2 labels.json / train.json / validation.json; videos `<id>.webm`."""
    classes = by_source_name("ssv2ta")
    for name in ("labels.json", "train.json", "validation.json"):
        if not (ann_dir / name).is_file():
            fail(f"{ann_dir / name} not found; --annotations must hold SSv2's labels.json, train.json and validation.json")
    with open(ann_dir / "labels.json", encoding="utf-8") as f:
        known = set(json.load(f))
    lists, skipped, seen = empty_lists(), Counter(), set()
    for name, split in (("train.json", "train"), ("validation.json", "val")):
        with open(ann_dir / name, encoding="utf-8") as f:
            entries = json.load(f)
        for i, entry in enumerate(entries):
            template = entry.get("template", "")
            label = template.replace("[", "").replace("]", "")
            if label not in known:
                fail(f"{ann_dir / name}: entry {i} (id {entry.get('id')}): template {template!r} is not a class of labels.json")
            cls = classes.get(label)
            if cls is None:
                skipped[label] += 1
                continue
            seen.add(label)
            lists[f"{split}_set{cls.set}"].append(Video(f"{entry['id']}.webm", cls.coarse_id, cls.fine_id, cls.set))
    check_all_classes_seen("ssv2ta", seen, str(ann_dir))
    return lists, {"source_classes_not_in_benchmark": len(skipped)}


# ---------------------------------------------------------------------------------------------
# route 3: a Syn-TA folder in the official layout


def from_synta_folder(video_root: Path) -> dict:
    classes = by_source_name("synta")
    found = []
    for path in sorted(video_root.rglob("*.mp4")):
        rel = path.relative_to(video_root).as_posix()
        m = SYNTA_NAME.match(rel)
        if not m or m["folder"] != m["base"].rstrip("0123456789"):
            fail(f"{rel}: not a Syn-TA video name (expected <coarse>/<coarse><k>[_front]_id_<i>.mp4)")
        stem = f"{m['folder']}/{m['base']}"
        if stem not in classes:
            fail(f"{rel}: unknown Syn-TA class {stem!r}")
        video_id = int(m["id"])
        if video_id not in SYNTA_TRAIN_IDS and video_id not in SYNTA_VAL_IDS:
            fail(f"{rel}: video id {video_id} outside 1-50 (1-30 train, 31-50 val)")
        found.append((classes[stem], video_id, bool(m["front"]), rel))
    if not found:
        fail(f"no Syn-TA videos (<coarse>/<coarse><k>[_front]_id_<i>.mp4) under {video_root}")
    lists = empty_lists()
    # the official lists' order: fine id, video id, regular view before front view
    for cls, video_id, front, rel in sorted(found, key=lambda x: (x[0].set, x[0].fine_id, x[1], x[2])):
        split = "train" if video_id in SYNTA_TRAIN_IDS else "val"
        lists[f"{split}_set{cls.set}"].append(Video(rel, cls.coarse_id, cls.fine_id, cls.set))
    return lists


# ---------------------------------------------------------------------------------------------


def drop_missing(lists: dict, video_root: Path) -> dict:
    missing = {}
    for name, videos in lists.items():
        present = [v for v in videos if (video_root / v.path).is_file()]
        missing[name] = [v.path for v in videos if not (video_root / v.path).is_file()]
        lists[name] = present
    return missing


def prepare(dataset: str, videos: Path, out: Path, lists_dir: Path = None, annotations: Path = None) -> dict:
    videos = Path(videos)
    if not videos.is_dir():
        fail(f"video root {videos} is not a folder")
    info = {}
    if lists_dir:
        lists, info["route"] = from_official_lists(dataset, Path(lists_dir)), f"official lists {Path(lists_dir).resolve()}"
    elif annotations:
        ann = Path(annotations)
        if not ann.is_dir():
            fail(f"annotation folder {ann} not found")
        if dataset == "k400ta":
            lists, extra = from_kinetics_annotations(ann)
        elif dataset == "ssv2ta":
            lists, extra = from_ssv2_annotations(ann)
        else:
            fail("Syn-TA has no annotation files: use --videos alone (folder layout) or --lists")
        info.update(route=f"annotations {ann.resolve()}", **extra)
    elif dataset == "synta":
        lists, info["route"] = from_synta_folder(videos), "Syn-TA folder layout"
    else:
        fail(f"{dataset} needs --lists (the benchmark's split lists) or --annotations (the source dataset's annotations)")
    missing = drop_missing(lists, videos)
    n_missing = sum(len(v) for v in missing.values())
    info["missing"] = {k: len(v) for k, v in missing.items()}
    out = Path(out)
    write_dataset(out, dataset, videos, lists, info)
    with open(out / "missing.txt", "w") as f:
        for name, paths in missing.items():
            f.writelines(f"{name} {p}\n" for p in paths)
    total = sum(len(v) for v in lists.values())
    print(f"{dataset}: wrote {total} videos to {out} ({', '.join(f'{k} {len(v)}' for k, v in lists.items())})")
    if n_missing:
        print(f"{dataset}: {n_missing} listed videos are missing under {videos} and were left out (listed in {out / 'missing.txt'})")
    for name, vids in lists.items():
        if not vids:
            print(f"{dataset}: warning: {name} is empty")
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--videos", required=True, type=Path, help="video root; CSV paths are relative to it")
    p.add_argument("--lists", type=Path, help="Motion-Transfer dataset_splits/<dataset> folder (recommended)")
    p.add_argument("--annotations", type=Path, help="source annotations (Kinetics-400 CSVs or SSv2 JSONs)")
    p.add_argument("--out", type=Path, help="output folder (default: splits/<dataset>)")
    args = p.parse_args(argv)
    if args.lists and args.annotations:
        p.error("give --lists or --annotations, not both")
    prepare(args.dataset, args.videos, args.out or Path("splits") / args.dataset, args.lists, args.annotations)


if __name__ == "__main__":
    sys.exit(main())
