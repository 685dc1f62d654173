"""Syn-TA generator: scenes, the dataset on disk, contact sheets and the command line.

The official Syn-TA is rendered with Blender (github.com/raiyaan-abdullah/Motion-Transfer, synta_generate_blender/);
this module renders the same 20 coarse / 100 fine classes with the small ray caster in data/synta/render.py and
writes them in Syn-TA's own layout:

    <out>/<coarse folder>/<stem basename>[_front]_id_<i>.mp4      e.g. bouncing/bouncing1_front_id_3.mp4

ids 1-30 are the train videos and 31-50 the val videos of each view (fewer per class keep to the front of those
ranges). The motion of each fine class is a small program in data/synta/motions.py (table `CLASSES`).

    python -m data.synta generate --out cache/synta_small --profile small
    python -m data.synta sheet --coarse bouncing --out docs/synta

Appearance: `coupled` (the benchmark's setting) gives Set-1 classes the shapes cube/cone/pyramid/prism and
backgrounds 0-9, Set-2 classes sphere/cylinder/torus/capsule and backgrounds 10-19, so a Set-1 -> Set-2 transfer
changes appearance as well as motion; `shared` draws every video's shapes from all 8 and its background from all 20,
so a transfer measures motion alone. With one seed both modes share timings, directions, colours, cameras and
lights (shapes and colours come from their own random stream); only distances that keep solids apart follow the
sizes of the shapes drawn.
"""
import argparse
import json
import math
import os
import sys
import textwrap
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.hierarchy import load_hierarchy
from data.synta.render import (SHAPES, TEXTURES, Background, Camera, Light, draw_text,
                         encode_png, limit_blas_threads, render_clip, render_frames, texture_params,
                         write_mp4)
from data.synta.motions import CLASSES, VIEW_RELATIVE, Ctx

# 2: shared appearance keeps val backgrounds among the train ones; 3: sibling classes redrawn so that they look
# like their names (falling/rising 3-4, zigzags, moving_in_a_path 1-3, orbits, following, shooting_projectile1,
# teleporting 2/5...), the wall and the stairs of bouncing4/7/8 drawn, front cameras as high as the official ones
GENERATOR_VERSION = 3
MANIFEST = "synta_manifest.json"
VIEWS = ("regular", "front")
APPEARANCES = ("coupled", "shared")
SET_SHAPES = {1: ("cube", "cone", "pyramid", "prism"), 2: ("sphere", "cylinder", "torus", "capsule")}
SET_TEXTURES = {1: tuple(range(10)), 2: tuple(range(10, 20))}
TRAIN_FIRST_ID, VAL_FIRST_ID = 1, 31
MAX_TRAIN, MAX_VAL = 30, 20
REGULAR_AZIMUTHS = (0, 60, 120, 180, 240, 300)
FRONT_AZIMUTHS = (75, 80, 85, 90, 95, 100, 105)
PROFILES = {
    # the quick profile: every class, both views, 6 train + 4 val videos per class and view (2,000 videos)
    "small": {"size": 64, "frames": 32, "train_per_view": 6, "val_per_view": 4},
    # the official sizes: 10,000 videos at the official per-class frame counts
    "full": {"size": 224, "frames": None, "train_per_view": 30, "val_per_view": 20},
}


@dataclass
class Scene:
    stem: str
    set_id: int
    view: str
    video_id: int
    solids: list          # data.render.Solid, state per frame
    camera: Camera
    background: Background
    light: Light
    view_relative: bool   # the stage was turned to face the camera


def fine_classes() -> dict:
    """Official path stem -> data.hierarchy.FineClass, in the hierarchy's order (Set 1, then Set 2)."""
    table = {c.source: c for c in load_hierarchy("synta").fine}
    if set(table) != set(CLASSES):
        raise RuntimeError(f"data/synta/motions.py and data/hierarchies/synta.csv disagree: "
                           f"{sorted(set(table) ^ set(CLASSES))}")
    return table


def video_path(stem: str, view: str, video_id: int) -> str:
    folder, base = stem.split("/")
    return f"{folder}/{base}{'_front' if view == 'front' else ''}_id_{video_id}.mp4"


def video_ids(train_per_view: int, val_per_view: int) -> list:
    return (list(range(TRAIN_FIRST_ID, TRAIN_FIRST_ID + train_per_view))
            + list(range(VAL_FIRST_ID, VAL_FIRST_ID + val_per_view)))


def clip_frames(stem: str, frames=None, frame_scale: float = 1.0) -> int:
    """Frames of a clip: `frames` if given, else the official count of the class times `frame_scale`."""
    if frames is not None:
        return int(frames)
    return max(2, int(round(CLASSES[stem][1] * frame_scale)))


def texture_family(set_id: int, video_id: int, appearance: str, rng) -> int:
    """Background of a video: like the official scripts, video i (0-based) uses image i % 10 of its set's
    ten. `shared` draws the set at random per video, so every class sees all 20 backgrounds while the
    val ids (31...) still use the same ten indices as the train ids (1...)."""
    family_set = 1 + int(rng.integers(2)) if appearance == "shared" else set_id
    return SET_TEXTURES[family_set][(video_id - 1) % 10]


def shape_pool(set_id: int, appearance: str) -> tuple:
    return SHAPES if appearance == "shared" else SET_SHAPES[set_id]


def _rngs(seed, stem, view, video_id):
    """Independent RNG streams of one video, derived from (seed, class, view, id) only: motion, look,
    staging, background (a stream of its own, so appearance modes share every other draw)."""
    seq = np.random.SeedSequence([int(seed), zlib.crc32(stem.encode()), VIEWS.index(view), int(video_id)])
    return [np.random.default_rng(s) for s in seq.spawn(4)]


def _turn_stage(solids, focus, angle):
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    for solid in solids:
        solid.pos[:, :2] = solid.pos[:, :2] @ rot.T
        solid.yaw = solid.yaw + angle
    if focus is not None:
        focus[:, :2] = focus[:, :2] @ rot.T


def _box_corners(box):
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * box.half_size
    corners[:, :2] = corners[:, :2] @ np.array([[math.cos(box.yaw[0]), math.sin(box.yaw[0])],
                                                [-math.sin(box.yaw[0]), math.cos(box.yaw[0])]])
    return box.pos[0] + corners


def _fit_distance(points, reach, target, direction, width, height, fill=0.9):
    """Camera distance along `direction` from `target` at which spheres of radius `reach` around `points` fill
    the frame to `fill` of its half-width/height (a few fixed-point steps: the projection scales ~ 1/distance)."""
    distance = 20.0
    for _ in range(8):
        cam = Camera(target + distance * direction, target, width, height)
        rel = points - cam.position
        depth = rel @ cam.forward
        if depth.min() < reach + 0.5:
            distance *= 1.5
            continue
        x = (np.abs(rel @ cam.right) + reach) / depth / cam.half_w
        y = (np.abs(rel @ cam.up) + reach) / depth / cam.half_h
        distance *= max(x.max(), y.max()) / fill
    return distance


def build_scene(stem, view="regular", video_id=1, seed=0, frames=None, frame_scale=1.0, size=112,
                appearance="coupled") -> Scene:
    """The full scene of one video: solids with their per-frame state, camera, light and background."""
    fine = fine_classes()[stem]
    motion_rng, look_rng, stage_rng, background_rng = _rngs(seed, stem, view, video_id)
    n_frames = clip_frames(stem, frames, frame_scale)
    ctx = Ctx(n_frames, motion_rng, look_rng, shape_pool(fine.set, appearance), view)
    program = CLASSES[stem][0]
    solids = program(ctx)
    width, height = (size, size) if isinstance(size, int) else size

    azimuth = math.radians(stage_rng.choice(FRONT_AZIMUTHS if view == "front" else REGULAR_AZIMUTHS))
    focus = None
    if ctx.focus is not None:
        focus = np.array([[p[0], p[1], p[2] if len(p) > 2 else 1.0] for p in ctx.focus], np.float64)
    if stem in VIEW_RELATIVE:
        # the program's camera looks along +y from -y (azimuth 90 degrees); turn the stage to face this one
        _turn_stage(solids, focus, math.pi / 2 - azimuth)

    movers = [s for s in solids if s.shape != "box"]
    if focus is None:
        focus = np.concatenate([v for v in (s.pos[s.alpha > 0.05] for s in movers) if len(v)])
    focus = np.vstack([focus] + [_box_corners(s) for s in solids if s.shape == "box"])  # the wall, the stairs
    reach = max(float(np.max(s.radius)) for s in movers)
    centre = (focus.min(0) + focus.max(0)) / 2
    # frame the action with some ground around it, even when it happens in one spot
    around = centre + np.array([[2.5, 0, 0], [-2.5, 0, 0], [0, 2.5, 0], [0, -2.5, 0]])
    around[:, 2] = 1.0
    focus = np.vstack([focus, around])
    if view == "front":
        elevation = math.radians(stage_rng.uniform(8, 17))  # the official front cameras: 5-10 high, 30 away
    else:
        elevation = math.radians(stage_rng.uniform(*(ctx.elevation or (20.0, 45.0))))
    target = centre + np.array([*stage_rng.uniform(-0.3, 0.3, 2), 0.0])
    direction = np.array([math.cos(elevation) * math.cos(azimuth), -math.cos(elevation) * math.sin(azimuth),
                          math.sin(elevation)])
    distance = _fit_distance(focus, reach, target, direction, width, height) * stage_rng.uniform(1.0, 1.12)
    position = target + distance * direction
    position[2] = max(position[2], 0.6)
    camera = Camera(position, target, width, height)

    light_az = azimuth + stage_rng.choice([-1, 1]) * math.radians(stage_rng.uniform(30, 100))
    light_el = math.radians(stage_rng.uniform(40, 65))
    light = Light(np.array([math.cos(light_el) * math.cos(light_az), -math.cos(light_el) * math.sin(light_az),
                            math.sin(light_el)]))

    family = texture_family(fine.set, video_id, appearance, background_rng)
    params = texture_params(stage_rng)
    if view == "front":
        behind = max(float(np.max(s.pos[:, 1] + s.radius)) for s in solids)
        backdrop_y = max(behind, centre[1] + 2.0) + stage_rng.uniform(2.5, 4.5)
        palette = np.asarray(TEXTURES[family][2], np.float64)
        floor = tuple(0.45 * palette.mean(0) + 0.25)
        background = Background(family, params, backdrop_y=backdrop_y, floor_color=floor)
    else:
        background = Background(family, params)
    return Scene(stem, fine.set, view, int(video_id), solids, camera, background, light, stem in VIEW_RELATIVE)


def render_scene(scene: Scene, frame_indices=None) -> np.ndarray:
    """uint8 (F, H, W, 3) frames of a scene (all frames, or the given indices)."""
    if frame_indices is not None:
        return render_frames(scene.solids, scene.camera, scene.background, scene.light, np.asarray(frame_indices))
    return np.concatenate(list(render_clip(scene.solids, scene.camera, scene.background, scene.light)))


# ----------------------------------------------------------------------------------------------------------------
# option checks: every user mistake is a one-line "error: ..." (SystemExit)

def _fail(message):
    raise SystemExit(f"error: {message}")


def resolve_classes(classes) -> list:
    """Stems from a list (or comma-separated string) of stems ('bouncing/bouncing1'), stem basenames ('bouncing1')
    or coarse folders ('bouncing', 'changing_color', 'changing color'). None = all 100, in hierarchy order."""
    table = fine_classes()
    if classes is None:
        return list(table)
    if isinstance(classes, str):
        classes = [c for c in classes.split(",") if c.strip()]
    by_base = {s.split("/")[1]: s for s in table}
    chosen = []
    for item in classes:
        key = str(item).strip()
        folder = key.replace(" ", "_")
        if key in table:
            found = [key]
        elif key in by_base:
            found = [by_base[key]]
        elif any(s.split("/")[0] == folder for s in table):
            found = [s for s in table if s.split("/")[0] == folder]
        else:
            _fail(f"unknown Syn-TA class '{key}' (use a stem like bouncing/bouncing1, bouncing1, or a coarse class "
                  f"like bouncing)")
        chosen += [s for s in found if s not in chosen]
    if not chosen:
        _fail("no classes selected")
    return [s for s in table if s in chosen]


def _check_options(size, frames, frame_scale, train_per_view, val_per_view, appearance, workers, views):
    sizes = (size, size) if isinstance(size, int) else tuple(size)
    if len(sizes) != 2 or any(not isinstance(v, (int, np.integer)) or v < 16 or v % 2 for v in sizes):
        _fail(f"size must be an even number of pixels >= 16 (H.264 yuv420p needs even sides), got {size}")
    if frames is not None and (not isinstance(frames, (int, np.integer)) or frames < 2):
        _fail(f"frames must be an integer >= 2 or None (official per-class counts), got {frames}")
    if not (isinstance(frame_scale, (int, float)) and frame_scale > 0):
        _fail(f"frame_scale must be > 0, got {frame_scale}")
    if not (isinstance(train_per_view, (int, np.integer)) and 0 <= train_per_view <= MAX_TRAIN):
        _fail(f"train_per_view must be 0..{MAX_TRAIN} (official train ids 1-30), got {train_per_view}")
    if not (isinstance(val_per_view, (int, np.integer)) and 0 <= val_per_view <= MAX_VAL):
        _fail(f"val_per_view must be 0..{MAX_VAL} (official val ids 31-50), got {val_per_view}")
    if train_per_view + val_per_view == 0:
        _fail("train_per_view + val_per_view must be at least 1")
    if appearance not in APPEARANCES:
        _fail(f"appearance must be one of {', '.join(APPEARANCES)}, got '{appearance}'")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        _fail(f"workers must be an integer >= 1, got {workers}")
    bad = [v for v in views if v not in VIEWS]
    if bad or not views:
        _fail(f"views must be among {', '.join(VIEWS)}, got {list(views)}")
    return sizes


# ----------------------------------------------------------------------------------------------------------------
# generation

def _worker_init():
    limit_blas_threads(1)


def _render_job(job):
    stem, view, video_id, options, target = job
    started = time.perf_counter()
    scene = build_scene(stem, view, video_id, options["seed"], options["frames"], options["frame_scale"],
                        tuple(options["size"]), options["appearance"])
    target = Path(target)
    # not *.mp4 until complete, so a folder scan (data/prepare.py) never sees a half-written video
    partial = target.with_name(target.name + ".partial")
    write_mp4(partial, render_clip(scene.solids, scene.camera, scene.background, scene.light),
              scene.camera.width, scene.camera.height)
    os.replace(partial, target)
    return str(target), time.perf_counter() - started


def _content_options(size, frames, frame_scale, seed, appearance):
    """The options that decide what a video looks like (a cached dataset is reusable when these match)."""
    return {"size": list(size), "frames": frames, "frame_scale": frame_scale if frames is None else None,
            "seed": int(seed), "appearance": appearance, "version": GENERATOR_VERSION}


def _write_json(path, data):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def generate(out_dir, size=112, frames=None, train_per_view=MAX_TRAIN, val_per_view=MAX_VAL, seed=0,
             appearance="coupled", workers=None, classes=None, frame_scale=1.0, views=VIEWS, overwrite=False,
             progress=False) -> dict:
    """Render Syn-TA videos into `out_dir` (Syn-TA layout) and return a summary dict.

    Per fine class and view: train ids 1..train_per_view and val ids 31..31+val_per_view-1. `frames=None` uses
    the official per-class frame counts times `frame_scale`. Videos already on disk from a run with the same
    content options (size, frames, seed, appearance, generator version; see synta_manifest.json) are kept, so a
    second call returns at once; a different content in the same folder is an error unless overwrite=True.
    Each video's randomness comes from (seed, class, view, id) alone: the result does not depend on `workers`."""
    size = _check_options(size, frames, frame_scale, train_per_view, val_per_view, appearance, workers, views)
    stems = resolve_classes(classes)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".synta_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        _fail(f"cannot write to output directory {out}: {e.strerror or e}")

    options = _content_options(size, frames, frame_scale, seed, appearance)
    manifest_path = out / MANIFEST
    recorded = {}
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            _fail(f"{manifest_path} is not readable JSON; delete it or use another output directory")
        made_by = (old.get("options") or {}).get("version")
        if made_by != GENERATOR_VERSION and not overwrite:
            _fail(f"{out} holds videos of Syn-TA generator version {made_by} and this is version {GENERATOR_VERSION} "
                  f"(see GENERATOR_VERSION in data/synta/generator.py): to render it anew, delete the folder and any "
                  f"runs trained on it (or generate with --overwrite); to keep it, train on its split lists without "
                  f"this generator: --data synta --splits {out / 'splits'} (python -m data.prepare synta "
                  f"--videos {out} --out {out / 'splits'} writes them)")
        if old.get("options") != options and not overwrite:
            _fail(f"{out} holds a Syn-TA generated with other options ({old.get('options')}); use another output "
                  f"directory or overwrite=True / --overwrite")
        if old.get("options") == options:
            recorded = old.get("videos", {})
    elif any(out.glob("*/*_id_*.mp4")) and not overwrite:
        _fail(f"{out} has Syn-TA videos but no {MANIFEST}; use another output directory or --overwrite")

    for stale in out.glob("*/*.mp4.partial"):  # left by an interrupted run
        stale.unlink()
    ids = video_ids(train_per_view, val_per_view)
    wanted = [(stem, view, i) for stem in stems for view in views for i in ids]
    if overwrite:
        todo = wanted
        recorded = {}
    else:
        todo = [w for w in wanted if not (out / video_path(*w)).exists()]
    # the manifest is written before rendering too, so a folder with videos always says how they were made
    manifest = {"generator": "data.synta", "options": options, "videos": recorded}
    _write_json(manifest_path, manifest)

    started = time.perf_counter()
    rendered_seconds = 0.0
    if todo:
        for folder in {s.split("/")[0] for s, _, _ in todo}:
            (out / folder).mkdir(exist_ok=True)
        plain = dict(options, size=list(size))
        jobs = [(s, v, i, plain, str(out / video_path(s, v, i))) for s, v, i in todo]
        jobs.sort(key=lambda j: -clip_frames(j[0], frames, frame_scale))  # long clips first: better balance
        n_workers = min(workers or os.cpu_count() or 1, len(jobs))
        done = 0
        step = max(1, len(jobs) // 10)
        blas_threads = None
        if n_workers == 1:
            blas_threads = limit_blas_threads(1)
            results = map(_render_job, jobs)
            pool = None
        else:
            import multiprocessing as mp

            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            pool = mp.get_context(method).Pool(n_workers, initializer=_worker_init)
            results = pool.imap_unordered(_render_job, jobs, chunksize=max(1, min(8, len(jobs) // (4 * n_workers))))
        try:
            for _, seconds in results:
                rendered_seconds += seconds
                done += 1
                if progress and (done % step == 0 or done == len(jobs)):
                    elapsed = time.perf_counter() - started
                    print(f"synta: {done}/{len(jobs)} videos, {elapsed:.1f} s, {done / elapsed:.1f} videos/s",
                          file=sys.stderr, flush=True)
        except BaseException:
            if pool is not None:
                pool.terminate()
            raise
        finally:
            if pool is not None:
                pool.close()
                pool.join()
            if blas_threads is not None:
                limit_blas_threads(blas_threads)
    elapsed = time.perf_counter() - started

    for stem, view, i in wanted:
        per_view = recorded.setdefault(stem, {})
        got = set(per_view.get(view, [])) | {i}
        per_view[view] = sorted(got)
    manifest = {"generator": "data.synta", "options": options, "videos": recorded,
                "count": sum(len(v) for per in recorded.values() for v in per.values())}
    _write_json(manifest_path, manifest)
    return {"out_dir": str(out), "manifest": str(manifest_path), "options": options, "classes": len(stems),
            "views": list(views), "ids": ids, "videos": len(wanted), "rendered": len(todo),
            "reused": len(wanted) - len(todo), "seconds": round(elapsed, 3),
            "videos_per_s": round(len(todo) / elapsed, 3) if todo and elapsed > 0 else None,
            "total_in_folder": manifest["count"]}


# ----------------------------------------------------------------------------------------------------------------
# contact sheets

def _wrap(text, width_chars):
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width_chars:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    return lines + [line]


def _siblings(coarse):
    """The fine classes of a coarse class, by their number (bouncing1, bouncing2, ...)."""
    return sorted(resolve_classes([coarse]), key=lambda s: int("".join(ch for ch in s.split("/")[1] if ch.isdigit())))


def contact_sheet(coarse, out_png, size=112, frames=32, columns=8, seed=0, appearance="coupled", view="regular",
                  video_id=1) -> Path:
    """PNG grid for one coarse class: one row per fine class (labelled with set, stem and fine name), `columns`
    frames evenly spread over the clip."""
    stems = _siblings(coarse)
    table = fine_classes()
    if view not in VIEWS:
        _fail(f"view must be one of {', '.join(VIEWS)}")
    if not (isinstance(columns, int) and 2 <= columns <= 32):
        _fail("columns must be 2..32")
    _check_options(size, frames, 1.0, 1, 0, appearance, 1, VIEWS)
    rows = []
    width = columns * (size + 2)
    for stem in stems:
        fine = table[stem]
        scene = build_scene(stem, view, video_id, seed, frames, 1.0, size, appearance)
        n = len(scene.solids[0].pos)
        picks = np.unique(np.round(np.linspace(0, n - 1, columns)).astype(int))
        clip = render_scene(scene, picks)
        lines = _wrap(f"SET {fine.set}  {stem.split('/')[1]}: {fine.name}", max(10, width // 6 - 1))
        strip = np.full((len(lines) * 9 + 3, width, 3), 24, np.uint8)
        for k, line in enumerate(lines):
            draw_text(strip, line, 2, 2 + 9 * k, (235, 235, 235))
        tiles = np.full((size + 2, width, 3), 24, np.uint8)
        for k, frame in enumerate(clip):
            tiles[1:1 + size, k * (size + 2) + 1:k * (size + 2) + 1 + size] = frame
        rows += [strip, tiles]
    sheet = np.concatenate(rows)
    out_png = Path(out_png)
    try:
        out_png.parent.mkdir(parents=True, exist_ok=True)
        out_png.write_bytes(encode_png(sheet))
    except OSError as e:
        _fail(f"cannot write {out_png}: {e.strerror or e}")
    return out_png


def sheet_index(out_dir, size=112, frames=32, columns=8, seed=0, appearance="coupled", view="regular",
                video_id=1) -> Path:
    """<out_dir>/README.md: what the contact sheets show, and for every coarse class its fine classes."""
    table = fine_classes()
    about = (
        f"One sheet per coarse class, written by `python -m data.synta sheet --out {out_dir}` ({size} px, {frames} "
        f"frames, {columns} of them from left to right; video id {video_id}, {view} view, seed {seed}, {appearance} "
        "appearance). Each row is one fine class (label: set, stem, official fine name). Rows marked *view-relative* "
        "are staged as seen by the camera (left/right, near/far, clockwise on screen, entering or leaving the frame); "
        "the others are filmed from a random one of the six regular azimuths. Frames: the official per-class clip "
        "length, used by the full profile.")
    text = ["# Syn-TA generator: contact sheets", "", textwrap.fill(about, 115), ""]
    for coarse in sorted({stem.split("/")[0] for stem in table}):
        text += [f"## {coarse.replace('_', ' ')} — [{coarse}.png]({coarse}.png)", "",
                 "| stem | set | fine class | frames |", "|---|---|---|---|"]
        for stem in _siblings(coarse):
            mark = " *(view-relative)*" if stem in VIEW_RELATIVE else ""
            text.append(f"| `{stem}` | {table[stem].set} | {table[stem].name}{mark} | {CLASSES[stem][1]} |")
        text.append("")
    path = Path(out_dir) / "README.md"
    path.write_text("\n".join(text))
    return path


# ----------------------------------------------------------------------------------------------------------------
# command line

def _size_arg(text):
    try:
        if "x" in text:
            w, h = text.lower().split("x")
            return int(w), int(h)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or WxH, got '{text}'")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise SystemExit(f"error: {message}")


def main(argv=None):
    parser = _Parser(prog="python -m data.synta", description="Procedural Syn-TA generator (CPU only).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    g = sub.add_parser("generate", help="render videos in the Syn-TA layout")
    g.add_argument("--out", required=True, help="output root (videos go to <out>/<coarse>/<stem>[_front]_id_<i>.mp4)")
    g.add_argument("--profile", choices=sorted(PROFILES), help="preset sizes; explicit options override it")
    g.add_argument("--size", type=_size_arg, help="frame size in pixels, N or WxH, even (default 112)")
    g.add_argument("--frames", type=int, help="frames per clip for every class (default: official per-class counts)")
    g.add_argument("--frame-scale", type=float, default=1.0, help="multiply the official frame counts (default 1)")
    g.add_argument("--train-per-view", type=int, help="train videos per class and view, ids 1.. (default 30)")
    g.add_argument("--val-per-view", type=int, help="val videos per class and view, ids 31.. (default 20)")
    g.add_argument("--views", default="regular,front", help="comma-separated: regular,front")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--appearance", default="coupled", help="coupled (per-set shapes and backgrounds) or shared")
    g.add_argument("--classes", help="comma-separated stems (bouncing/bouncing1), basenames or coarse classes")
    g.add_argument("--workers", type=int, help="processes (default: all cores)")
    g.add_argument("--overwrite", action="store_true", help="re-render even if videos exist")
    s = sub.add_parser("sheet", help="write contact sheets (PNG) of coarse classes, for all of them also README.md")
    s.add_argument("--coarse", default="all", help="coarse class (folder name) or 'all' (default)")
    s.add_argument("--out", default="docs/synta", help="output folder (default docs/synta)")
    s.add_argument("--size", type=int, default=112)
    s.add_argument("--frames", type=int, default=32)
    s.add_argument("--columns", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--appearance", default="coupled")
    s.add_argument("--view", default="regular")
    s.add_argument("--id", type=int, default=1)
    args = parser.parse_args(argv)

    if args.command == "generate":
        preset = dict(PROFILES.get(args.profile, {}))
        size = args.size if args.size is not None else preset.get("size", 112)
        frames = args.frames if args.frames is not None else preset.get("frames")
        train = args.train_per_view if args.train_per_view is not None else preset.get("train_per_view", MAX_TRAIN)
        val = args.val_per_view if args.val_per_view is not None else preset.get("val_per_view", MAX_VAL)
        summary = generate(args.out, size=size, frames=frames, train_per_view=train, val_per_view=val,
                           seed=args.seed, appearance=args.appearance, workers=args.workers, classes=args.classes,
                           frame_scale=args.frame_scale, views=tuple(v for v in args.views.split(",") if v),
                           overwrite=args.overwrite, progress=True)
        print(json.dumps({k: v for k, v in summary.items() if k != "ids"}))
    else:
        coarse_names = sorted({s.split("/")[0] for s in fine_classes()})
        chosen = coarse_names if args.coarse == "all" else [args.coarse.replace(" ", "_")]
        for name in chosen:
            if name not in coarse_names:
                _fail(f"unknown coarse class '{name}'; choose from: {', '.join(coarse_names)}")
        look = dict(size=args.size, frames=args.frames, columns=args.columns, seed=args.seed,
                    appearance=args.appearance, view=args.view, video_id=args.id)
        for name in chosen:
            path = contact_sheet(name, Path(args.out) / f"{name}.png", **look)
            print(f"{path} ({path.stat().st_size // 1024} KB)")
        if args.coarse == "all":
            print(sheet_index(args.out, **look))

