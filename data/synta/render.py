"""A small CPU ray caster for the Syn-TA generator (data/synta/generator.py).

It draws shaded primitive solids over a textured ground plane (regular view) or in front of a textured vertical
backdrop (front view), lit by one directional light, with cast shadows. Everything is vectorised with numpy over the
pixels and frames of a clip: a camera is static during a clip, so the background (ray hits, texture, diffuse term) is
computed once per video; objects are found per frame by a bounding-sphere test over all (frame, pixel) rays, and only
the rays that pass that test are intersected exactly, in the object's own coordinates.

World coordinates: z up, ground plane z = 0, lengths in Blender units (a solid of scale 1 is 2 units tall, like
Blender's default primitives). Also here: an H.264 writer (PyAV), a PNG writer (zlib) and a 5x7 bitmap font for
captions, so nothing beyond numpy and av is needed.
"""
import math
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

SHAPES = ("cube", "cone", "pyramid", "prism", "sphere", "cylinder", "torus", "capsule")
TORUS_MAJOR, TORUS_MINOR = 0.75, 0.35
CAPSULE_RADIUS, CAPSULE_HALF_SEGMENT = 0.6, 0.4
# Height of a solid's centre above the ground when it rests there, at scale 1 (its local z extent is -h..h).
HALF_HEIGHT = {s: 1.0 for s in SHAPES} | {"torus": TORUS_MAJOR + TORUS_MINOR}
# Radius of a sphere around the solid's centre that contains it, at scale 1.
BOUND_RADIUS = {"cube": math.sqrt(3), "cone": math.sqrt(2), "pyramid": math.sqrt(2), "prism": math.sqrt(2),
                "sphere": 1.0, "cylinder": math.sqrt(2), "torus": TORUS_MAJOR + TORUS_MINOR, "capsule": 1.0}
BLENDER_FOV_DEG = 2 * math.degrees(math.atan(18 / 50))  # default 50 mm lens on a 36 mm sensor: 39.6 degrees
FPS = 24


@dataclass
class Solid:
    """One primitive solid and its state in every frame of a clip (F frames)."""
    shape: str
    color: np.ndarray   # (F, 3) RGB in 0..1
    pos: np.ndarray     # (F, 3) centre
    scale: np.ndarray   # (F,) uniform scale
    alpha: np.ndarray   # (F,) opacity, 0 = invisible
    yaw: np.ndarray     # (F,) rotation about the vertical axis, radians
    name: str = ""
    half_size: tuple = None  # shape "box" (scenery: a wall, a step) only: half its extent along x, y, z at scale 1

    @property
    def radius(self) -> np.ndarray:
        """(F,) radius of the bounding sphere."""
        bound = math.hypot(*self.half_size) if self.shape == "box" else BOUND_RADIUS[self.shape]
        return bound * self.scale


@dataclass
class Camera:
    position: np.ndarray
    target: np.ndarray
    width: int
    height: int
    fov_deg: float = BLENDER_FOV_DEG  # horizontal, or vertical when the frame is taller than wide (Blender AUTO fit)

    def __post_init__(self):
        self.position = np.asarray(self.position, np.float64)
        self.target = np.asarray(self.target, np.float64)
        f = self.target - self.position
        fx, fy, fz = self.forward = f / np.linalg.norm(f)
        # right = forward x z, up = right x forward, written out (np.cross costs more than the rest of a scene)
        rx, ry = np.array([fy, -fx]) / math.hypot(fx, fy)
        self.right = np.array([rx, ry, 0.0])
        self.up = np.array([ry * fz, -rx * fz, rx * fy - ry * fx])
        half = math.tan(math.radians(self.fov_deg) / 2)
        longest = max(self.width, self.height)
        self.half_w = half * self.width / longest
        self.half_h = half * self.height / longest

    def ray_directions(self) -> np.ndarray:
        """(H*W, 3) unit ray directions, row-major from the top-left pixel."""
        xs = ((np.arange(self.width) + 0.5) / self.width * 2 - 1) * self.half_w
        ys = (1 - (np.arange(self.height) + 0.5) / self.height * 2) * self.half_h
        d = (self.forward[None, None] + xs[None, :, None] * self.right[None, None]
             + ys[:, None, None] * self.up[None, None])
        d = d.reshape(-1, 3)
        return (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)

    def project(self, points) -> np.ndarray:
        """(..., 3) world points -> (..., 3): pixel column, pixel row (0 = top), depth along the view axis."""
        p = np.asarray(points, np.float64) - self.position
        depth = p @ self.forward
        x = (p @ self.right) / depth / self.half_w
        y = (p @ self.up) / depth / self.half_h
        return np.stack([(x + 1) / 2 * self.width, (1 - y) / 2 * self.height, depth], axis=-1)


@dataclass
class Light:
    direction: np.ndarray  # unit vector towards the light (a sun: parallel rays)
    ambient: float = 0.38
    diffuse: float = 0.72
    specular: float = 0.35
    shininess: float = 40.0
    shadow: float = 0.75   # fraction of the direct light an opaque occluder removes


@dataclass
class Background:
    """Ground plane z = 0 and, for the front view, a vertical backdrop y = backdrop_y facing -y."""
    texture: int                     # procedural texture family 0..19 (see TEXTURES)
    params: dict = field(default_factory=dict)   # per-video variation of the family: see texture_params()
    backdrop_y: float | None = None  # None: regular view, the ground carries the texture
    floor_color: tuple = (0.5, 0.5, 0.5)         # plain ground of the front view


# ----------------------------------------------------------------------------------------------------------------
# exact ray/solid intersection in the solid's local frame (centre at origin, z up, scale 1).
# o, d: (N, 3) float32 ray origins and unit directions. Returns t (N,) with inf where missed, and (N, 3) normals.

EPS = 1e-4


def _frustum_planes(sides, r_bottom, r_top, angle0):
    """Planes n.p <= c of an n-sided frustum between z = -1 (radius r_bottom) and z = 1 (radius r_top)."""
    normals, offsets = [[0.0, 0.0, -1.0]], [1.0]
    if r_top > 0:
        normals.append([0.0, 0.0, 1.0])
        offsets.append(1.0)
    cos_half = math.cos(math.pi / sides)
    a_b, a_t = r_bottom * cos_half, r_top * cos_half  # apothems
    for i in range(sides):
        th = angle0 + (i + 0.5) * 2 * math.pi / sides
        n = np.array([math.cos(th), math.sin(th), -(a_t - a_b) / 2])
        length = np.linalg.norm(n)
        normals.append(n / length)
        offsets.append((a_b + a_t) / 2 / length)
    return np.array(normals, np.float32), np.array(offsets, np.float32)


POLYHEDRA = {  # shape: (planes, offsets, smooth side normals with (r_bottom, r_top) or None for flat faces)
    "cube": (*_frustum_planes(4, math.sqrt(2), math.sqrt(2), math.pi / 4), None),
    "pyramid": (*_frustum_planes(4, 1.0, 0.0, 0.0), None),
    "prism": (*_frustum_planes(3, 1.0, 1.0, math.pi / 2), None),
    "cone": (*_frustum_planes(32, 1.0, 0.0, 0.0), (1.0, 0.0)),
}


def _hit_polyhedron(shape, o, d):
    planes, offsets, smooth = POLYHEDRA[shape]
    nd = d @ planes.T
    no = o @ planes.T
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (offsets - no) / nd
    t_in = np.where(nd < 0, t, -np.inf)
    t_out = np.where(nd > 0, t, np.inf)
    face = np.argmax(t_in, axis=1)
    t_enter = np.take_along_axis(t_in, face[:, None], 1)[:, 0]
    t_exit = t_out.min(axis=1)
    outside_parallel = ((nd == 0) & (no > offsets)).any(axis=1)
    hit = (t_enter <= t_exit) & (t_enter > EPS) & ~outside_parallel
    t_enter = np.where(hit, t_enter, np.inf)
    normal = planes[face]
    if smooth is not None:
        r_b, r_t = smooth
        p = o + d * np.where(hit, t_enter, 0)[:, None]
        side = face >= (2 if r_t > 0 else 1)
        rho = np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) + 1e-6
        sn = np.stack([p[:, 0] / rho, p[:, 1] / rho, np.full_like(rho, (r_b - r_t) / 2)], axis=1)
        sn /= np.linalg.norm(sn, axis=1, keepdims=True)
        normal = np.where(side[:, None], sn, normal)
    return t_enter, normal


def _hit_sphere(o, d, radius=1.0):
    b = np.einsum("ij,ij->i", o, d)
    c = np.einsum("ij,ij->i", o, o) - radius * radius
    h = b * b - c
    t = -b - np.sqrt(np.maximum(h, 0))
    hit = (h >= 0) & (t > EPS)
    t = np.where(hit, t, np.inf)
    return t, (o + d * np.where(hit, t, 0)[:, None]) / radius


def _hit_cylinder(o, d):
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1]
    c = o[:, 0] ** 2 + o[:, 1] ** 2 - 1
    h = b * b - a * c
    sq = np.sqrt(np.maximum(h, 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_side_in = np.where(a > 1e-9, (-b - sq) / a, np.where(c <= 0, -np.inf, np.inf))
        t_side_out = np.where(a > 1e-9, (-b + sq) / a, np.where(c <= 0, np.inf, -np.inf))
        t1 = (-1 - o[:, 2]) / d[:, 2]
        t2 = (1 - o[:, 2]) / d[:, 2]
    flat = np.abs(d[:, 2]) < 1e-9
    inside_slab = np.abs(o[:, 2]) <= 1
    tz_in = np.where(flat, np.where(inside_slab, -np.inf, np.inf), np.minimum(t1, t2))
    tz_out = np.where(flat, np.where(inside_slab, np.inf, -np.inf), np.maximum(t1, t2))
    t_enter = np.maximum(t_side_in, tz_in)
    t_exit = np.minimum(t_side_out, tz_out)
    hit = (h >= 0) & (t_enter <= t_exit) & (t_enter > EPS)
    t_enter = np.where(hit, t_enter, np.inf)
    p = o + d * np.where(hit, t_enter, 0)[:, None]
    cap = tz_in >= t_side_in
    n = np.stack([p[:, 0], p[:, 1], np.zeros_like(p[:, 0])], axis=1)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-9
    n = np.where(cap[:, None], np.stack([0 * p[:, 0], 0 * p[:, 0], -np.sign(d[:, 2])], 1), n)
    return t_enter, n


def _hit_capsule(o, d):
    """Capsule: segment z in [-s, s], radius r (after Inigo Quilez's capsule intersector)."""
    r, s = CAPSULE_RADIUS, CAPSULE_HALF_SEGMENT
    oa = o.copy()
    oa[:, 2] += s
    baba = 4 * s * s
    bard = 2 * s * d[:, 2]
    baoa = 2 * s * oa[:, 2]
    rdoa = np.einsum("ij,ij->i", d, oa)
    oaoa = np.einsum("ij,ij->i", oa, oa)
    a = baba - bard * bard
    b = baba * rdoa - baoa * bard
    c = baba * oaoa - baoa * baoa - r * r * baba
    h = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t_body = (-b - np.sqrt(np.maximum(h, 0))) / a
    y = baoa + t_body * bard
    body = (h >= 0) & (y > 0) & (y < baba) & (a > 1e-9) & (t_body > EPS)
    # otherwise: the nearer end cap sphere
    centre_z = np.where(y <= 0, -s, s).astype(np.float32)
    oc = o.copy()
    oc[:, 2] -= centre_z
    bb = np.einsum("ij,ij->i", d, oc)
    cc = np.einsum("ij,ij->i", oc, oc) - r * r
    hh = bb * bb - cc
    t_cap = -bb - np.sqrt(np.maximum(hh, 0))
    cap = ~body & (h >= 0) & (hh > 0) & (t_cap > EPS)
    t = np.where(body, t_body, np.where(cap, t_cap, np.inf))
    p = o + d * np.where(np.isfinite(t), t, 0)[:, None]
    axis_z = np.clip(p[:, 2], -s, s)
    n = p - np.stack([0 * axis_z, 0 * axis_z, axis_z], 1)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-9
    return t, n


def _hit_torus(o, d, steps=40):
    """Torus standing upright like a wheel (axis y), by sphere tracing the distance field of a flat torus in
    coordinates (x, z, -y), started where the ray enters its bounding sphere. Upright because a flat ring is a
    thin line from the low front cameras and cannot hide anything behind it."""
    t, n = _hit_flat_torus(o[:, [0, 2, 1]] * np.float32([1, 1, -1]), d[:, [0, 2, 1]] * np.float32([1, 1, -1]), steps)
    return t, np.stack([n[:, 0], -n[:, 2], n[:, 1]], axis=1)


def _hit_flat_torus(o, d, steps):
    big, small = TORUS_MAJOR, TORUS_MINOR
    bound = big + small + 0.02
    b = np.einsum("ij,ij->i", o, d)
    c = np.einsum("ij,ij->i", o, o) - bound * bound
    h = b * b - c
    t = np.full(len(o), np.inf, np.float32)
    normal = np.zeros_like(o)
    live = np.nonzero(h > 0)[0]
    sq = np.sqrt(h[live])
    tc = np.maximum(-b[live] - sq, 0)
    t_far = -b[live] + sq
    oo, dd = o[live], d[live]
    done_t = np.full(len(live), np.inf, np.float32)
    active = np.arange(len(live))
    for _ in range(steps):
        p = oo[active] + dd[active] * tc[active, None]
        q = np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) - big
        dist = np.sqrt(q * q + p[:, 2] ** 2) - small
        hit = dist < 2e-3
        done_t[active[hit]] = tc[active[hit]]
        tc[active] += dist
        keep = ~hit & (tc[active] < t_far[active])
        active = active[keep]
        if len(active) == 0:
            break
    ok = np.isfinite(done_t) & (done_t > EPS)
    t[live[ok]] = done_t[ok]
    p = oo[ok] + dd[ok] * done_t[ok, None]
    rho = np.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2) + 1e-9
    n = p - np.stack([p[:, 0] / rho * big, p[:, 1] / rho * big, 0 * rho], 1)
    normal[live[ok]] = n / (np.linalg.norm(n, axis=1, keepdims=True) + 1e-9)
    return t, normal


def _hit_box(o, d, half):
    """Axis-aligned box -half..half (slab test)."""
    d = np.where(np.abs(d) < 1e-9, np.float32(1e-9), d)
    t0, t1 = (-half - o) / d, (half - o) / d
    near, far = np.minimum(t0, t1), np.maximum(t0, t1)
    axis = np.argmax(near, axis=1)
    t_enter = np.take_along_axis(near, axis[:, None], 1)[:, 0]
    hit = (t_enter <= far.min(axis=1)) & (t_enter > EPS)
    normal = np.zeros_like(o)
    normal[np.arange(len(o)), axis] = -np.sign(d[np.arange(len(o)), axis])
    return np.where(hit, t_enter, np.inf), normal


def intersect_local(shape, o, d, half_size=None):
    """Nearest hit of rays (local frame, unit directions) with a solid of scale 1: (t, local normal)."""
    if shape == "box":
        return _hit_box(o, d, np.asarray(half_size, np.float32))
    if shape in POLYHEDRA:
        return _hit_polyhedron(shape, o, d)
    if shape == "sphere":
        return _hit_sphere(o, d)
    if shape == "cylinder":
        return _hit_cylinder(o, d)
    if shape == "capsule":
        return _hit_capsule(o, d)
    if shape == "torus":
        return _hit_torus(o, d)
    raise ValueError(f"unknown shape {shape!r}")


def intersect_solid(solid, frame, origins, dirs):
    """World rays (N, 3) against `solid` in frames `frame` (N,): (t in world units, world normals (N, 3))."""
    s = solid.scale[frame].astype(np.float32)
    cy, sy = np.cos(solid.yaw[frame]).astype(np.float32), np.sin(solid.yaw[frame]).astype(np.float32)
    rel = (origins - solid.pos[frame]).astype(np.float32)
    # rotate by -yaw into the solid's frame, divide by the scale; t stays a world length since |d| = 1
    o = np.stack([cy * rel[:, 0] + sy * rel[:, 1], -sy * rel[:, 0] + cy * rel[:, 1], rel[:, 2]], 1) / s[:, None]
    d = np.stack([cy * dirs[:, 0] + sy * dirs[:, 1], -sy * dirs[:, 0] + cy * dirs[:, 1], dirs[:, 2]], 1)
    t, n = intersect_local(solid.shape, o, d.astype(np.float32), solid.half_size)
    t = t * s
    n_world = np.stack([cy * n[:, 0] - sy * n[:, 1], sy * n[:, 0] + cy * n[:, 1], n[:, 2]], 1)
    return t, n_world


# ----------------------------------------------------------------------------------------------------------------
# procedural textures: 20 families; data/synta/generator.py gives families 0-9 to Set 1 and 10-19 to Set 2.

def _hash01(ix, iy, seed):
    h = ix.astype(np.uint32) * np.uint32(374761393) + iy.astype(np.uint32) * np.uint32(668265263)
    h = h + np.uint32(seed * 2654435761 % 2**32)
    h = (h ^ (h >> np.uint32(13))) * np.uint32(1274126177)
    h = h ^ (h >> np.uint32(16))
    return h.astype(np.float32) / np.float32(2**32)


def value_noise(u, v, seed):
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    iu, iv = iu.astype(np.int64), iv.astype(np.int64)
    a, b = _hash01(iu, iv, seed), _hash01(iu + 1, iv, seed)
    c, d = _hash01(iu, iv + 1, seed), _hash01(iu + 1, iv + 1, seed)
    return (a + (b - a) * fu) + ((c + (d - c) * fu) - (a + (b - a) * fu)) * fv


def fbm(u, v, seed, octaves=4):
    total, amp, norm = 0.0, 1.0, 0.0
    for i in range(octaves):
        total = total + amp * value_noise(u, v, seed + i)
        norm += amp
        u, v, amp = u * 2.03, v * 2.03, amp * 0.5
    return total / norm


def _mix(palette, w):
    """Blend palette colours: w (N,) in 0..1 indexes along the palette (piecewise linear)."""
    pal = np.asarray(palette, np.float32)
    x = np.clip(w, 0, 1) * (len(pal) - 1)
    i = np.minimum(np.floor(x).astype(int), len(pal) - 2)
    f = (x - i)[:, None]
    return pal[i] * (1 - f) + pal[i + 1] * f


def _pick(palette, k):
    pal = np.asarray(palette, np.float32)
    return pal[np.asarray(k, int) % len(pal)]


def _tex_checker(u, v, s, pal):
    return _pick(pal, np.floor(u) + np.floor(v))


def _tex_stripes(u, v, s, pal):
    return _pick(pal, np.floor(u * 1.5))


def _tex_bricks(u, v, s, pal):
    row = np.floor(v * 2)
    uu = u + 0.5 * (row % 2)
    mortar = (np.abs(uu - np.round(uu)) < 0.05) | (np.abs(v * 2 - np.round(v * 2)) < 0.1)
    base = _mix(pal[:2], value_noise(np.floor(uu), row, s) * 0.8 + 0.1)
    return np.where(mortar[:, None], np.asarray(pal[2], np.float32), base)


def _tex_dots(u, v, s, pal):
    du, dv = u - np.round(u), v - np.round(v)
    dot = du * du + dv * dv < 0.09
    return np.where(dot[:, None], _pick(pal[1:], np.round(u) + 2 * np.round(v)), np.asarray(pal[0], np.float32))


def _tex_wood(u, v, s, pal):
    r = np.sqrt(u * u + (v * 0.3) ** 2) * 3 + fbm(u * 2, v * 2, s, 2) * 2
    return _mix(pal, 0.5 + 0.5 * np.sin(r * 2 * np.pi))


def _tex_argyle(u, v, s, pal):
    k = np.floor(u + v) + np.floor(u - v)
    line = (np.abs((u * 2) % 1 - 0.5) < 0.04)
    col = _pick(pal[:2], k)
    return np.where(line[:, None], np.asarray(pal[2], np.float32), col)


def _tex_plaid(u, v, s, pal):
    a = (np.sin(u * 2 * np.pi) > 0.3).astype(np.float32)
    b = (np.sin(v * 2 * np.pi) > 0.3).astype(np.float32)
    thin = ((np.abs(u % 1 - 0.8) < 0.03) | (np.abs(v % 1 - 0.8) < 0.03))
    col = _mix(pal[:3], (a + b) / 2)
    return np.where(thin[:, None], np.asarray(pal[3], np.float32), col)


def _tex_waves(u, v, s, pal):
    w = np.sin((v + 0.35 * np.sin(u * 1.7)) * 2 * np.pi)
    return _mix(pal, 0.5 + 0.5 * w)


def _tex_sand(u, v, s, pal):
    n = fbm(u * 3, v * 3, s, 3) * 0.7 + 0.3 * value_noise(u * 40, v * 40, s + 7)
    return _mix(pal, n)


def _tex_triangles(u, v, s, pal):
    w = v * 1.1547
    uu = u + 0.5 * w
    k = np.floor(uu) + np.floor(w) + ((uu % 1) + (w % 1) > 1)
    return _pick(pal, k)


def _tex_grid(u, v, s, pal):
    line = (np.abs(u - np.round(u)) < 0.06) | (np.abs(v - np.round(v)) < 0.06)
    base = _mix(pal[:2], fbm(u * 0.5, v * 0.5, s, 2))
    return np.where(line[:, None], np.asarray(pal[2], np.float32), base)


def _tex_rings(u, v, s, pal):
    return _pick(pal, np.floor(np.sqrt(u * u + v * v) * 1.2))


def _tex_chevron(u, v, s, pal):
    return _pick(pal, np.floor(v + np.abs((u % 2) - 1)))


def _tex_cells(u, v, s, pal):
    iu, iv = np.floor(u), np.floor(v)
    best = np.full(u.shape, 9.0, np.float32)
    cell = np.zeros(u.shape, np.float32)
    for du in (-1, 0, 1):
        for dv in (-1, 0, 1):
            cu, cv = iu + du, iv + dv
            px = cu + _hash01(cu.astype(np.int64), cv.astype(np.int64), s)
            py = cv + _hash01(cv.astype(np.int64), cu.astype(np.int64), s + 3)
            dist = (u - px) ** 2 + (v - py) ** 2
            closer = dist < best
            best = np.where(closer, dist, best)
            cell = np.where(closer, _hash01(cu.astype(np.int64), cv.astype(np.int64), s + 5), cell)
    col = _mix(pal[:3], cell)
    return col * (0.75 + 0.25 * np.minimum(np.sqrt(best) * 2, 1))[:, None]


def _tex_marble(u, v, s, pal):
    w = np.sin((u + 2.5 * fbm(u * 0.7, v * 0.7, s, 4)) * np.pi)
    return _mix(pal, np.abs(w) ** 0.6)


def _tex_clouds(u, v, s, pal):
    return _mix(pal, fbm(u * 0.6, v * 0.6, s, 5) * 1.4 - 0.2)


def _tex_diagonal(u, v, s, pal):
    return _pick(pal, np.floor((u + v) * 1.2))


def _tex_camo(u, v, s, pal):
    n = fbm(u * 0.8, v * 0.8, s, 3)
    return _pick(pal, np.digitize(n, [0.4, 0.5, 0.6]))


def _tex_weave(u, v, s, pal):
    iu, iv = np.floor(u * 2), np.floor(v * 2)
    horizontal = ((iu + iv) % 2) == 0
    fu, fv = (u * 2) % 1, (v * 2) % 1
    thread = np.where(horizontal, np.abs(fv - 0.5), np.abs(fu - 0.5))
    col = np.where(horizontal[:, None], np.asarray(pal[0], np.float32), np.asarray(pal[1], np.float32))
    return col * (1 - 0.5 * thread)[:, None]


def _tex_crosses(u, v, s, pal):
    du, dv = np.abs(u - np.round(u)), np.abs(v - np.round(v))
    plus = ((du < 0.08) & (dv < 0.3)) | ((dv < 0.08) & (du < 0.3))
    return np.where(plus[:, None], _pick(pal[1:], np.round(u) - np.round(v)), np.asarray(pal[0], np.float32))


# (name, function, palette, period in world units)
TEXTURES = [
    ("checker", _tex_checker, [(0.80, 0.72, 0.55), (0.45, 0.30, 0.20)], 2.0),
    ("stripes", _tex_stripes, [(0.85, 0.45, 0.30), (0.95, 0.85, 0.60), (0.55, 0.25, 0.20)], 2.0),
    ("bricks", _tex_bricks, [(0.62, 0.28, 0.20), (0.78, 0.42, 0.28), (0.85, 0.80, 0.72)], 2.0),
    ("dots", _tex_dots, [(0.93, 0.88, 0.70), (0.80, 0.35, 0.35), (0.90, 0.60, 0.20), (0.55, 0.40, 0.25)], 1.5),
    ("wood", _tex_wood, [(0.55, 0.35, 0.18), (0.75, 0.55, 0.32), (0.62, 0.42, 0.22)], 6.0),
    ("argyle", _tex_argyle, [(0.70, 0.20, 0.25), (0.88, 0.70, 0.45), (0.30, 0.12, 0.10)], 2.5),
    ("plaid", _tex_plaid, [(0.55, 0.15, 0.12), (0.75, 0.45, 0.20), (0.92, 0.80, 0.50), (0.20, 0.12, 0.08)], 3.0),
    ("waves", _tex_waves, [(0.95, 0.75, 0.35), (0.85, 0.45, 0.15), (0.60, 0.20, 0.15)], 3.0),
    ("sand", _tex_sand, [(0.62, 0.50, 0.32), (0.85, 0.74, 0.52), (0.95, 0.88, 0.70)], 6.0),
    ("triangles", _tex_triangles, [(0.90, 0.60, 0.45), (0.70, 0.35, 0.40), (0.95, 0.85, 0.65)], 2.5),
    ("grid", _tex_grid, [(0.55, 0.70, 0.80), (0.75, 0.85, 0.90), (0.20, 0.35, 0.50)], 2.0),
    ("rings", _tex_rings, [(0.35, 0.60, 0.65), (0.70, 0.85, 0.80), (0.25, 0.45, 0.60)], 3.0),
    ("chevron", _tex_chevron, [(0.30, 0.45, 0.65), (0.80, 0.85, 0.90), (0.45, 0.65, 0.55)], 2.5),
    ("cells", _tex_cells, [(0.35, 0.55, 0.45), (0.55, 0.75, 0.60), (0.40, 0.50, 0.70)], 2.5),
    ("marble", _tex_marble, [(0.92, 0.94, 0.96), (0.70, 0.75, 0.82), (0.35, 0.40, 0.50)], 6.0),
    ("clouds", _tex_clouds, [(0.35, 0.55, 0.85), (0.70, 0.80, 0.95), (0.97, 0.97, 1.00)], 8.0),
    ("diagonal", _tex_diagonal, [(0.25, 0.55, 0.55), (0.55, 0.80, 0.75), (0.30, 0.35, 0.60), (0.75, 0.80, 0.90)], 2.5),
    ("camo", _tex_camo, [(0.25, 0.35, 0.25), (0.40, 0.50, 0.35), (0.55, 0.60, 0.50), (0.30, 0.40, 0.45)], 6.0),
    ("weave", _tex_weave, [(0.50, 0.60, 0.75), (0.75, 0.80, 0.70)], 2.0),
    ("crosses", _tex_crosses, [(0.22, 0.28, 0.40), (0.60, 0.80, 0.90), (0.55, 0.85, 0.65), (0.85, 0.90, 0.95)], 1.5),
]


def texture_params(rng) -> dict:
    """Per-video variation of a texture family: scale, rotation, offset, brightness, hue tilt, noise seed."""
    return {"scale": float(rng.uniform(0.8, 1.4)), "angle": float(rng.uniform(0, 2 * np.pi)),
            "offset": rng.uniform(-50, 50, 2).tolist(), "gain": float(rng.uniform(0.85, 1.1)),
            "tilt": rng.uniform(-0.06, 0.06, 3).tolist(), "seed": int(rng.integers(0, 2**31))}


def texture_rgb(family, params, x, y, footprint=None):
    """Colour of texture `family` at plane coordinates (x, y) (world units, (N,) each) -> (N, 3).

    `footprint`: (N,) size of a pixel on the plane; where the pattern is finer than a few pixels it fades to its
    mean colour (a cheap stand-in for mip-mapping, against moire on far ground)."""
    name, fn, palette, period = TEXTURES[family]
    p = params or {}
    scale = period * p.get("scale", 1.0)
    ang = p.get("angle", 0.0)
    off = p.get("offset", (0.0, 0.0))
    u = (math.cos(ang) * x - math.sin(ang) * y) / scale * 2 + off[0]
    v = (math.sin(ang) * x + math.cos(ang) * y) / scale * 2 + off[1]
    pal = np.clip(np.asarray(palette, np.float32) * p.get("gain", 1.0) + np.asarray(p.get("tilt", (0, 0, 0))), 0, 1)
    rgb = fn(u.astype(np.float32), v.astype(np.float32), p.get("seed", 0), pal).astype(np.float32)
    if footprint is not None:
        detail = np.clip(2.0 - 4.0 * footprint / scale, 0, 1)[:, None]
        rgb = rgb * detail + pal.mean(axis=0) * (1 - detail)
    return rgb


# ----------------------------------------------------------------------------------------------------------------
# rendering

def _shadow_basis(light_dir):
    a = np.array([1.0, 0.0, 0.0]) if abs(light_dir[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(light_dir, a)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(light_dir, e1)
    return np.stack([e1, e2], axis=1).astype(np.float32)  # (3, 2)


def _transmittance(solids, light, points, frame, n_frames_chunk=None, skip=None):
    """Fraction of sunlight reaching `points` (N, 3) in frames `frame` (N,), through the (semi-)opaque solids."""
    trans = np.ones(len(points), np.float32)
    if len(points) == 0:
        return trans
    L = light.direction.astype(np.float32)
    basis = _shadow_basis(light.direction)
    pa = points @ basis
    pl = points @ L
    for k, s in enumerate(solids):
        if k == skip:
            continue
        c = s.pos[frame].astype(np.float32)
        r = s.radius[frame].astype(np.float32)
        a = s.alpha[frame].astype(np.float32)
        cand = (a > 0.01) & (((c @ basis - pa) ** 2).sum(1) < r * r) & ((c @ L) - pl > -r)
        idx = np.nonzero(cand)[0]
        if len(idx) == 0:
            continue
        t, _ = intersect_solid(s, frame[idx], points[idx] + L * 1e-3, np.broadcast_to(L, (len(idx), 3)))
        blocked = np.isfinite(t)
        trans[idx[blocked]] *= 1 - light.shadow * a[idx[blocked]]
    return trans


def render_background(camera, background, light):
    """Per-pixel background of a static camera: lit colour, point on the surface, normal and albedo (P,)."""
    o = camera.position.astype(np.float32)
    d = camera.ray_directions()
    big = np.float32(1e9)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(d[:, 2] < -1e-6, -o[2] / d[:, 2], big)
        if background.backdrop_y is not None:
            t_back = np.where(d[:, 1] > 1e-6, (background.backdrop_y - o[1]) / d[:, 1], big)
        else:
            t_back = np.full_like(t_ground, big)
    on_back = t_back < t_ground
    t = np.minimum(t_ground, t_back)
    missed = t >= big
    t = np.where(missed, 1.0, t)
    p = o + d * t[:, None]
    normal = np.where(on_back[:, None], np.float32([0, -1, 0]), np.float32([0, 0, 1]))
    pixel_angle = 2 * camera.half_w / camera.width
    footprint = t * pixel_angle / np.maximum(np.abs(np.einsum("ij,ij->i", d, normal)), 0.05)
    if background.backdrop_y is None:
        albedo = texture_rgb(background.texture, background.params, p[:, 0], p[:, 1], footprint)
    else:
        albedo = np.broadcast_to(np.asarray(background.floor_color, np.float32), p.shape).copy()
        if on_back.any():
            albedo[on_back] = texture_rgb(background.texture, background.params, p[on_back, 0], p[on_back, 2],
                                          footprint[on_back])
        # darken the floor slightly with distance so it reads as a floor
        albedo[~on_back] *= np.clip(1.05 - 0.01 * t[~on_back], 0.75, 1)[:, None]
    sky = np.float32([0.7, 0.8, 0.95])
    albedo[missed] = sky
    ndotl = np.clip(normal @ light.direction.astype(np.float32), 0, 1)
    lit = albedo * (light.ambient + light.diffuse * ndotl)[:, None]
    return {"albedo": albedo, "points": p.astype(np.float32), "ndotl": ndotl, "dirs": d, "missed": missed,
            "lit8": _tone(lit)}


_TONE = (np.linspace(0, 1, 4096) ** (1 / 1.15) * 255 + 0.5).astype(np.uint8)


def _tone(rgb):
    """Linear 0..1 colours -> uint8 through a lookup table: a slight lift of the shadows, like a filmic view
    transform (a table because a power over every pixel cost more than the shading)."""
    return _TONE[(np.clip(rgb, 0, 1) * (len(_TONE) - 1) + 0.5).astype(np.uint16)]


_CUBE = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float32)


def _screen_rects(camera, points):
    """Pixel rectangles (F, 4): col0, col1, row0, row1 (ends exclusive) around the projections of point sets
    (F, K, 3); the whole frame where a point is close to or behind the camera's plane."""
    rel = points.astype(np.float64) - camera.position
    depth = rel @ camera.forward
    safe = np.maximum(depth, 1e-6)
    col = ((rel @ camera.right) / safe / camera.half_w + 1) / 2 * camera.width
    row = (1 - (rel @ camera.up) / safe / camera.half_h) / 2 * camera.height
    rects = np.stack([np.floor(col.min(1)) - 1, np.ceil(col.max(1)) + 2,
                      np.floor(row.min(1)) - 1, np.ceil(row.max(1)) + 2], axis=1)
    rects[:, :2] = np.clip(rects[:, :2], 0, camera.width)
    rects[:, 2:] = np.clip(rects[:, 2:], 0, camera.height)
    rects[(depth < 0.05).any(1)] = [0, camera.width, 0, camera.height]
    return rects.astype(np.int64)


def _rect_pixels(rects, width):
    """(frame index, pixel index) of every pixel inside the per-frame rectangles."""
    frame_parts, pixel_parts = [], []
    for f, (c0, c1, r0, r1) in enumerate(rects):
        if c1 > c0 and r1 > r0:
            pix = (np.arange(r0, r1)[:, None] * width + np.arange(c0, c1)[None, :]).ravel()
            pixel_parts.append(pix)
            frame_parts.append(np.full(len(pix), f))
    if not pixel_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(frame_parts), np.concatenate(pixel_parts)


def render_frames(solids, camera, background, light, frames=None, bg=None):
    """Render frames `frames` (default all) of a clip -> uint8 (len(frames), H, W, 3)."""
    n_total = len(solids[0].pos) if solids else 1
    frames = np.arange(n_total) if frames is None else np.asarray(frames)
    bg = bg if bg is not None else render_background(camera, background, light)
    H, W = camera.height, camera.width
    P = H * W
    F = len(frames)
    L = light.direction.astype(np.float32)
    o = camera.position.astype(np.float32)
    dirs = bg["dirs"]

    # Only the pixels inside a screen rectangle around each solid (or around its shadow) are tested against it:
    # first against its bounding sphere, then exactly.
    trans = np.ones((F, P), np.float32)
    lit = ~bg["missed"] & (bg["ndotl"] > 0)
    basis = _shadow_basis(light.direction)
    pa = bg["points"] @ basis            # ground/backdrop points in the light's view
    pl = bg["points"] @ L
    for s in solids:
        pos = s.pos[frames].astype(np.float32)
        r = s.radius[frames].astype(np.float32)
        a = s.alpha[frames].astype(np.float32)
        corners = pos[:, None] + r[:, None, None] * _CUBE[None]
        # the shadow lies within the solid's bounding cube projected along the light onto the ground / backdrop
        on_planes = [corners - (corners[..., 2:] / max(L[2], 0.05)) * L]
        if background.backdrop_y is not None and L[1] < -0.02:
            on_planes.append(corners - ((corners[..., 1:2] - background.backdrop_y) / L[1]) * L)
        rects = _screen_rects(camera, np.concatenate(on_planes, axis=1))
        rects[a <= 0.01] = 0
        fi, pj = _rect_pixels(rects, W)
        keep = lit[pj]
        fi, pj = fi[keep], pj[keep]
        cb = pos @ basis
        du, dv = pa[pj, 0] - cb[fi, 0], pa[pj, 1] - cb[fi, 1]
        near = du * du + dv * dv < r[fi] ** 2
        near &= (pos @ L)[fi] - pl[pj] > -r[fi]
        fi, pj = fi[near], pj[near]
        if len(fi) == 0:
            continue
        t, _ = intersect_solid(s, frames[fi], bg["points"][pj] + L * 1e-3, np.broadcast_to(L, (len(fi), 3)))
        blocked = np.isfinite(t)
        trans[fi[blocked], pj[blocked]] *= 1 - light.shadow * a[fi[blocked]]
    trans = trans.reshape(F * P)

    frags = []
    for k, s in enumerate(solids):
        pos = s.pos[frames].astype(np.float32)
        r = s.radius[frames].astype(np.float32)
        a = s.alpha[frames].astype(np.float32)
        rects = _screen_rects(camera, pos[:, None] + r[:, None, None] * _CUBE[None])
        rects[a <= 0.004] = 0
        fi, pi = _rect_pixels(rects, W)
        c = (pos - o)[fi]
        d = dirs[pi]
        along = np.einsum("ij,ij->i", c, d)
        keep = (np.einsum("ij,ij->i", c, c) - along * along < r[fi] ** 2) & (along > -r[fi])
        fi, pi = fi[keep], pi[keep]
        if len(fi) == 0:
            continue
        t, n = intersect_solid(s, frames[fi], np.broadcast_to(o, (len(fi), 3)), dirs[pi])
        hit = np.isfinite(t)
        fi, pi, t, n = fi[hit], pi[hit], t[hit], n[hit]
        if len(fi) == 0:
            continue
        n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-9
        d = dirs[pi]
        flip = np.einsum("ij,ij->i", n, d) > 0  # inside of a torus hole etc.: face the viewer
        n[flip] *= -1
        p = o + d * t[:, None]
        sh = _transmittance(solids, light, p + n * 2e-3, frames[fi], skip=k)
        ndl = np.clip(n @ L, 0, 1)
        half = L[None] - d
        half /= np.linalg.norm(half, axis=1, keepdims=True)
        spec = np.clip(np.einsum("ij,ij->i", n, half), 0, 1) ** light.shininess * (ndl > 0)
        amb = light.ambient * (0.85 + 0.15 * n[:, 2])
        col = s.color[frames[fi]].astype(np.float32)
        rgb = col * (amb + light.diffuse * ndl * sh)[:, None] + (light.specular * spec * sh)[:, None]
        frags.append((fi * P + pi, t, rgb, a[fi]))

    # Start from the unshadowed background (8-bit, computed once per video) and recompute only the pixels that a
    # shadow or a solid touches.
    out = np.empty((F, P, 3), np.uint8)
    out[:] = bg["lit8"][None]
    out = out.reshape(F * P, 3)
    shadowed = np.nonzero(trans < 1)[0]
    frag_idx = np.concatenate([f[0] for f in frags]) if frags else np.zeros(0, np.int64)
    touched = np.zeros(F * P, bool)
    touched[shadowed] = True
    touched[frag_idx] = True
    changed = np.flatnonzero(touched)
    if len(changed) == 0:
        return out.reshape(F, H, W, 3)
    pix = changed % P
    color = bg["albedo"][pix] * (light.ambient + light.diffuse * bg["ndotl"][pix] * trans[changed])[:, None]
    if frags:
        t = np.concatenate([f[1] for f in frags])
        rgb = np.concatenate([f[2] for f in frags])
        alpha = np.concatenate([f[3] for f in frags])
        order = np.lexsort((-t, frag_idx))  # per pixel, far to near
        idx, rgb, alpha = np.searchsorted(changed, frag_idx[order]), rgb[order], alpha[order]
        start = np.r_[True, idx[1:] != idx[:-1]]
        group_start = np.maximum.accumulate(np.where(start, np.arange(len(idx)), 0))
        rank = np.arange(len(idx)) - group_start
        for level in range(rank.max() + 1):
            m = rank == level
            j = idx[m]
            color[j] = color[j] * (1 - alpha[m, None]) + rgb[m] * alpha[m, None]
    out[changed] = _tone(color)
    return out.reshape(F, H, W, 3)


def render_clip(solids, camera, background, light, chunk_rays=400_000):
    """Yield the frames of a clip in chunks (uint8 (n, H, W, 3)), keeping memory bounded for long clips."""
    n_frames = len(solids[0].pos)
    bg = render_background(camera, background, light)
    step = max(1, chunk_rays // (camera.width * camera.height))
    for start in range(0, n_frames, step):
        yield render_frames(solids, camera, background, light, np.arange(start, min(n_frames, start + step)), bg)


def limit_blas_threads(n):
    """Set the number of threads of numpy's OpenBLAS (found in this process's memory map, as threadpoolctl does);
    returns the previous number, or None where that is not possible.

    The renderer's matrix products are tiny; with several BLAS threads per worker process the threads spin and
    take the CPU from the other workers (measured: 2.4x the CPU time per video on 2 cores)."""
    import ctypes

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.split()[-1].lower()}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    previous = int(getter())
                    setter(int(n))
                    return previous
    return None


# ----------------------------------------------------------------------------------------------------------------
# output: H.264 video, PNG, captions

_RGB_TO_YUV = np.array([[65.481, -37.797, 112.0], [128.553, -74.203, -93.786], [24.966, 112.0, -18.214]],
                       np.float32) / 255


def rgb_to_yuv420p(frames: np.ndarray) -> np.ndarray:
    """uint8 (F, H, W, 3) RGB -> uint8 (F, H * 3 / 2, W) planar YUV 4:2:0, BT.601 limited range (what decoders
    assume for untagged SD video). Done here rather than by swscale so that the bytes written are reproducible."""
    f, h, w, _ = frames.shape
    rgb = frames.astype(np.float32)
    out = np.empty((f, h * 3 // 2, w), np.uint8)
    out[:, :h] = np.clip(rgb @ _RGB_TO_YUV[:, 0] + 16.5, 0, 255)
    # chroma of the 2x2 mean colour (the conversion is linear, so this is the mean of the chroma)
    mean = (rgb[:, 0::2, 0::2] + rgb[:, 1::2, 0::2] + rgb[:, 0::2, 1::2] + rgb[:, 1::2, 1::2]) * 0.25
    chroma = np.clip(mean @ _RGB_TO_YUV[:, 1:] + 128.5, 0, 255).astype(np.uint8)  # (f, h/2, w/2, 2)
    flat = out[:, h:].reshape(f, -1)
    quarter = (h // 2) * (w // 2)
    flat[:, :quarter] = chroma[..., 0].reshape(f, -1)
    flat[:, quarter:] = chroma[..., 1].reshape(f, -1)
    return out


def write_mp4(path, frame_chunks, width, height, fps=FPS, crf=20):
    """Write uint8 RGB frames as H.264 yuv420p MP4. Reproducible bytes: our own colour conversion, explicit
    timestamps, one encoder thread, no macroblock tree."""
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # mbtree off: with it, libx264 gave different bytes for identical frames now and then (measured)
        stream.options = {"crf": str(crf), "preset": "veryfast", "x264-params": "mbtree=0"}
        stream.codec_context.thread_count = 1
        index = 0
        for chunk in frame_chunks:
            for frame in rgb_to_yuv420p(np.asarray(chunk)):
                video_frame = av.VideoFrame.from_ndarray(frame, format="yuv420p")
                video_frame.pts = index
                video_frame.time_base = Fraction(1, fps)
                index += 1
                for packet in stream.encode(video_frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_mp4(path) -> np.ndarray:
    """Decode a video to uint8 (F, H, W, 3) (used by tests and contact sheets)."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def encode_png(image: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes (filter 'Up' on every row, zlib level 9)."""
    h, w, _ = image.shape
    img = image.astype(np.int16)
    up = np.diff(np.concatenate([np.zeros((1, w, 3), np.int16), img]), axis=0) % 256
    raw = np.concatenate([np.full((h, 1), 2, np.uint8), up.astype(np.uint8).reshape(h, w * 3)], axis=1)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
            + chunk(b"IEND", b""))


# 5x7 bitmap font: each glyph is 7 rows of 5 bits (most significant bit = left column).
_FONT = {
    " ": "00000000000000", "A": "0E11111F111111", "B": "1E11111E11111E", "C": "0E11101010110E",
    "D": "1E11111111111E", "E": "1F10101E10101F", "F": "1F10101E101010", "G": "0E11101711110F",
    "H": "1111111F111111", "I": "0E04040404040E", "J": "0702020202120C", "K": "11121418141211",
    "L": "1010101010101F", "M": "111B1515111111", "N": "11111915131111", "O": "0E11111111110E",
    "P": "1E11111E101010", "Q": "0E111111151209", "R": "1E11111E141211", "S": "0F10100E01011E",
    "T": "1F040404040404", "U": "1111111111110E", "V": "11111111110A04", "W": "11111115151B11",
    "X": "11110A040A1111", "Y": "11110A04040404", "Z": "1F01020408101F", "0": "0E11131519110E",
    "1": "040C040404040E", "2": "0E11010204081F", "3": "1F02040201110E", "4": "02060A121F0202",
    "5": "1F101E0101110E", "6": "0608101E11110E", "7": "1F010204080808", "8": "0E11110E11110E",
    "9": "0E11110F01020C", ".": "0000000000000C", ",": "00000000000C04", "-": "0000001F000000",
    "(": "02040808080402", ")": "08040202020408", ":": "000C0C000C0C00", "/": "01010204081010",
    "'": "0C040800000000", "_": "0000000000001F",
}


def draw_text(image: np.ndarray, text: str, x: int, y: int, color=(255, 255, 255), scale: int = 1) -> int:
    """Draw upper-cased `text` into uint8 image (H, W, 3) at top-left (x, y); returns the x after the text."""
    for ch in text.upper():
        glyph = _FONT.get(ch, _FONT[" "])
        for row in range(7):
            bits = int(glyph[2 * row:2 * row + 2], 16)
            for col in range(5):
                if bits & (1 << (4 - col)):
                    y0, x0 = y + row * scale, x + col * scale
                    image[y0:y0 + scale, x0:x0 + scale] = color
        x += 6 * scale
    return x
