"""Check every video of a prepared dataset before training on it, and write a split without the bad ones.

Each file is opened and sampled as the loader does (the reader open_video chooses), then decoded end
to end; the frames the reader returned are compared with the same frames of the sequential decode.
Per file: ok, undecodable (the reason), frame count (the header's, the reader's and the true one),
seek errors (sampled frames that differ from the sequential decode) and decode speed. Written to
--out: report.json (every file), report.txt (a summary and every bad file) and the same four split
CSVs without the bad rows, with dataset.yaml recording what was removed. The input split is never
touched.

    python -m data.check --splits splits/k400ta --out splits/k400ta_checked --workers 16
"""
import argparse
import json
import os
import sys
import time
import zlib
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from data.splits import SPLITS, read_dataset_info, read_split, write_dataset
from data.video import BACKENDS, DecodeError, decode_sequentially, open_video, probe

SAMPLES = 16  # frames read through the reader (plus the first and the last)
TOLERANCE = 2  # largest pixel difference between decord and PyAV for one frame (measured: 0)


def check_one(path: str, backend: str = "decord") -> dict:
    """-> {path, status ('ok' | 'undecodable' | 'frame count' | 'seek errors'), reason, reader,
    header_frames, frames (the reader's count), decoded_frames (a sequential decode's), seek_errors,
    decode_fps, open_read_ms}"""
    row = {"path": path, "status": "ok", "reason": "", "reader": None, "header_frames": None, "frames": None,
           "decoded_frames": None, "seek_errors": None, "decode_fps": None, "open_read_ms": None}
    try:
        row["header_frames"] = probe(path)["header_frames"] or None
        start = time.perf_counter()
        reader = open_video(path, backend)
        n = row["frames"] = len(reader)
        rng = np.random.default_rng(zlib.crc32(path.encode()))
        indices = sorted({0, n - 1, *rng.choice(n, min(SAMPLES, n), replace=False).tolist()})
        read = dict(zip(indices, reader.get(indices)))
        row["open_read_ms"] = round(1000 * (time.perf_counter() - start), 1)
        row["reader"] = reader.backend
        start, decoded, wrong = time.perf_counter(), 0, 0
        for decoded, frame in enumerate(decode_sequentially(path), start=1):
            if decoded - 1 in read:
                wrong += int(np.abs(frame.to_ndarray(format="rgb24").astype(np.int16) - read[decoded - 1]).max() > TOLERANCE)
        row["decode_fps"] = round(decoded / max(time.perf_counter() - start, 1e-9), 1)
        row["decoded_frames"], row["seek_errors"] = decoded, wrong
        if decoded != n:
            row["status"], row["reason"] = "frame count", f"the reader counts {n} frames, a sequential decode gives {decoded}"
        elif wrong:
            row["status"], row["reason"] = "seek errors", f"{wrong} of {len(read)} sampled frames differ from a sequential decode"
    except DecodeError as e:
        row["status"], row["reason"] = "undecodable", str(e).removeprefix(f"{path}: ")
    return row


class Progress:
    """A bar redrawn in place on a terminal; elsewhere (a log file, CI) a line every `every` items."""

    def __init__(self, total: int, what: str, every: int = 100):
        self.total, self.what, self.every, self.start = total, what, every, time.time()
        self.tty = sys.stderr.isatty()

    def update(self, done: int, bad: int) -> None:
        if not self.tty and done % self.every and done != self.total:
            return
        rate = done / max(time.time() - self.start, 1e-9)
        left = (self.total - done) / rate if rate else 0
        bar = "#" * (30 * done // max(self.total, 1))
        line = f"[{bar:<30}] {done}/{self.total} {self.what}, {bad} bad, {rate:.1f}/s, {left / 60:.1f} min left"
        print(f"\r{line}" if self.tty else line, end="" if self.tty and done < self.total else "\n", file=sys.stderr, flush=True)


def _check_star(args):
    return check_one(*args)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--splits", required=True, type=Path, help="prepared split folder (data.prepare, data.reencode)")
    p.add_argument("--out", type=Path, help="folder for the report and the cleaned split (default: <splits>_checked)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="processes reading videos")
    p.add_argument("--backend", default="decord", choices=BACKENDS, help="the reader to check, as train.py --backend")
    args = p.parse_args(argv)
    out = args.out or args.splits.with_name(args.splits.name + "_checked")
    if out.resolve() == args.splits.resolve():
        raise SystemExit("error: --out must differ from --splits (the input split is never overwritten)")
    if args.workers < 1:
        raise SystemExit(f"error: --workers must be at least 1, found {args.workers}")

    info = read_dataset_info(args.splits)
    root = Path(info["video_root"])
    lists = {name: read_split(args.splits / f"{name}.csv", info["dataset"]) for name in SPLITS}
    paths = sorted({v.path for videos in lists.values() for v in videos})
    progress, rows, bad = Progress(len(paths), "videos"), {}, 0
    jobs = [(str(root / path), args.backend) for path in paths]
    with Pool(args.workers) as pool:
        for done, row in enumerate(pool.imap_unordered(_check_star, jobs, chunksize=4), start=1):
            rows[os.path.relpath(row["path"], root)] = {**row, "path": os.path.relpath(row["path"], root)}
            bad += row["status"] != "ok"
            progress.update(done, bad)

    removed = {path: f"{row['status']}: {row['reason']}" for path, row in sorted(rows.items()) if row["status"] != "ok"}
    cleaned = {name: [v for v in videos if v.path not in removed] for name, videos in lists.items()}
    extra = {k: v for k, v in info.items() if k not in ("dataset", "video_root", "videos")}
    extra["check"] = {"from": str(args.splits.resolve()), "backend": args.backend, "removed": removed,
                      "removed_rows": {name: len(lists[name]) - len(cleaned[name]) for name in SPLITS}}
    write_dataset(out, info["dataset"], root, cleaned, extra)

    ok = [r for r in rows.values() if r["status"] == "ok"]
    statuses = {s: sum(r["status"] == s for r in rows.values()) for s in ("ok", "undecodable", "frame count", "seek errors")}
    header_differs = sum(r["header_frames"] is not None and r["frames"] is not None and r["header_frames"] != r["frames"] for r in rows.values())
    summary = {"splits": str(args.splits.resolve()), "video_root": str(root), "backend": args.backend, "videos": len(rows),
               "statuses": statuses, "header_count_differs": header_differs,
               "readers": {b: sum(r["reader"] == b for r in ok) for b in BACKENDS},
               "median_decode_fps": float(np.median([r["decode_fps"] for r in ok])) if ok else None,
               "median_open_read_ms": float(np.median([r["open_read_ms"] for r in ok])) if ok else None,
               "removed_rows": extra["check"]["removed_rows"]}
    (out / "report.json").write_text(json.dumps({**summary, "files": [rows[p] for p in sorted(rows)]}, indent=1))
    lines = [f"{len(rows)} videos of {args.splits} checked with --backend {args.backend}: "
             + ", ".join(f"{n} {s}" for s, n in statuses.items()),
             f"readers: {summary['readers']}; header frame count differs from the file's: {header_differs}",
             f"median decode speed {summary['median_decode_fps']} frames/s; median open + {SAMPLES + 2} sparse frames "
             f"{summary['median_open_read_ms']} ms",
             f"rows removed: {summary['removed_rows']}"]
    lines += [f"{path}\t{reason}" for path, reason in removed.items()]
    (out / "report.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:4]))
    print(f"cleaned split, report.json and report.txt in {out}")
    return summary


if __name__ == "__main__":
    main()
