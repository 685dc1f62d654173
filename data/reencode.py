"""Re-encode a prepared dataset's videos to a small short side, checking every file on the way.

Decoding cost grows with pixels: a 720p Kinetics clip costs ~6x a 340x256 one, so training on
the original files is decode-bound. This writes H.264 copies with the short side resized to
--short-side (default 288: room for the 256-320 scale jitter and 224 crops) and a keyframe every
--gop frames, and new split CSVs that point at them. Files that fail to decode are listed in
broken.txt and left out of the new CSVs (counted, not silently dropped). Re-running skips the
videos already done.

    python -m data.reencode --splits splits/k400ta --dst /data/k400ta_288 --out splits/k400ta_288
"""
import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from data.check import Progress
from data.splits import SPLITS, read_dataset_info, read_split, write_dataset
from data.video import DecodeError, count_frames, decode_sequentially, probe


def target_size(width: int, height: int, short_side: int):
    scale = short_side / min(width, height)
    if scale >= 1:  # never upsample
        scale = 1.0
    even = lambda x: max(2, int(round(x * scale / 2)) * 2)
    return even(width), even(height)


def reencode_one(src: str, dst: str, short_side: int, gop: int, crf: int) -> str:
    """-> '' on success, else the reason the source could not be read (as the loader would read it:
    frames counted, files cut short refused, every frame decoded in order)."""
    import av

    dst_path = Path(dst)
    if dst_path.is_file() and dst_path.stat().st_size > 0:
        return ""
    dst_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst_path.with_name(dst_path.name + ".part")
    try:
        info = probe(src)
        expected = count_frames(src, info)
        width, height = target_size(info["width"], info["height"], short_side)
        frames = 0
        with av.open(str(tmp), "w", format="mp4") as out:
            enc = out.add_stream("libx264", rate=info["rate"])
            enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
            enc.options = {"crf": str(crf), "preset": "veryfast", "g": str(gop), "bf": "0"}
            enc.thread_count = 1
            for frame in decode_sequentially(src):
                out.mux(enc.encode(frame.reformat(width, height, format="yuv420p")))
                frames += 1
            out.mux(enc.encode())
        if frames != expected:
            raise DecodeError(f"{src}: the decoder gave {frames} frames of the {expected} the file holds")
        os.replace(tmp, dst_path)
        return ""
    except DecodeError as e:
        return str(e).removeprefix(f"{src}: ")
    finally:
        tmp.unlink(missing_ok=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--splits", required=True, type=Path, help="prepared split folder of the source videos")
    p.add_argument("--dst", required=True, type=Path, help="folder for the re-encoded videos")
    p.add_argument("--out", required=True, type=Path, help="folder for the new split CSVs")
    p.add_argument("--short-side", type=int, default=288)
    p.add_argument("--gop", type=int, default=16, help="frames between keyframes")
    p.add_argument("--crf", type=int, default=23, help="x264 quality (lower = better, larger)")
    p.add_argument("--workers", type=int, default=os.cpu_count())
    args = p.parse_args(argv)

    info = read_dataset_info(args.splits)
    src_root = Path(info["video_root"])
    if args.dst.resolve() == src_root.resolve():
        raise SystemExit("error: --dst must differ from the source video root (the originals are never overwritten)")
    lists = {name: read_split(args.splits / f"{name}.csv", info["dataset"]) for name in SPLITS}
    paths = sorted({v.path for videos in lists.values() for v in videos})
    rename = {p: str(Path(p).with_suffix(".mp4")) for p in paths}
    t0 = time.time()
    broken, progress = {}, Progress(len(paths), "videos")
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        jobs = {pool.submit(reencode_one, str(src_root / p), str(args.dst / rename[p]), args.short_side, args.gop, args.crf): p for p in paths}
        for i, job in enumerate(jobs, start=1):
            reason = job.result()
            if reason:
                broken[jobs[job]] = reason
            progress.update(i, len(broken))
    new_lists = {name: [v.__class__(rename[v.path], v.coarse_id, v.fine_id, v.set) for v in videos if v.path not in broken]
                 for name, videos in lists.items()}
    extra = {"route": f"re-encoded from {args.splits.resolve()} (short side {args.short_side}, gop {args.gop}, crf {args.crf})",
             "broken": len(broken)}
    write_dataset(args.out, info["dataset"], args.dst, new_lists, extra)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "broken.txt").write_text("".join(f"{p}\t{r}\n" for p, r in sorted(broken.items())))
    size = sum(f.stat().st_size for f in args.dst.rglob("*.mp4"))
    print(f"{len(paths) - len(broken)} videos in {args.dst} ({size / 2**30:.2f} GiB, {time.time() - t0:.0f} s); "
          f"{len(broken)} could not be read (listed in {args.out / 'broken.txt'}); split CSVs in {args.out}")


if __name__ == "__main__":
    main()
