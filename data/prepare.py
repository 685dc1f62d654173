"""Write the split CSVs of a dataset (see data/splits.py for the schema).

Three routes:

  official lists (recommended: the study's exact videos)
      python -m data.prepare k400ta --videos /data/k400 --lists Motion-Transfer/dataset_splits/k400_ta
  source annotations (fallback when the lists are not at hand)
      python -m data.prepare k400ta --videos /data/k400 --annotations /data/k400/annotations
      python -m data.prepare ssv2ta --videos /data/ssv2/videos --annotations /data/ssv2/labels
  Syn-TA from its video folder (official layout <coarse>/<coarse><k>[_front]_id_<i>.mp4)
      python -m data.prepare synta --videos /data/synta

Videos listed but absent on disk are left out of the CSVs, counted, and listed in missing.txt; a row
that repeats a video already listed (by path, or the same file through a link) is left out, counted
and listed in repeated.txt. A video in two splits, or listed with two labels, is an error, and so is
a split that ends up empty. Files already in --out are replaced only with --overwrite.
"""
import argparse
import csv
import difflib
import io
import json
import os
import re
import stat
import sys
from collections import Counter
from pathlib import Path

from data.hierarchy import DATASETS, load_hierarchy
from data.splits import SPLITS, Video, check_path, dataset_files, read_text, write_files

SYNTA_NAME = re.compile(r"^(?P<folder>[a-z_]+)/(?P<base>[a-z_]+\d+)(?P<front>_front)?_id_(?P<id>\d+)\.mp4$")
SYNTA_TRAIN_IDS, SYNTA_VAL_IDS = range(1, 31), range(31, 51)
K400_ALIASES = {"dyeing hair": "dying hair"}  # Kinetics-600/700 spelling; the benchmark keeps Kinetics-400's
K400_SPLITS = {"train.csv": "train", "validate.csv": "val", "val.csv": "val"}
# Kinetics-400 classes one letter away from a K400-TA class: other classes, not misspellings of one
K400_NEAR_NAMES = {"shaking head"}
OWN_FILES = [f"{name}.csv" for name in SPLITS] + ["missing.txt", "repeated.txt", "dataset.yaml"]


def fail(message: str):
    raise SystemExit(f"error: {message}")


def empty_lists() -> dict:
    """{split: [(Video, where it is listed)]}."""
    return {name: [] for name in SPLITS}


# ---------------------------------------------------------------------------------------------
# route 1: the benchmark's own split lists (Motion-Transfer: dataset_splits/<ds>/)


def read_list(path: Path) -> list:
    """`<path> <label>` rows of an official list -> [(path, label, where)]."""
    rows = []
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
            fail(f"{path}:{line_no}: expected '<path> <label>', found {line.strip()!r}")
        try:
            rows.append((check_path(parts[0].strip()), int(parts[1]), f"{path}:{line_no}"))
        except ValueError as e:
            fail(f"{path}:{line_no}: {e}")
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
            for (path, coarse_id, _), (fine_path, fine_id, where) in zip(coarse_rows, fine_rows):
                if path != fine_path:
                    fail(f"{where}: video {fine_path!r} differs from {path!r} at the same row of {coarse_file.name}")
                if not 0 <= fine_id < len(fine):
                    fail(f"{where}: fine label {fine_id} outside 0..{len(fine) - 1} of set {s}")
                if fine[fine_id].coarse_id != coarse_id:
                    fail(f"{where}: fine class {fine_id} ('{fine[fine_id].name}') is not a child of coarse class {coarse_id}")
                lists[f"{split}_set{s}"].append((Video(path, coarse_id, fine_id, s), where))
    return lists


# ---------------------------------------------------------------------------------------------
# route 2: the source datasets' own annotations


def by_source_name(dataset: str) -> dict:
    return {c.source: c for c in load_hierarchy(dataset).fine}


def check_all_classes_seen(dataset: str, seen: set, where: str) -> None:
    unseen = [c.source for c in load_hierarchy(dataset).fine if c.source not in seen]
    if unseen:
        fail(f"{len(unseen)} classes of {dataset} never appear in {where} (e.g. {unseen[0]!r}); is this the right annotation folder?")


def loose(name: str) -> str:
    """A class name without the differences of a re-typed or re-exported file: case, '_' for ' ', spacing."""
    return " ".join(name.replace("_", " ").split()).casefold()


def read_csv_rows(path: Path, columns: set):
    """Rows of a CSV with a header as dicts (header names stripped) -> (row, where)."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    try:
        reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
        missing = columns - set(reader.fieldnames)
        if missing:
            fail(f"{path}:1: missing columns {sorted(missing)} in the header {','.join(reader.fieldnames)!r}; "
                 f"expected {','.join(sorted(columns))}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row or None in row.values():
                fail(f"{where}: expected {len(reader.fieldnames)} fields as in the header, found another number")
            yield {k: v.strip() for k, v in row.items()}, where
    except csv.Error as e:
        fail(f"{path}:{reader.line_num}: not a readable CSV ({e})")


def from_kinetics_annotations(ann_dir: Path) -> tuple:
    """Kinetics-400 CSVs `label,youtube_id,time_start,time_end,split`; clips `<split>/<id>_<s:06d>_<e:06d>.mp4`."""
    classes = by_source_name("k400ta")
    classes.update({alias: classes[name] for alias, name in K400_ALIASES.items()})
    loosely = {loose(name): cls for name, cls in classes.items()}
    files = {name: p for name in K400_SPLITS if (p := ann_dir / name).is_file()}
    if not files:
        fail(f"no Kinetics-400 annotation CSV (train.csv, validate.csv or val.csv) in {ann_dir}")
    if "validate.csv" in files and "val.csv" in files:
        fail(f"{ann_dir} holds both validate.csv and val.csv, two files for the val split; keep one")
    lists, seen, clips, outside, loose_rows = empty_lists(), set(), {}, {}, []
    for name, path in files.items():
        file_split = K400_SPLITS[name]
        for row, where in read_csv_rows(path, {"label", "youtube_id", "time_start", "time_end", "split"}):
            label = row["label"]
            cls = classes.get(label)
            if cls is None and (cls := loosely.get(loose(label))):
                loose_rows.append((where, label, cls.source))
            if cls is None:
                outside.setdefault(label, []).append(where)
                continue
            seen.add(cls.source)
            split = {"train": "train", "val": "val", "validate": "val"}.get(row["split"])
            if split is None:
                fail(f"{where}: unknown split {row['split']!r} (expected train or val)")
            if split != file_split:
                fail(f"{where}: a {row['split']!r} row in {name}, the file of the {file_split} split; each split has its own file")
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except (ValueError, OverflowError):
                fail(f"{where}: time_start/time_end must be numbers, found {row['time_start']!r}, {row['time_end']!r}")
            if not 0 <= start < end:
                fail(f"{where}: time_start {start} and time_end {end} do not make a clip (0 <= start < end)")
            if not re.fullmatch(r"[\w-]+", row["youtube_id"]):
                fail(f"{where}: youtube_id {row['youtube_id']!r} is not a YouTube id")
            clip = f"{row['youtube_id']}_{start:06d}_{end:06d}"
            other_split, other_where = clips.setdefault(clip, (split, where))
            if other_split != split:
                fail(f"{where}: clip {clip} is also in the {other_split} split ({other_where}); a clip belongs to one split only "
                     "(a test video seen in training is a leak)")
            lists[f"{split}_set{cls.set}"].append((Video(f"{split}/{clip}.mp4", cls.coarse_id, cls.fine_id, cls.set), where))
    for label, wheres in outside.items():
        close = difflib.get_close_matches(label, classes, n=1, cutoff=0.9)
        if close and label not in K400_NEAR_NAMES:
            print(f"k400ta: warning: {wheres[0]}: label {label!r} is not a K400-TA class but is close to {close[0]!r}; "
                  f"its {len(wheres)} rows were left out (correct the label if it means {close[0]!r})")
    if loose_rows:
        where, label, name = loose_rows[0]
        print(f"k400ta: {len(loose_rows)} rows name a K400-TA class with other case, spacing or '_' and were taken as that class "
              f"(the first: {where}: {label!r} as {name!r})")
    if outside:
        print(f"k400ta: left out {sum(map(len, outside.values()))} rows of {len(outside)} classes that are not in K400-TA")
    check_all_classes_seen("k400ta", seen, ", ".join(str(p) for p in files.values()))
    info = {"source_classes_not_in_benchmark": len(outside), "source_rows_not_in_benchmark": sum(map(len, outside.values()))}
    if loose_rows:
        info["rows_matched_ignoring_case_and_spacing"] = len(loose_rows)
    return lists, info


def read_json(path: Path):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        fail(f"{path}:{e.lineno}: not valid JSON ({e.msg})")


def template_name(template: str) -> str:
    """SSv2 template -> class name: 'Putting [something] on a surface' -> 'Putting something on a surface'."""
    return " ".join(template.replace("[", "").replace("]", "").split())


def from_ssv2_annotations(ann_dir: Path) -> tuple:
    """SSv2 labels.json / train.json / validation.json; videos `<id>.webm`."""
    classes = by_source_name("ssv2ta")
    for name in ("labels.json", "train.json", "validation.json"):
        if not (ann_dir / name).is_file():
            fail(f"{ann_dir / name} not found; --annotations must hold SSv2's labels.json, train.json and validation.json")
    labels = read_json(ann_dir / "labels.json")
    if not isinstance(labels, (dict, list)) or not all(isinstance(k, str) for k in labels):
        fail(f"{ann_dir / 'labels.json'}: expected SSv2's {{class name: id}} object")
    known = {template_name(k) for k in labels}
    lists, skipped, seen = empty_lists(), Counter(), set()
    for name, split in (("train.json", "train"), ("validation.json", "val")):
        entries = read_json(ann_dir / name)
        if not isinstance(entries, list):
            fail(f"{ann_dir / name}: expected SSv2's list of {{'id', 'template', ...}} entries")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not isinstance(entry.get("template"), str) or "id" not in entry:
                fail(f"{ann_dir / name}: entry {i}: expected an object with 'id' and 'template', found {str(entry)[:80]!r}")
            where = f"{ann_dir / name}: entry {i} (id {entry['id']})"
            template = entry["template"]
            label = template_name(template)
            if label not in known:
                fail(f"{where}: template {template!r} is not a class of labels.json")
            cls = classes.get(label)
            if cls is None:
                skipped[label] += 1
                continue
            seen.add(label)
            if not re.fullmatch(r"\w+", str(entry["id"])):
                fail(f"{where}: the id is not an SSv2 video id")
            lists[f"{split}_set{cls.set}"].append((Video(f"{entry['id']}.webm", cls.coarse_id, cls.fine_id, cls.set), where))
    check_all_classes_seen("ssv2ta", seen, str(ann_dir))
    return lists, {"source_classes_not_in_benchmark": len(skipped), "source_rows_not_in_benchmark": sum(skipped.values())}


# ---------------------------------------------------------------------------------------------
# route 3: a Syn-TA folder in the official layout


def walk_files(root: Path):
    """Every file under root, through symlinked folders too (each real folder once); hidden names skipped."""
    visited = set()
    for folder, subfolders, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:
            subfolders[:] = []
            continue
        visited.add(real)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        yield from (Path(folder, n) for n in sorted(names) if not n.startswith("."))


def from_synta_folder(video_root: Path) -> dict:
    classes = by_source_name("synta")
    found, unexpected = [], []
    for path in walk_files(video_root):
        if path.suffix.lower() != ".mp4":
            continue
        rel = path.relative_to(video_root).as_posix()
        m = SYNTA_NAME.match(rel)
        if not m or m["folder"] != m["base"].rstrip("0123456789"):
            unexpected.append(rel)
            continue
        stem = f"{m['folder']}/{m['base']}"
        if stem not in classes:
            fail(f"{rel}: unknown Syn-TA class {stem!r}")
        video_id = int(m["id"])
        if video_id not in SYNTA_TRAIN_IDS and video_id not in SYNTA_VAL_IDS:
            fail(f"{rel}: video id {video_id} outside 1-50 (1-30 train, 31-50 val)")
        found.append((classes[stem], video_id, bool(m["front"]), rel))
    if unexpected:
        fail(f"{len(unexpected)} .mp4 files under {video_root} are not Syn-TA video names (e.g. {unexpected[0]!r}); "
             "expected <coarse>/<coarse><k>[_front]_id_<i>.mp4: rename them or move them out of the folder")
    if not found:
        fail(f"no Syn-TA videos (<coarse>/<coarse><k>[_front]_id_<i>.mp4) under {video_root}")
    lists = empty_lists()
    # the official lists' order: fine id, video id, regular view before front view
    for cls, video_id, front, rel in sorted(found, key=lambda x: (x[0].set, x[0].fine_id, x[1], x[2])):
        split = "train" if video_id in SYNTA_TRAIN_IDS else "val"
        lists[f"{split}_set{cls.set}"].append((Video(rel, cls.coarse_id, cls.fine_id, cls.set), f"{video_root}/{rel}"))
    return lists


# ---------------------------------------------------------------------------------------------


def drop_repeats(lists: dict, key) -> list:
    """Keep each video once (`key(video)` says which rows are one video). A repeat in the same split
    with the same labels is left out and returned as a line of repeated.txt; a video in two splits
    or with two labels is an error that names both rows."""
    first, repeats = {}, []
    for name, rows in lists.items():
        kept = []
        for video, where in rows:
            k = key(video)
            if k not in first:
                first[k] = (name, video, where)
                kept.append((video, where))
                continue
            name0, video0, where0 = first[k]
            same = "" if video0.path == video.path else f" (the same file as {video0.path!r})"
            if name0 != name:
                fail(f"{where}: video {video.path!r}{same} is also in {name0} ({where0}); a video belongs to one split only "
                     "(a test video seen in training is a leak)")
            if (video0.coarse_id, video0.fine_id) != (video.coarse_id, video.fine_id):
                fail(f"{where}: video {video.path!r}{same} is listed again with other labels (first at {where0})")
            repeats.append(f"{name} {video.path} {where} repeats {where0}\n")
        lists[name] = kept
    return repeats


def drop_missing(lists: dict, video_root: Path) -> tuple:
    """Leave out the videos that are not files under video_root -> ({split: [missing paths]}, {path: file identity})."""
    missing, identity = {}, {}
    for name, rows in lists.items():
        missing[name] = []
        for video, _ in rows:
            try:
                st = (video_root / video.path).stat()
            except OSError:
                st = None
            if st and stat.S_ISREG(st.st_mode):
                identity[video.path] = (st.st_dev, st.st_ino)
            else:
                missing[name].append(video.path)
        lists[name] = [(v, where) for v, where in rows if v.path in identity]
    return missing, identity


def write_out(out: Path, files: dict, overwrite: bool) -> None:
    """Write files into out; replace a file that is there with other content only when asked to."""
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder")
    changed = [name for name, text in files.items() if (out / name).exists() and (out / name).read_bytes() != text.encode("utf-8")]
    if changed and not overwrite:
        fail(f"{out} already holds {', '.join(changed)} with other content; pass --overwrite to replace them, "
             "or choose another --out")
    try:
        write_files(out, files)
    except OSError as e:
        fail(f"cannot write into {out}: {e.strerror or e}")
    if changed:
        print(f"replaced {', '.join(changed)} in {out}")


def prepare(dataset: str, videos: Path, out: Path, lists_dir: Path = None, annotations: Path = None, overwrite: bool = False) -> dict:
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
    listed = {name: len(rows) for name, rows in lists.items()}
    repeats = drop_repeats(lists, key=lambda v: v.path)
    missing, identity = drop_missing(lists, videos)
    repeats += drop_repeats(lists, key=lambda v: identity[v.path])  # one file under two names (links)
    for name, rows in lists.items():
        if not rows and listed[name]:
            fail(f"{name} would be empty: none of its {listed[name]} listed videos is under {videos} (the first: "
                 f"{videos / missing[name][0]}); is --videos the folder that holds them?")
        if not rows:
            fail(f"{name} would be empty: the {info['route']} gives it no videos; every split needs some")
    info["missing"] = {name: len(paths) for name, paths in missing.items()}
    info["repeated_rows"] = len(repeats)
    lists = {name: [v for v, _ in rows] for name, rows in lists.items()}
    files = dataset_files(dataset, videos, lists, info)
    files["missing.txt"] = "".join(f"{name} {p}\n" for name, paths in missing.items() for p in paths)
    files["repeated.txt"] = "".join(repeats)
    out = Path(out)
    write_out(out, {name: files[name] for name in OWN_FILES}, overwrite)
    print(f"{dataset}: wrote {sum(map(len, lists.values()))} videos to {out} ({', '.join(f'{k} {len(v)}' for k, v in lists.items())})")
    n_missing = sum(info["missing"].values())
    if n_missing:
        print(f"{dataset}: {n_missing} listed videos are missing under {videos} and were left out (listed in {out / 'missing.txt'})")
    if repeats:
        print(f"{dataset}: {len(repeats)} rows repeat a video listed before and were left out (listed in {out / 'repeated.txt'})")
    return info


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--videos", required=True, type=Path, help="video root; CSV paths are relative to it")
    p.add_argument("--lists", type=Path, help="Motion-Transfer dataset_splits/<dataset> folder (recommended)")
    p.add_argument("--annotations", type=Path, help="source annotations (Kinetics-400 CSVs or SSv2 JSONs)")
    p.add_argument("--out", type=Path, help="output folder (default: splits/<dataset>)")
    p.add_argument("--overwrite", action="store_true", help="replace split files already in --out")
    args = p.parse_args(argv)
    if args.lists and args.annotations:
        p.error("give --lists or --annotations, not both")
    prepare(args.dataset, args.videos, args.out or Path("splits") / args.dataset, args.lists, args.annotations, args.overwrite)


if __name__ == "__main__":
    sys.exit(main())
