"""Tests of the Syn-TA generator (data/synta/: generator.py, motions.py, render.py).

Motion is checked on the scene state each program produces (per-frame positions, scales, opacities, colours);
rendering and writing on tiny clips. The official split lists are only read when present.
"""
import dataclasses
import json
import math
from collections import Counter

import numpy as np
import pytest

from conftest import SHARED
from data.synta import generator as synta
from data.synta.motions import CLASSES, FOOTPRINT, footprint_gap, lift_of
from data.synta.render import (HALF_HEIGHT, Background, Camera, Light, Solid, read_mp4, render_background,
                               render_frames)

IDS = (1, 2, 3, 31)  # a few videos of each class: programs are random, checks must hold for every draw


def scenes(stem, frames=60, views=synta.VIEWS, ids=IDS, appearance="coupled", seed=0):
    for view in views:
        for i in ids:
            yield synta.build_scene(stem, view, i, seed=seed, frames=frames, size=32, appearance=appearance)


def named(scene, prefix):
    return [s for s in scene.solids if s.name.startswith(prefix)]


def one(scene, name):
    found = [s for s in scene.solids if s.name == name]
    assert len(found) == 1, (name, [s.name for s in scene.solids])
    return found[0]


def visible(scene, frame):
    return [s for s in scene.solids if s.alpha[frame] > 0.5]


def speed(solid):
    return np.linalg.norm(np.diff(solid.pos, axis=0), axis=1)


def min_gap(a, b):
    """Smallest centre distance minus the sum of bounding radii over the frames where both are visible."""
    both = (a.alpha > 0.05) & (b.alpha > 0.05)
    d = np.linalg.norm(a.pos - b.pos, axis=1) - a.radius - b.radius
    return float(d[both].min())


def screen(scene, solid):
    return scene.camera.project(solid.pos)  # (F, 3): column, row, depth


def angle_about(points, centre, axes):
    rel = points - centre
    u, v = rel @ axes[0], rel @ axes[1]
    return np.unwrap(np.arctan2(v, u))


def fade_window(alpha):
    """(first frame above 0.05, first frame above 0.95) of a rising opacity curve."""
    return int(np.argmax(alpha > 0.05)), int(np.argmax(alpha > 0.95))


# ----------------------------------------------------------------------------------------------------------------
# the class table

def test_all_100_classes_and_20_coarse_are_programs():
    table = synta.fine_classes()
    assert len(table) == 100 and set(table) == set(CLASSES)
    assert len({c.coarse_id for c in table.values()}) == 20
    assert sum(c.set == 1 for c in table.values()) == 53
    for stem, (program, frames) in CLASSES.items():
        assert callable(program) and 60 <= frames <= 170, stem
    assert CLASSES["appearing/appearing1"][1] == 140 and CLASSES["appearing/appearing3"][1] == 170
    assert CLASSES["bouncing/bouncing1"][1] == 120 and CLASSES["not_colliding/not_colliding1"][1] == 130


def test_every_class_renders_its_objects_in_both_views():
    """Tiny render of all 100 x 2 clips: frame count, size, and the solids are where the camera says they are."""
    for stem in CLASSES:
        for view in synta.VIEWS:
            scene = synta.build_scene(stem, view, 1, seed=0, frames=6, size=32)
            assert len(scene.solids) >= 1 and all(len(s.pos) == 6 for s in scene.solids)
            frames = synta.render_scene(scene)
            assert frames.shape == (6, 32, 32, 3) and frames.dtype == np.uint8
            empty = [dataclasses.replace(s, alpha=s.alpha * 0) for s in scene.solids]
            background = render_frames(empty, scene.camera, scene.background, scene.light)
            differs = np.abs(frames.astype(int) - background).sum(-1) > 30
            assert differs.any(), f"{stem} {view}: no object pixels"
            # the most opaque solid in its most opaque frame covers pixels next to its projected centre
            s = max(scene.solids, key=lambda s: s.alpha.max() * s.scale.max())
            f = int(np.argmax(s.alpha * s.scale))
            col, row, depth = scene.camera.project(s.pos[f])
            assert depth > 0
            if 0 <= col < 32 and 0 <= row < 32:
                r0, c0 = int(row), int(col)
                near = differs[f, max(0, r0 - 2):r0 + 3, max(0, c0 - 2):c0 + 3]
                assert near.any(), f"{stem} {view}: object not drawn at its projection"


# ----------------------------------------------------------------------------------------------------------------
# motion, per coarse class, measured on the scene state

def test_appearing_and_disappearing():
    for sc in scenes("appearing/appearing1"):
        (s,) = sc.solids
        assert s.alpha[0] < 0.05 and s.alpha[-1] > 0.99 and np.all(np.diff(s.alpha) >= -1e-9)
    for sc in scenes("appearing/appearing2"):
        assert len(sc.solids) >= 3
        assert all(np.allclose(s.alpha, sc.solids[0].alpha) for s in sc.solids), "not simultaneous"
        assert sc.solids[0].alpha[0] < 0.05 and sc.solids[0].alpha[-1] > 0.99
    for sc in scenes("appearing/appearing3"):
        windows = sorted(fade_window(s.alpha) for s in sc.solids)
        assert len(windows) >= 3
        for (s0, e0), (s1, e1) in zip(windows, windows[1:]):
            assert s1 >= e0, "one by one: the next starts after the previous is visible"
    for sc in scenes("appearing/appearing4"):
        present, new = named(sc, "present"), named(sc, "appearing")
        assert len(present) == 2 and len(new) == 2
        assert all(np.all(s.alpha == 1) for s in present)
        assert all(s.alpha[0] < 0.05 and s.alpha[-1] > 0.99 for s in new)
    for sc in scenes("disappearing/disappearing1"):
        (s,) = sc.solids
        assert s.alpha[0] > 0.99 and s.alpha[-1] < 0.05 and np.all(np.diff(s.alpha) <= 1e-9)
    for sc in scenes("disappearing/disappearing2"):
        assert len(sc.solids) >= 3 and all(np.allclose(s.alpha, sc.solids[0].alpha) for s in sc.solids)
    for sc in scenes("disappearing/disappearing3"):
        windows = sorted(fade_window(1 - s.alpha) for s in sc.solids)
        for (s0, e0), (s1, e1) in zip(windows, windows[1:]):
            assert s1 >= e0
    for sc in scenes("disappearing/disappearing4"):
        gone = [s for s in sc.solids if s.alpha[-1] < 0.05]
        stay = [s for s in sc.solids if s.alpha.min() == 1]
        assert len(gone) >= 2 and len(stay) >= 2 and len(gone) + len(stay) == len(sc.solids)


def _inside_frame(scene, p, margin=0.0):
    col, row, depth = scene.camera.project(p)
    w, h = scene.camera.width, scene.camera.height
    return depth > 0 and -margin * w <= col <= (1 + margin) * w and -margin * h <= row <= (1 + margin) * h


def test_arriving_and_departing():
    for sc in scenes("arriving/arriving1"):
        (s,) = sc.solids
        assert speed(s)[-3:].max() < 1e-3, "comes to rest"
        assert np.linalg.norm(s.pos[0] - s.pos[-1]) > 12
        assert _inside_frame(sc, s.pos[-1]) and not _inside_frame(sc, s.pos[0])
    for sc in scenes("departing/departing1"):
        (s,) = sc.solids
        assert speed(s)[:2].max() < 1e-3 and _inside_frame(sc, s.pos[0]) and not _inside_frame(sc, s.pos[-1])
    for sc in scenes("arriving/arriving2"):
        moving = [np.nonzero(speed(s) > 1e-3)[0] for s in sc.solids]
        assert len(moving) >= 2 and all(m[0] == moving[0][0] and m[-1] == moving[0][-1] for m in moving)
    for stem in ("arriving/arriving3", "departing/departing3"):
        for sc in scenes(stem):
            spans = sorted((m[0], m[-1]) for m in (np.nonzero(speed(s) > 1e-3)[0] for s in sc.solids))
            assert len(spans) >= 3 and all(b[0] > a[1] for a, b in zip(spans, spans[1:])), "one by one"
    for sc in scenes("arriving/arriving4"):
        present, (mover,) = named(sc, "present"), named(sc, "arriving")
        assert len(present) >= 3 and all(speed(s).max() == 0 for s in present)
        centre = np.mean([s.pos[0] for s in present], axis=0)
        assert np.linalg.norm(mover.pos[-1, :2] - centre[:2]) < 1.0, "comes to rest among them"
    for sc in scenes("arriving/arriving5"):
        still, mover = one(sc, "present"), one(sc, "arriving")
        assert speed(still).max() == 0 and np.linalg.norm(mover.pos[-1] - still.pos[-1]) < 4.5
    for sc in scenes("arriving/arriving6"):
        still, mover = one(sc, "present"), one(sc, "arriving")
        at_rest = speed(mover) < 1e-3
        d = np.linalg.norm(mover.pos - still.pos, axis=1)
        assert at_rest[int(0.4 * len(at_rest)):int(0.55 * len(at_rest))].all(), "pauses"
        assert d.min() < 4.5 and not _inside_frame(sc, mover.pos[-1]) and not _inside_frame(sc, mover.pos[0])
    for sc in scenes("departing/departing6"):
        still, mover = one(sc, "present"), one(sc, "departing")
        assert np.allclose(mover.pos[0], mover.pos[-1]) and not _inside_frame(sc, mover.pos[len(mover.pos) // 2])


def _peaks(h):
    return [h[i] for i in range(1, len(h) - 1) if h[i] > h[i - 1] and h[i] >= h[i + 1] and h[i] > 0.05]


def test_bouncing():
    for sc in scenes("bouncing/bouncing1", frames=240):
        (s,) = sc.solids
        h = lift_of(s)
        peaks = [h[0]] + _peaks(h)
        assert len(peaks) >= 4 and all(b < a * 0.75 for a, b in zip(peaks, peaks[1:])), "heights decay"
        assert h[-int(0.08 * len(h)):].max() < 1e-6, "eventually stops"
        assert np.ptp(s.pos[:, :2], axis=0).max() < 1e-9
    for sc in scenes("bouncing/bouncing6", frames=240):
        (s,) = sc.solids
        peaks = _peaks(lift_of(s))
        assert len(peaks) >= 2 and max(peaks) / min(peaks) < 1.1, "perpetual: same height"
        assert lift_of(s)[-10:].max() > 0.05 or lift_of(s)[-20:-10].max() > 0.05, "never stops"
    for stem, lo, hi in (("bouncing/bouncing2", 1.0, 1.3), ("bouncing/bouncing3", 2.5, 100)):
        for sc in scenes(stem, frames=240):
            starts = [lift_of(s).max() for s in sc.solids]
            assert len(starts) >= 3 and lo <= max(starts) / min(starts) <= hi, stem
            assert all(lift_of(s)[-5:].max() < 1e-6 for s in sc.solids)
    for sc in scenes("bouncing/bouncing4", frames=240):
        ball, wall = one(sc, "ball"), one(sc, "wall")
        assert wall.shape == "box" and speed(wall).max() == 0, "the wall is drawn"
        # how far the ball's footprint is from the wall's face, along the way from the ball's start to the wall
        way = wall.pos[0, :2] - ball.pos[0, :2]
        way /= np.linalg.norm(way)
        gap = (wall.pos[0, :2] - ball.pos[:, :2]) @ way - wall.half_size[0] - FOOTPRINT[ball.shape] * ball.scale
        hit = int(np.argmin(gap))
        assert -1e-6 < gap[hit] < 0.1 and lift_of(ball)[hit] > 0.5, "hits the wall in the air"
        assert np.all(np.diff(gap[:hit]) < 1e-9) and gap[-1] > 2.5, "towards the wall, then back from it"
        assert lift_of(ball)[-5:].max() < 1e-6 and speed(ball)[-3:].max() < 1e-3, "comes to rest on the ground"
        col = screen(sc, ball)[:, 0]
        assert np.ptp(col) > 0.3 * sc.camera.width, "a motion across the screen, not a shuffle in place"
    for sc in scenes("bouncing/bouncing5", frames=240):
        (s,) = sc.solids
        assert np.linalg.norm(s.pos[-1, :2] - s.pos[0, :2]) > 7 and len(_peaks(lift_of(s))) >= 3
    for stem, sign in (("bouncing/bouncing7", -1), ("bouncing/bouncing8", 1)):
        for sc in scenes(stem, frames=240):
            ball, steps = one(sc, "ball"), named(sc, "step")
            assert len(steps) >= 3 and all(s.shape == "box" and speed(s).max() == 0 for s in steps), "stairs drawn"
            h = lift_of(ball)
            lows = [i for i in range(1, len(h) - 1) if h[i] < h[i - 1] and h[i] <= h[i + 1]]
            landings = [h[0]] + [h[i] for i in lows] + [h[-1]]
            assert len(landings) >= 4 and np.all(sign * np.diff(landings) > -1e-6) and sign * (h[-1] - h[0]) > 2
            for i in [0, len(h) - 1]:  # from the top of the stairs to the ground, or back
                on = [s for s in steps if abs(_box_local(s, ball.pos[i])[0]) <= s.half_size[0]]
                assert len(on) == (1 if (i == 0) == (sign < 0) else 0), (stem, i)
            reach = FOOTPRINT[ball.shape] * ball.scale[0]
            for s in steps:  # wherever the ball's footprint is over a step, it is above the step's top
                over = np.abs([_box_local(s, p)[0] for p in ball.pos]) < s.half_size[0] + reach
                assert np.all(h[over] >= 2 * s.half_size[2] - 1e-6), (stem, s.name)
                assert np.isclose(h[over].min(), 2 * s.half_size[2], atol=0.15), ("lands on it", stem, s.name)


def _box_local(box, p):
    """A point's ground coordinates in a box's own frame (x: its half_size[0] axis)."""
    rel = np.asarray(p)[:2] - box.pos[0, :2]
    c, s = math.cos(box.yaw[0]), math.sin(box.yaw[0])
    return np.array([c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1]])


def _value(rgb):
    return np.max(rgb, axis=-1)


def test_changing_color():
    for sc in scenes("changing_color/changing_color1"):
        (s,) = sc.solids
        distinct = []
        for c in s.color:
            if all(np.abs(c - d).max() > 0.15 for d in distinct):
                distinct.append(c)
        assert len(distinct) >= 4 and np.ptp(s.pos, axis=0).max() == 0
    for sc in scenes("changing_color/changing_color2"):
        a, b = one(sc, "a"), one(sc, "b")
        assert np.allclose(a.color[-1], b.color[0]) and np.allclose(b.color[-1], a.color[0])
        assert np.abs(a.color[0] - b.color[0]).max() > 0.1
    for stem, down in (("changing_color/changing_color3", True), ("changing_color/changing_color4", False)):
        for sc in scenes(stem):
            v = _value(sc.solids[0].color)
            first, last = (v[0], v[-1]) if down else (v[-1], v[0])
            assert first > 0.85 and last < 0.2 and np.all((np.diff(v) <= 1e-9) if down else (np.diff(v) >= -1e-9))
    for sc in scenes("changing_color/changing_color5"):
        c = sc.solids[0].color
        assert np.allclose(c[0], c[-1]) and np.abs(c[len(c) // 2] - c[0]).max() > 0.1


def _shape_at(scene, frame, group=""):
    shapes = {s.shape for s in visible(scene, frame) if s.name.startswith(group)}
    assert len(shapes) == 1, shapes
    return shapes.pop()


def test_changing_shape():
    for stem, target in (("changing_shape/changing_shape1", "pyramid"), ("changing_shape/changing_shape2", "cube"),
                         ("changing_shape/changing_shape3", "sphere"), ("changing_shape/changing_shape4", "cylinder")):
        for sc in scenes(stem):
            assert _shape_at(sc, 0) != target and _shape_at(sc, -1) == target, stem
            pieces = sc.solids
            assert all(np.allclose(p.pos[:, :2], pieces[0].pos[:, :2]) for p in pieces), "in place"
            assert all(np.allclose(p.color, pieces[0].color) for p in pieces), "same colour"
    for sc in scenes("changing_shape/changing_shape5"):
        a0, b0 = _shape_at(sc, 0, "a:"), _shape_at(sc, 0, "b:")
        assert a0 != b0 and _shape_at(sc, -1, "a:") == b0 and _shape_at(sc, -1, "b:") == a0
    for sc in scenes("changing_shape/changing_shape6"):
        n = len(sc.solids[0].pos)
        mid = [_shape_at(sc, f) for f in range(n) if len(visible(sc, f)) == 1]
        assert _shape_at(sc, 0) == _shape_at(sc, -1) and len(set(mid)) == 2


def _visible_count(scene, frame):
    return len(visible(scene, frame))


def test_cloning():
    for stem, same_way in (("cloning/cloning1", True), ("cloning/cloning2", False)):
        for sc in scenes(stem):
            original, clone = one(sc, "original"), one(sc, "clone")
            assert _visible_count(sc, 0) == 1 and _visible_count(sc, -1) == 2
            assert clone.shape == original.shape and np.allclose(clone.color, original.color)
            t = int(np.argmax(clone.alpha > 0.5))
            assert np.linalg.norm(clone.pos[t] - original.pos[t]) < 0.5 * original.radius[t], "comes out of it"
            da, db = original.pos[-1] - original.pos[t], clone.pos[-1] - clone.pos[t]
            cos = da @ db / np.linalg.norm(da) / np.linalg.norm(db)
            assert (cos > 0.95) if same_way else (cos < -0.5), (stem, cos)
            assert np.linalg.norm(original.pos[-1] - clone.pos[-1]) > original.radius[-1] + clone.radius[-1]
    for stem, at_once in (("cloning/cloning3", False), ("cloning/cloning4", True)):
        for sc in scenes(stem):
            clones = named(sc, "clone")
            births = sorted(int(np.argmax(c.alpha > 0.5)) for c in clones)
            assert len(clones) >= 3 and _visible_count(sc, 0) == 1 and _visible_count(sc, -1) == len(clones) + 1
            assert (len(set(births)) == 1) if at_once else (len(set(births)) == len(births)), stem
    for sc in scenes("cloning/cloning5"):
        original, clone = one(sc, "original"), one(sc, "recoloured clone")
        assert _visible_count(sc, 0) == 1 and _visible_count(sc, -1) == 2 and clone.shape == original.shape
        assert np.allclose(original.color[-1], original.color[0])
        assert np.abs(clone.color[-1] - original.color[-1]).max() > 0.15


def test_expanding_and_shrinking():
    def ratio(s):
        return s.scale[-1] / s.scale[0]

    for sc in scenes("expanding/expanding1"):
        assert 1.3 < ratio(sc.solids[0]) < 2.0
    for sc in scenes("expanding/expanding2"):
        assert ratio(sc.solids[0]) > 2.5
    for sc in scenes("expanding/expanding3"):
        a, b = sc.solids
        assert a.shape != b.shape and np.isclose(a.scale[-1], b.scale[-1]) and ratio(a) > 1.5 and ratio(b) > 1.5
    for sc in scenes("expanding/expanding4"):
        a, b = sc.solids
        assert a.shape == b.shape and np.allclose(a.color, b.color) and np.isclose(a.scale[0], b.scale[0])
        assert max(a.scale[-1], b.scale[-1]) / min(a.scale[-1], b.scale[-1]) > 1.3
    for sc in scenes("shrinking/shrinking1"):
        assert 1 / 2.0 < ratio(sc.solids[0]) < 1 / 1.3
    for sc in scenes("shrinking/shrinking2"):
        assert ratio(sc.solids[0]) < 1 / 3.5
    for sc in scenes("shrinking/shrinking3"):
        a, b = sc.solids
        assert a.shape != b.shape and np.isclose(a.scale[-1], b.scale[-1]) and ratio(a) < 0.6 and ratio(b) < 0.6
    for sc in scenes("shrinking/shrinking4"):
        a, b = sc.solids
        assert a.shape != b.shape and max(a.scale[-1], b.scale[-1]) / min(a.scale[-1], b.scale[-1]) > 1.3
    for stem in ("expanding/expanding1", "shrinking/shrinking2"):
        for sc in scenes(stem):
            assert np.abs(lift_of(sc.solids[0])).max() < 1e-9, "stays on the ground while resizing"


def _deviation_from_chord(p):
    a, b = p[0], p[-1]
    d = (b - a) / np.linalg.norm(b - a)
    rel = p - a
    return np.linalg.norm(rel - np.outer(rel @ d, d), axis=1).max() / np.linalg.norm(b - a)


def test_falling_and_rising():
    for stem, down in (("falling/falling1", True), ("rising/rising1", False)):
        for sc in scenes(stem):
            (s,) = sc.solids
            h = lift_of(s)
            assert np.ptp(s.pos[:, :2], axis=0).max() < 1e-9, "straight"
            assert (h[0] > 5 and h[-1] < 1e-6) if down else (h[0] < 1e-6 and h[-1] > 5)
            assert np.all(np.diff(h) <= 1e-9) if down else np.all(np.diff(h) >= -1e-9)
    for stem, down in (("falling/falling2", True), ("rising/rising2", False)):
        for sc in scenes(stem, frames=120):
            (s,) = sc.solids
            h = lift_of(s)
            assert ((h[0] - h[-1]) if down else (h[-1] - h[0])) > 5, stem
            col = screen(sc, s)[:, 0]
            v = np.diff(col)
            corners = [0] + [i for i in range(1, len(v)) if v[i - 1] * v[i] < 0] + [len(col) - 1]
            legs = np.abs(np.diff(col[corners]))
            assert len(legs) >= 4 and legs.min() > 0.2 * sc.camera.width, ("every leg swings visibly", stem, legs)
    for stem in ("falling/falling3", "rising/rising3"):
        for sc in scenes(stem):
            (s,) = sc.solids
            assert _deviation_from_chord(s.pos) < 0.01 and np.linalg.norm(s.pos[-1, :2] - s.pos[0, :2]) > 4
    for stem in ("falling/falling4", "rising/rising4"):
        for sc in scenes(stem):
            (s,) = sc.solids
            on_screen = screen(sc, s)[:, :2] / sc.camera.width
            assert _deviation_from_chord(s.pos) > 0.25, "curved: the middle is a quarter of the chord off it"
            assert _deviation_from_chord(on_screen) * np.linalg.norm(on_screen[-1] - on_screen[0]) > 0.15, \
                "and on screen by more than 15% of the frame (rising3/4, falling3/4 differed by 10 px at 112 px)"


def _distance_to_path(points, path):
    """Distance of each point to the polyline through `path`."""
    a, b = path[:-1], path[1:]
    ab = b - a
    out = []
    for p in points:
        f = np.clip(np.einsum("ij,ij->i", p - a, ab) / np.maximum((ab * ab).sum(1), 1e-12), 0, 1)
        out.append(np.linalg.norm(a + ab * f[:, None] - p, axis=1).min())
    return np.array(out)


def _distance_to_line(points, a, b):
    d = (b - a) / np.linalg.norm(b - a)
    rel = points - a
    return np.linalg.norm(rel - np.outer(rel @ d, d), axis=1)


def test_following():
    for stem in ("following/following1", "following/following3"):
        for sc in scenes(stem, frames=120):
            leader = one(sc, "leader")
            followers = named(sc, "follower")
            assert len(followers) >= (2 if stem.endswith("3") else 1)
            for f in followers:
                offset = f.pos - leader.pos
                assert np.allclose(offset, offset[0], atol=1e-6), "keeps the same distance, same line"
                assert np.linalg.norm(offset[0]) > f.radius[0] + leader.radius[0] - 0.5
                assert offset[0] @ (leader.pos[-1] - leader.pos[0]) < 0, "behind the leader"
    for sc in scenes("following/following4", frames=120):
        leader, follower = one(sc, "leader"), one(sc, "follower")
        dist = _distance_to_path(follower.pos[:, :2], leader.pos[:, :2])
        # once the follower is on the leader's path (it starts behind the leader's start) it stays on it
        reached = int(np.argmax(dist < 0.02))
        assert 0 < reached < 0.75 * len(dist) and dist[reached:].max() < 0.02
        heading = np.degrees(np.unwrap(np.arctan2(*np.diff(leader.pos[:, :2], axis=0).T[::-1])))
        assert np.ptp(heading) > 60, "the path is not straight"
        gap = np.linalg.norm(leader.pos - follower.pos, axis=1)
        assert gap.min() > footprint_gap(leader, follower, extra=0.0), "never runs into the leader"
    for sc in scenes("following/following2", frames=120):
        leader, follower = one(sc, "leader"), one(sc, "follower")
        off_line = _distance_to_line(follower.pos[:, :2], leader.pos[0, :2], leader.pos[-1, :2])
        n = len(off_line)
        assert off_line[: n // 3].max() < 1e-6 and off_line[-1] > 2.0, "follows on the line, then leaves it"
    for sc in scenes("following/following5", frames=120):
        leader, follower = one(sc, "leader"), one(sc, "follower")
        dist = _distance_to_path(follower.pos[:, :2], leader.pos[:, :2])
        n = len(dist)
        assert dist[: n // 4].min() > 2.0 and dist[-n // 4:].max() < 0.15, "off the path, then on it"
        assert speed(follower)[: n // 4].max() == 0, "does not follow at first"


def test_merging():
    for sc in scenes("merging/merging1"):
        a, b = one(sc, "a"), one(sc, "b")
        assert (a.pos[-1] - a.pos[0]) @ (b.pos[-1] - b.pos[0]) < 0, "towards each other"
        assert np.allclose(a.pos[-1], b.pos[-1]) and _visible_count(sc, -1) == 1 and _visible_count(sc, 0) == 2
        assert a.scale[-1] == a.scale[0] and a.shape == b.shape and np.allclose(a.color, b.color)
    for sc in scenes("merging/merging2"):
        slow, fast = one(sc, "slower"), one(sc, "faster")
        vs, vf = slow.pos[1] - slow.pos[0], fast.pos[1] - fast.pos[0]
        assert vs @ vf > 0 and np.linalg.norm(vf) > 1.5 * np.linalg.norm(vs), "same direction, faster"
        assert _visible_count(sc, -1) == 1 and np.allclose(slow.pos[-1], fast.pos[-1])
        assert slow.scale[-1] == slow.scale[0]
    for stem, groups in (("merging/merging3", 1), ("merging/merging4", 2)):
        for sc in scenes(stem):
            assert _visible_count(sc, 0) >= 2 * groups + (1 if groups == 1 else 0)
            last = visible(sc, -1)
            assert len(last) == groups and all(s.scale[-1] > 1.2 * s.scale[0] for s in last), stem


def test_moving_in_a_path():
    def moving_fraction(s):
        v = speed(s)
        return np.mean(v > 0.05 * v.max())

    for sc in scenes("moving_in_a_path/moving_in_a_path1", frames=120):
        (s,) = sc.solids
        assert moving_fraction(s) > 0.45 and speed(s)[-30:].max() < 1e-6, "slow, then stays for a while"
    for sc in scenes("moving_in_a_path/moving_in_a_path2", frames=120):
        (s,) = sc.solids
        assert moving_fraction(s) < 0.2 and speed(s)[-60:].max() < 1e-6, "quick, then stays"
    for sc in scenes("moving_in_a_path/moving_in_a_path3", frames=120):
        (s,) = sc.solids
        far = np.linalg.norm(s.pos - s.pos[0], axis=1)
        assert np.allclose(s.pos[-1], s.pos[0]) and far.max() > 4
    for sc in scenes("moving_in_a_path/moving_in_a_path4", frames=120):
        a, b = one(sc, "a"), one(sc, "b")
        assert np.allclose(a.pos[-1, :2], b.pos[0, :2], atol=1e-6) and np.allclose(b.pos[-1, :2], a.pos[0, :2],
                                                                                  atol=1e-6)
        assert min_gap(a, b) > 0
    for stem, sign in (("moving_in_a_path/moving_in_a_path5", 1), ("moving_in_a_path/moving_in_a_path6", -1)):
        for sc in scenes(stem):
            col = screen(sc, sc.solids[0])[:, 0]
            assert sign * (col[-1] - col[0]) > 0.4 * sc.camera.width and np.all(sign * np.diff(col) >= -1e-6), stem


def test_not_colliding():
    for stem in [s for s in CLASSES if s.startswith("not_colliding/")]:
        for sc in scenes(stem, frames=130):
            for i, a in enumerate(sc.solids):
                for b in sc.solids[i + 1:]:
                    assert min_gap(a, b) > 0, stem
    for sc in scenes("not_colliding/not_colliding1", frames=130):
        a, b = sc.solids
        d = np.linalg.norm(a.pos - b.pos, axis=1)
        assert 0.2 * len(d) < np.argmin(d) < 0.8 * len(d) and d[0] > d.min() + 5, "towards each other, then past"
    for sc in scenes("not_colliding/not_colliding2", frames=130):
        still, mover = one(sc, "stationary"), one(sc, "mover")
        d = np.linalg.norm(mover.pos - still.pos, axis=1)
        assert speed(still).max() == 0 and d[0] > d.min() + 2 and d.min() < 4.5
    for sc in scenes("not_colliding/not_colliding3", frames=130):
        assert len(sc.solids) >= 3
        centre = np.mean([s.pos[0] for s in sc.solids], axis=0)
        for s in sc.solids:
            d = np.linalg.norm(s.pos - centre, axis=1)
            assert d[0] > d.min() + 3, "they move towards each other"
    for sc in scenes("not_colliding/not_colliding4", frames=130):
        z = np.array([[1, 0, 0], [0, 1, 0]], float)
        wa = np.diff(angle_about(one(sc, "clockwise").pos, np.zeros(3), z))
        wb = np.diff(angle_about(one(sc, "counterclockwise").pos, np.zeros(3), z))
        # the stage may be turned by the camera, never mirrored: directions are preserved
        assert np.all(wa < 0) and np.all(wb > 0), "opposite directions on circles"
    for sc in scenes("not_colliding/not_colliding5", frames=130):
        still, (mover,) = named(sc, "stationary"), named(sc, "mover")
        assert len(still) >= 3 and all(speed(s).max() == 0 for s in still)


def _mask(scene, solid, frame):
    """Pixels covered by one solid alone in one frame (no shadows: only its silhouette changes pixels)."""
    light = Light(scene.light.direction, shadow=0.0)
    alone = Solid(solid.shape, solid.color, solid.pos, solid.scale, np.ones_like(solid.alpha), solid.yaw)
    hidden = Solid(solid.shape, solid.color, solid.pos, solid.scale, np.zeros_like(solid.alpha), solid.yaw)
    f = [frame % len(solid.pos)]
    with_it = render_frames([alone], scene.camera, scene.background, light, f).astype(int)
    without = render_frames([hidden], scene.camera, scene.background, light, f).astype(int)
    return np.abs(with_it - without).sum(-1)[0] > 0


def _occludes(scene, front, back, frame):
    """(fraction of the back solid's silhouette covered by the front one, front is nearer the camera)."""
    mf, mb = _mask(scene, front, frame), _mask(scene, back, frame)
    df = np.linalg.norm(front.pos[frame] - scene.camera.position)
    db = np.linalg.norm(back.pos[frame] - scene.camera.position)
    return (mf & mb).sum() / max(mb.sum(), 1), df < db


def test_occlusion_depth_order():
    for sc in (synta.build_scene("occlusion/occlusion1", v, i, frames=60, size=64) for v in synta.VIEWS
               for i in (1, 2, 3)):
        big, small = one(sc, "big"), one(sc, "small")
        covered, nearer = _occludes(sc, small, big, -1)
        assert nearer and 0 < covered < 0.3 and big.scale[0] > 2.5 * small.scale[0], "barely, from in front"
        assert _occludes(sc, small, big, 0)[0] == 0
    for sc in (synta.build_scene("occlusion/occlusion2", v, i, frames=60, size=64) for v in synta.VIEWS
               for i in (1, 2, 3)):
        big, small = one(sc, "big"), one(sc, "small")
        covered, nearer = _occludes(sc, big, small, -1)
        assert nearer and covered > 0.6, ("mostly or fully", covered)
        assert _occludes(sc, big, small, 0)[0] == 0
    for sc in (synta.build_scene("occlusion/occlusion3", v, i, frames=120, size=64) for v in synta.VIEWS
               for i in (1, 2, 3)):
        front, back = one(sc, "occluder"), one(sc, "occluded")
        covered0, nearer0 = _occludes(sc, front, back, 0)
        covered1, nearer1 = _occludes(sc, back, front, -1)
        assert covered0 > 0.05 and nearer0 and covered1 > 0.05 and nearer1, "in front, then behind"
        ground = np.linalg.norm(front.pos[:, :2] - back.pos[:, :2], axis=1)
        assert speed(back).max() == 0 and ground.min() > footprint_gap(front, back, extra=0.1), "goes around it"
    for sc in (synta.build_scene("occlusion/occlusion4", v, i, frames=120, size=64) for v in synta.VIEWS
               for i in (1, 2, 3)):
        fronts, backs = named(sc, "front"), named(sc, "back")
        assert len(fronts) == 2 and len(backs) == 2
        for f, b in zip(fronts, backs):
            covered0, nearer0 = _occludes(sc, f, b, 0)
            covered1, nearer1 = _occludes(sc, b, f, -1)
            assert covered0 > 0.05 and nearer0 and covered1 > 0.05 and nearer1, "partial occluders go behind"


def test_orbiting_direction_and_plane():
    up = np.array([[1, 0, 0], [0, 1, 0]], float)  # counter-clockwise seen from above = positive angle
    for stem, sign in (("orbiting/orbiting1", -1), ("orbiting/orbiting2", 1)):
        for sc in scenes(stem, frames=120):
            centre, sat = one(sc, "centre"), one(sc, "satellite")
            w = np.diff(angle_about(sat.pos, centre.pos, up))
            assert np.all(sign * w > 0) and abs(w.sum()) > 1.5 * math.pi, stem
            assert np.ptp(sat.pos[:, 2]) < 1e-9, "horizontal plane"
            r = np.linalg.norm(sat.pos - centre.pos, axis=1)
            assert np.ptp(r) < 1e-6 and r[0] > sat.radius[0] + centre.radius[0]
    for sc in scenes("orbiting/orbiting3", frames=120):
        centre, sat = one(sc, "centre"), one(sc, "satellite")
        w = np.diff(angle_about(sat.pos, centre.pos, up))
        n = len(w)
        assert np.all(w[: int(0.4 * n)] < 0) and np.all(w[int(0.6 * n):] > 0), "clockwise, then counter-clockwise"
    for sc in scenes("orbiting/orbiting4", frames=120):
        a, b = one(sc, "first"), one(sc, "second")
        n = len(a.pos)
        first, second = slice(0, int(0.4 * n)), slice(int(0.6 * n), n)
        assert speed(b)[first].max() == 0 and np.all(np.diff(angle_about(a.pos[first], b.pos[0], up)) < 0)
        assert speed(a)[second].max() == 0 and np.all(np.diff(angle_about(b.pos[second], a.pos[-1], up)) < 0)
    for stem, sign in (("orbiting/orbiting5", -1), ("orbiting/orbiting6", 1)):
        for sc in scenes(stem, frames=120):
            centre, sat = one(sc, "centre"), one(sc, "satellite")
            cam = sc.camera
            # seen by the camera: x = screen right, y = screen up
            w = np.diff(angle_about(sat.pos, centre.pos, np.stack([cam.right, cam.up])))
            assert np.all(sign * w > 0), stem
            r = np.linalg.norm(sat.pos - centre.pos, axis=1)
            assert np.ptp(sat.pos[:, 2]) > 1.8 * r[0], "vertical plane"
            assert (sat.pos[:, 2] - sat.radius).min() > 0, "above the ground"


def test_shooting_projectile():
    for sc in scenes("shooting_projectile/shooting_projectile1"):
        (s,) = sc.solids
        mid = (s.pos[0, :2] + s.pos[-1, :2]) / 2
        a, b = s.pos[0, :2] - mid, s.pos[-1, :2] - mid
        right = sc.camera.right[:2] / np.linalg.norm(sc.camera.right[:2])
        ahead = np.array([-right[1], right[0]])  # away from the camera, along the ground
        assert np.allclose(a, -b) and abs(abs(a @ right) - abs(a @ ahead)) < 1e-6 and np.linalg.norm(a) > 5
        assert a @ ahead < 0, "from the near corner of the stage to the far one"
        h = lift_of(s)
        assert h.max() > 2.5 and h[0] < 1e-9 and h[-1] < 1e-9
    for stem, sign in (("shooting_projectile/shooting_projectile2", -1), ("shooting_projectile/shooting_projectile3", 1)):
        for sc in scenes(stem):
            col = screen(sc, sc.solids[0])[:, 0]
            assert sign * (col[-1] - col[0]) > 0.3 * sc.camera.width, stem
    for sc in scenes("shooting_projectile/shooting_projectile4", frames=90):
        a, b = one(sc, "first"), one(sc, "second")
        assert np.allclose(a.pos[0, :2], b.pos[0, :2]) and np.linalg.norm(a.pos[-1, :2] - b.pos[-1, :2]) < 3.0
        assert np.linalg.norm(a.pos[-1, :2] - a.pos[0, :2]) > 10
        la, lb = int(np.argmax(speed(a) > 0)), int(np.argmax(speed(b) > 0))
        assert lb > la, "two shots"
    for sc in scenes("shooting_projectile/shooting_projectile5", frames=120):
        a, b = one(sc, "a"), one(sc, "b")
        assert np.allclose(a.pos[0, :2], b.pos[-1, :2]) and np.allclose(b.pos[0, :2], a.pos[-1, :2])
        assert min_gap(a, b) > 0


def test_teleporting_has_no_intermediate_positions():
    for stem in [s for s in CLASSES if s.startswith("teleporting/")]:
        for sc in scenes(stem, frames=120):
            jumped = 0
            for s in sc.solids:
                shown = s.pos[s.alpha > 0]
                at_start = np.linalg.norm(shown - s.pos[0], axis=1) < 1e-9
                at_end = np.linalg.norm(shown - s.pos[-1], axis=1) < 1e-9
                assert np.all(at_start | at_end), stem
                if np.linalg.norm(s.pos[-1] - s.pos[0]) > 3:
                    jumped += 1
                    assert s.alpha.min() == 0 and s.alpha[0] == 1 and s.alpha[-1] == 1
            expected = {"teleporting1": 1, "teleporting2": 1, "teleporting3": 2, "teleporting4": 4, "teleporting5": 1}
            assert jumped == expected[stem.split("/")[1]], stem
    for sc in scenes("teleporting/teleporting3", frames=120):
        a, b = sc.solids
        assert np.allclose(a.pos[0, :2], b.pos[-1, :2]) and np.allclose(b.pos[0, :2], a.pos[-1, :2])
    for sc in scenes("teleporting/teleporting4", frames=120):
        starts = sorted(map(tuple, np.round([s.pos[0, :2] for s in sc.solids], 6)))
        ends = sorted(map(tuple, np.round([s.pos[-1, :2] for s in sc.solids], 6)))
        assert starts == ends and len(set(starts)) == 4, "the corners are permuted"
    for sc in scenes("teleporting/teleporting2", frames=120):
        assert speed(one(sc, "centre")).max() == 0


# ----------------------------------------------------------------------------------------------------------------
# sibling classes look like their names: each is told apart from its siblings by what the camera sees of its objects

# The smallest difference that counts, per feature: 11 px of a 112 px frame for positions and path shapes, a quarter
# more or less for sizes, a quarter of full opacity, a third of an object for counts, 15% for colours.
SEEN_FLOOR = {"path": 0.1, "apart": 0.1, "size": 0.25, "relsize": 0.25, "alpha": 0.25, "recolour": 0.15,
              "lighten": 0.15, "side": 0.1, "bend": 0.1, "spread": 0.1, "count": 0.3, "changing": 0.3}


def _resample(x, steps):
    """x (frames, ...) linearly interpolated at `steps` instants from the first frame to the last."""
    x = np.asarray(x, np.float64)
    at = np.linspace(0, len(x) - 1, steps)
    i = np.minimum(at.astype(int), len(x) - 2)
    f = (at - i).reshape((steps,) + (1,) * (x.ndim - 1))
    return x[i] * (1 - f) + x[i + 1] * f


def _hold(x, seen):
    """x where seen (> 0.5); elsewhere its value at the nearest frame where it is seen."""
    frames = np.nonzero(seen > 0.5)[0]
    if len(frames) == 0:
        return x
    return x[frames[np.abs(np.arange(len(x))[:, None] - frames[None]).argmin(1)]]


def _bulge(p):
    """Signed area a screen path sweeps about its start (counter-clockwise positive) over the length travelled so
    far: the mean sideways bulge of the path, a length (0 on a straight path, about r/2 round a circle of radius r)."""
    r = (p - p[0]) * np.array([1, -1])
    area = np.r_[0, np.cumsum(0.5 * (r[:-1, 0] * r[1:, 1] - r[:-1, 1] * r[1:, 0]))]
    travelled = np.r_[0, np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))]
    return area / np.maximum(travelled, 0.05)


def _seen(scene, steps=16, objects=4):
    """What the camera sees of a scene's objects (the scenery left out) at `steps` instants: for each of the first
    `objects` solids of the program, where it stands on screen relative to its start (positions in frame widths),
    its distance from the first solid, its size relative to its start and to the first solid, its opacity (out of the
    frame counts as invisible), its colour change; for the scene, the main mover's sideways bulge and the spread of
    its path, how many objects are seen and how many change. Mirror images share one description (the main mover
    starts left of the middle of its path); its left/right sense is kept apart ("side")."""
    cam = scene.camera
    P, R, A, C, full = [], [], [], [], []
    for s in (s for s in scene.solids if s.shape != "box"):
        height = HALF_HEIGHT[s.shape] * s.scale
        col, row, depth = cam.project(s.pos - np.outer(height, [0, 0, 1])).T  # where it stands
        xy = np.column_stack([col, row]) / cam.width - 0.5
        seen = s.alpha * (depth > 0.1) * (np.abs(xy) <= 0.5).all(1)
        xy = _hold(xy, seen)
        full.append(xy)
        P.append(_resample(xy, steps))
        R.append(_resample(_hold(height / np.maximum(depth, 0.1) / (2 * cam.half_w), seen), steps))
        A.append(_resample(seen, steps))
        C.append(_resample(s.color, steps))
    P, R, A, C = map(np.array, (P, R, A, C))
    moved = np.linalg.norm(np.diff(P, axis=1), axis=2) * (np.minimum(A[:, 1:], A[:, :-1]) > 0.5)
    m = int(np.argmax(moved.sum(1)))
    mirror = np.array([1.0 if P[m, 0, 0] <= P[m, :, 0].mean() else -1.0, 1.0])
    per_object = {"path": [], "apart": [], "size": [], "relsize": [], "alpha": [], "recolour": [], "lighten": []}
    for j in range(min(objects, len(P))):
        per_object["path"].append(((P[j] - P[j, 0]) * mirror).ravel())
        per_object["apart"].append(np.linalg.norm(P[j] - P[0], axis=1))
        per_object["size"].append(np.log(R[j] / R[j, 0]))
        per_object["relsize"].append(np.log(R[j] / R[0])[[0, steps // 2, -1]])
        per_object["alpha"].append(A[j])
        per_object["recolour"].append(np.linalg.norm(C[j] - C[j, 0], axis=1))
        per_object["lighten"].append(C[j].max(1) - C[j, 0].max())
    features = {}
    for name, parts in per_object.items():  # absent objects: zeros
        features[name] = np.concatenate(parts + [np.zeros_like(parts[0])] * (objects - len(parts)))
    changing = (moved > 0.004) | (np.abs(np.diff(A, axis=1)) > 0.01) | (np.abs(np.diff(np.log(R), axis=1)) > 0.01) \
        | (np.abs(np.diff(C, axis=1)).max(2) > 0.01)
    features.update(side=P[m, -1:, 0] - P[m, :1, 0], bend=_resample(_bulge(full[m] * mirror), steps),
                    spread=P[m].std(0), count=A.sum(0), changing=np.r_[0, changing.sum(0)])
    return features


def _nearest_centroid(features, labels, train):
    """The label of every row: the nearest class mean, in units of that class's own spread over the training rows,
    each feature's spread floored at SEEN_FLOOR (a diagonal Gaussian per class)."""
    X = np.concatenate([features[g] for g in SEEN_FLOOR], 1)
    floor = np.concatenate([np.full(features[g].shape[1], f) for g, f in SEEN_FLOOR.items()])
    names = sorted(set(labels))
    scores = []
    for name in names:
        rows = X[train & (labels == name)]
        spread = np.sqrt(rows.var(0) + floor ** 2)
        scores.append((((X - rows.mean(0)) / spread) ** 2 + 2 * np.log(spread / floor)).sum(1))
    return np.array(names)[np.argmin(scores, axis=0)]


def test_sibling_classes_are_told_apart_by_what_the_camera_sees():
    """Per coarse class, a nearest-centroid classifier on the scene state as the camera sees it (_seen), fit on the
    odd video ids and tested on the even ones, over both views and both profiles (small: 32 frames, 112 px; full: the
    official frame counts, 224 px), names >= 98% of the fine classes. Appearance is shared, so no set-specific shape
    tells the classes apart. Not for changing shape: its siblings differ in the shape they become
    (test_changing_shape)."""
    table = synta.fine_classes()
    failures = {}
    for coarse in sorted({stem.split("/")[0] for stem in table} - {"changing_shape"}):
        rows, labels, train = [], [], []
        for stem in (s for s in table if s.startswith(coarse + "/")):
            for i in range(1, 13):
                frames, size = (32, 112) if i % 4 in (1, 2) else (None, 224)  # both profiles in train and test
                for view in synta.VIEWS:
                    scene = synta.build_scene(stem, view, i, frames=frames, size=size, appearance="shared")
                    rows.append(_seen(scene))
                    labels.append(stem.split("/")[1])
                    train.append(i % 2 == 1)
        features = {g: np.array([r[g] for r in rows]) for g in SEEN_FLOOR}
        labels, train = np.array(labels), np.array(train)
        predicted = _nearest_centroid(features, labels, train)
        test = ~train
        accuracy = float(np.mean(predicted[test] == labels[test]))
        if accuracy < 0.98:
            confused = Counter(f"{a}->{b}" for a, b in zip(labels[test], predicted[test]) if a != b)
            failures[coarse] = (round(accuracy, 3), dict(confused))
    assert not failures, failures


# ----------------------------------------------------------------------------------------------------------------
# appearance, determinism, layout

def test_coupled_and_shared_appearance_pools():
    set_of = {stem: c.set for stem, c in synta.fine_classes().items()}
    shapes = {("coupled", 1): set(), ("coupled", 2): set(), ("shared", 1): set(), ("shared", 2): set()}
    shared_families = {1: set(), 2: set()}
    for stem in list(CLASSES)[::3]:
        for i in range(1, 11):
            for mode in synta.APPEARANCES:
                sc = synta.build_scene(stem, "regular", i, frames=4, size=16, appearance=mode)
                shapes[(mode, set_of[stem])] |= {s.shape for s in sc.solids if s.shape != "box"}  # not scenery
                family = sc.background.texture
                assert family % 10 == (i - 1) % 10  # val ids 31.. reuse the backgrounds of train ids 1..
                if mode == "coupled":
                    assert family in synta.SET_TEXTURES[set_of[stem]]
                else:
                    shared_families[set_of[stem]].add(family)
    assert shared_families[1] == shared_families[2] == set(range(20))
    # named target shapes (changes into pyramid / sphere ...) are the only cross-set shapes allowed in coupled mode
    assert shapes[("coupled", 1)] - {"sphere", "cylinder"} <= set(synta.SET_SHAPES[1])
    assert shapes[("coupled", 2)] - {"cube", "pyramid"} <= set(synta.SET_SHAPES[2])
    assert shapes[("shared", 1)] == set(synta.SHAPES) and shapes[("shared", 2)] == set(synta.SHAPES)
    # the same seed gives the same motion and colours in both modes: only the look changes (classes whose
    # clearances depend on the solids' sizes keep their timings and directions but not their exact distances)
    for stem in ("moving_in_a_path/moving_in_a_path3", "teleporting/teleporting4", "appearing/appearing3"):
        a = synta.build_scene(stem, "front", 7, frames=20, appearance="coupled")
        b = synta.build_scene(stem, "front", 7, frames=20, appearance="shared")
        assert [s.shape for s in a.solids] != [s.shape for s in b.solids]
        for sa, sb in zip(a.solids, b.solids):
            assert np.allclose(sa.color, sb.color) and np.allclose(sa.alpha, sb.alpha)
            assert np.allclose(sa.pos[:, :2], sb.pos[:, :2])


def test_set_backgrounds_are_disjoint_textures():
    cam = Camera(np.array([0.0, -12, 9]), np.zeros(3), 24, 24)
    light = Light(np.array([0.3, -0.4, 0.866]))
    means = []
    for k in range(20):
        bg = render_background(cam, Background(k), light)
        means.append(bg["albedo"])
    for i in range(20):
        for j in range(i + 1, 20):
            assert np.abs(means[i] - means[j]).mean() > 0.02, (i, j)


def test_names_layout_manifest_and_reuse(tmp_path):
    out = tmp_path / "synta"
    summary = synta.generate(out, size=32, frames=6, train_per_view=2, val_per_view=1, classes=["bouncing1", "rising"],
                             workers=1)
    stems = ["bouncing/bouncing1"] + [s for s in CLASSES if s.startswith("rising/")]
    expected = {f"{stem}{v}_id_{i}.mp4" for stem in stems for v in ("", "_front") for i in (1, 2, 31)}
    found = {str(p.relative_to(out)) for p in out.glob("*/*.mp4")}
    assert found == expected and summary["rendered"] == len(expected) == summary["videos"]
    manifest = json.loads((out / synta.MANIFEST).read_text())
    assert manifest["options"]["frames"] == 6 and manifest["count"] == len(expected)
    frames = read_mp4(out / "bouncing/bouncing1_front_id_31.mp4")
    assert frames.shape == (6, 32, 32, 3)
    import av
    with av.open(str(out / "rising/rising2_id_1.mp4")) as c:
        st = c.streams.video[0]
        assert st.codec_context.name == "h264" and st.format.name == "yuv420p" and st.average_rate == 24
    again = synta.generate(out, size=32, frames=6, train_per_view=2, val_per_view=1,
                           classes=["bouncing1", "rising"], workers=1)
    assert again["rendered"] == 0 and again["reused"] == len(expected)
    (out / "rising/rising3_front_id_2.mp4").unlink()
    more = synta.generate(out, size=32, frames=6, train_per_view=3, val_per_view=1, classes=["rising3"], workers=1)
    assert more["rendered"] == 3  # the deleted one and the new id 3 of both views
    with pytest.raises(SystemExit, match="^error: .*other options"):
        synta.generate(out, size=48, frames=6, train_per_view=1, val_per_view=0, classes=["rising3"], workers=1)


def test_a_folder_of_an_older_generator_version_is_refused_with_the_choice(tmp_path, monkeypatch):
    """Videos of another generator version are never mixed with new ones or silently reused: the user is told how to
    render them anew or keep them; the main job (python train.py) stops with that one line before training."""
    import train

    out = tmp_path / "cache" / "synta_small_coupled"
    options = synta._content_options((112, 112), 32, 1.0, 0, "coupled")
    out.mkdir(parents=True)
    (out / synta.MANIFEST).write_text(json.dumps({"options": dict(options, version=synta.GENERATOR_VERSION - 1)}))
    expected = (f"^error: {out} holds videos of Syn-TA generator version {synta.GENERATOR_VERSION - 1} and this is "
                f"version {synta.GENERATOR_VERSION} .*delete the folder.*to keep it, train on its split lists")
    with pytest.raises(SystemExit, match=expected):
        synta.generate(out, **synta.PROFILES["small"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=expected.replace(str(out), "cache/synta_small_coupled")):
        train.main([])
    assert not (tmp_path / "runs").exists() and list(out.iterdir()) == [out / synta.MANIFEST]
    summary = synta.generate(out, size=16, frames=2, train_per_view=1, val_per_view=0, classes=["rising1"],
                             overwrite=True, workers=1)
    assert summary["rendered"] == 2
    assert json.loads((out / synta.MANIFEST).read_text())["options"]["version"] == synta.GENERATOR_VERSION


def test_same_seed_same_bytes_any_worker_count_and_ids_differ(tmp_path):
    kw = dict(size=32, frames=5, train_per_view=2, val_per_view=0, classes=["orbiting1", "merging2"], seed=3)
    synta.generate(tmp_path / "a", workers=1, **kw)
    synta.generate(tmp_path / "b", workers=2, **kw)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").glob("*/*.mp4"))
    assert len(files) == 8
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    one_, two = read_mp4(tmp_path / "a/orbiting/orbiting1_id_1.mp4"), read_mp4(tmp_path / "a/orbiting/orbiting1_id_2.mp4")
    assert np.abs(one_.astype(int) - two).mean() > 5
    other_seed = synta.build_scene("orbiting/orbiting1", "regular", 1, seed=4, frames=5, size=32)
    same_seed = synta.build_scene("orbiting/orbiting1", "regular", 1, seed=3, frames=5, size=32)
    assert not np.allclose(other_seed.solids[1].pos, same_seed.solids[1].pos)


def test_official_split_lists_use_our_names_and_ids():
    splits = SHARED / "upstream" / "dataset_splits" / "synta" / "fine_classes"
    if not splits.is_dir():
        pytest.skip("the official Syn-TA split lists are not present")
    table = synta.fine_classes()
    for part, ids in (("train", range(1, 31)), ("val", range(31, 51))):
        for set_id in (1, 2):
            rows = (splits / f"{part}_set{set_id}_fine.txt").read_text().split("\n")
            ours = [f"{synta.video_path(stem, view, i)} {c.fine_id}"
                    for stem, c in table.items() if c.set == set_id
                    for i in ids for view in synta.VIEWS]
            assert rows == ours, (part, set_id)
    assert synta.video_ids(30, 20) == list(range(1, 51))
    assert synta.video_ids(6, 4) == [1, 2, 3, 4, 5, 6, 31, 32, 33, 34]


def test_sheet_index_lists_every_class_with_its_staging(tmp_path):
    index = synta.sheet_index(tmp_path).read_text()
    rows = [line for line in index.splitlines() if line.startswith("| `")]
    assert len(rows) == 100 and all(f"| `{stem}` |" in index for stem in CLASSES)
    assert sum("*(view-relative)*" in row for row in rows) == len(synta.VIEW_RELATIVE)
    assert "| `bouncing/bouncing4` | 2 | Single object imitating the motion of bouncing against a wall" in index


def test_renderer_draws_object_and_its_shadow():
    n = 2
    sphere = Solid("sphere", np.tile([0.9, 0.1, 0.1], (n, 1)), np.array([[0, 0, 3.0], [0, 0, 3.0]]), np.ones(n),
                   np.array([1.0, 0.0]), np.zeros(n))
    cam = Camera(np.array([0.0, -14, 8]), np.array([0, 0, 1.5]), 64, 64)
    light = Light(np.array([0.0, 0.0, 1.0]))  # sun straight above: the shadow is right below the sphere
    frames = render_frames([sphere], cam, Background(0, {"scale": 100.0}), light)
    col, row, _ = cam.project(np.array([0, 0, 3.0]))
    frames = frames.astype(int)
    assert frames[0, int(row), int(col), 1] < frames[1, int(row), int(col), 1] - 60, "red sphere drawn (frame 0)"
    col, row, _ = cam.project(np.array([0, 0, 0.0]))
    assert frames[0, int(row), int(col)].sum() < 0.7 * frames[1, int(row), int(col)].sum(), "shadow below it"


def test_user_mistakes_are_one_line_errors(tmp_path):
    bad = [dict(size=33), dict(size=8), dict(frames=1), dict(appearance="mixed"), dict(classes=["jumping"]),
           dict(train_per_view=31), dict(val_per_view=-1), dict(workers=0), dict(train_per_view=0, val_per_view=0)]
    for kw in bad:
        with pytest.raises(SystemExit, match="^error: "):
            synta.generate(tmp_path / "x", **kw)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit, match="^error: cannot write"):
        synta.generate(blocker / "out", size=16, frames=2, train_per_view=1, val_per_view=0, classes=["rising1"])
    for argv in (["generate", "--out", str(tmp_path / "y"), "--size", "abc"], ["generate"], ["nope"],
                 ["sheet", "--coarse", "jumping", "--out", str(tmp_path)]):
        with pytest.raises(SystemExit, match="^error: "):
            synta.main(argv)
