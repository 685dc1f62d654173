"""Motion programs of the 100 Syn-TA fine classes.

`CLASSES` maps each official video path stem (e.g. `bouncing/bouncing1`) to (program, official frame count). A
program gets a `Ctx` (time axis t = 0..1 over the clip, a motion RNG, the set's shapes and colours) and returns the
solids of the scene with their state in every frame (data.render.Solid: position, scale, opacity, colour, yaw).
Programs are written in normalised time, so any frame count plays the same motion.

Stage coordinates: z up, the ground is z = 0; a solid's `lift` is the height of its bottom above the ground. Classes
in `VIEW_RELATIVE` are defined as seen by a camera on the -y side looking towards +y (x = screen right): their stage
is turned to face whichever camera renders them, so "left to right", "clockwise on a vertical plane", "in front of"
mean what they say in every video. All other classes are seen from a random camera.
"""
import colorsys
import math

import numpy as np

from data.synta.render import HALF_HEIGHT, Solid


# ----------------------------------------------------------------------------------------------------------------
# helpers

def ease(x):
    """Blender's default Bezier keyframe interpolation, approximately: smooth start and stop."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def ramp(t, t0, t1, eased=True):
    """0 before t0, 1 after t1, rising in between."""
    x = np.clip((t - t0) / max(t1 - t0, 1e-9), 0.0, 1.0)
    return ease(x) if eased else x


def keyframes(t, times, values, eased=True):
    """Piecewise interpolation through (time, value) keys; values may be scalars or vectors."""
    values = np.asarray(values, np.float64)
    out = np.empty((len(t),) + values.shape[1:])
    out[:] = values[0]
    for i in range(len(times) - 1):
        f = ramp(t, times[i], times[i + 1], eased)
        inside = t >= times[i]
        seg = values[i] + (values[i + 1] - values[i]) * f.reshape((-1,) + (1,) * (values.ndim - 1))
        out[inside] = seg[inside]
    return out


def lerp(a, b, f):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a + (b - a) * np.asarray(f)[:, None]


def unit(angle):
    return np.array([math.cos(angle), math.sin(angle)])


def rotate2(v, angle):
    c, s = math.cos(angle), math.sin(angle)
    v = np.asarray(v, np.float64)
    return np.stack([c * v[..., 0] - s * v[..., 1], s * v[..., 0] + c * v[..., 1]], axis=-1)


def bounce_lift(t, t0, t1, h0, ratio, bounces):
    """Height of a ball released at rest from h0 at t0, bouncing `bounces` times with peaks shrinking by `ratio`
    (constant gravity, so every arc is a parabola), at rest from t1 on."""
    peaks = h0 * ratio ** np.arange(1, bounces + 1)
    durations = np.r_[math.sqrt(h0), 2 * np.sqrt(peaks)]  # in units where g = 2
    unit_time = (t1 - t0) / durations.sum()
    tau = (t - t0) / unit_time
    h = np.where(tau <= 0, h0, 0.0)
    first = (tau > 0) & (tau <= durations[0])
    h = np.where(first, h0 - tau ** 2, h)
    start = durations[0]
    for peak, dur in zip(peaks, durations[1:]):
        local = tau - start - dur / 2
        inside = (tau > start) & (tau <= start + dur)
        h = np.where(inside, peak - local ** 2, h)
        start += dur
    return np.maximum(h, 0.0)


def periodic_bounce(t, height, bounces, phase):
    """Bounces of constant height for the whole clip (no energy loss)."""
    x = (t * bounces + phase) % 1.0
    return height * 4 * x * (1 - x)


def hops(t, t0, t1, floors, xs, apex):
    """Hops from floor level floors[i] at position xs[i] to floors[i+1] at xs[i+1], evenly spaced in [t0, t1]:
    returns (lift, x)."""
    n = len(floors) - 1
    s = np.clip((t - t0) / (t1 - t0), 0, 1) * n
    i = np.minimum(np.floor(s).astype(int), n - 1)
    f = s - i
    lo, hi = np.asarray(floors)[i], np.asarray(floors)[i + 1]
    # a parabola from one floor to the next that clears the higher of the two by `apex`; sideways it starts and
    # ends slowly, so it is high before it passes over a step's edge and has cleared the edge before it drops
    lift = lo + (hi - lo) * f + 4 * (apex + np.maximum(hi - lo, 0)) * f * (1 - f)
    x = np.asarray(xs)[i] + (np.asarray(xs)[i + 1] - np.asarray(xs)[i]) * ease(f)
    return lift, x


def ring(n, radius, angle0=0.0, centre=(0.0, 0.0)):
    return np.array([np.asarray(centre) + radius * unit(angle0 + 2 * math.pi * k / n) for k in range(n)])


def reverse_time(solids):
    """The same scene played backwards (departing = arriving reversed, disappearing = appearing reversed)."""
    for s in solids:
        for name in ("color", "pos", "scale", "alpha", "yaw"):
            setattr(s, name, getattr(s, name)[::-1].copy())
    return solids


def hsv(h, s, v):
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


# ----------------------------------------------------------------------------------------------------------------

class Ctx:
    """What a motion program gets: the time axis, a motion RNG, and its set's look (shapes, colours).

    Shapes and colours come from a separate RNG stream, so the same seed gives the same motion whatever the shape
    pool (appearance mode) is."""

    def __init__(self, n_frames, motion_rng, look_rng, shape_pool, view):
        self.t = np.linspace(0.0, 1.0, n_frames)
        self.n = n_frames
        self.rng = motion_rng
        self.look = look_rng
        self.shape_pool = tuple(shape_pool)
        self.view = view
        self.focus = None       # (k, 3) points the camera must frame; default: every visible solid
        self.elevation = None   # (lo, hi) degrees: regular-view camera elevation, when a class needs its own

    def u(self, lo=0.0, hi=1.0):
        return float(self.rng.uniform(lo, hi))

    def pick(self, options):
        return options[int(self.rng.uniform() * len(options))]

    def sign(self):
        return 1.0 if self.rng.uniform() < 0.5 else -1.0

    def shape(self, exclude=()):
        pool = [s for s in self.shape_pool if s not in exclude] or list(self.shape_pool)
        return pool[int(self.look.uniform() * len(pool))]

    def hue_color(self, unlike=()):
        """(hue, rgb) of a saturated random colour whose hue is far from the hues in `unlike`."""
        for _ in range(64):
            h, s, v = self.look.uniform(), self.look.uniform(0.5, 0.95), self.look.uniform(0.6, 1.0)
            if all(min(abs(h - o) % 1, 1 - abs(h - o) % 1) > 0.16 for o in unlike):
                break
        return h, hsv(h, s, v)

    def color(self, unlike=()):
        return self.hue_color(unlike)[1]

    def colors(self, n):
        hues, out = [], []
        for _ in range(n):
            h, c = self.hue_color(hues)
            hues.append(h)
            out.append(c)
        return out

    def yaw(self):
        return float(self.look.uniform(0, 2 * math.pi))

    def solid(self, shape=None, color=None, xy=(0.0, 0.0), lift=0.0, scale=None, alpha=1.0, yaw=None, name=""):
        """A solid resting `lift` above the ground at ground position `xy`; every argument may be constant or
        per-frame."""
        shape = shape or self.shape()
        n = self.n
        color = self.color() if color is None else color
        scale = self.u(0.85, 1.1) if scale is None else scale
        yaw = self.yaw() if yaw is None else yaw
        xy = np.broadcast_to(np.asarray(xy, np.float64), (n, 2))
        scale = np.broadcast_to(np.asarray(scale, np.float64), (n,)).copy()
        lift = np.broadcast_to(np.asarray(lift, np.float64), (n,))
        pos = np.column_stack([xy, HALF_HEIGHT[shape] * scale + lift])
        return Solid(shape=shape, color=np.broadcast_to(np.asarray(color, np.float64), (n, 3)).copy(), pos=pos,
                     scale=scale, alpha=np.broadcast_to(np.asarray(alpha, np.float64), (n,)).copy(),
                     yaw=np.broadcast_to(np.asarray(yaw, np.float64), (n,)).copy(), name=name)

    def box(self, xy, half_size, name, color=None):
        """A static box standing on the ground at `xy`, half sizes (x, y, z): scenery (a wall, a step), drawn in a
        muted colour so the moving solids stand out."""
        if color is None:
            color = hsv(self.look.uniform(), self.look.uniform(0.08, 0.2), self.look.uniform(0.7, 0.85))
        n = self.n
        pos = np.tile([xy[0], xy[1], half_size[2]], (n, 1)).astype(np.float64)
        return Solid("box", np.tile(color, (n, 1)), pos, np.ones(n), np.ones(n), np.zeros(n), name, tuple(half_size))

    def copy_of(self, solid, name=""):
        """An identical solid (shape, colour, yaw, size) to be given its own motion."""
        return Solid(solid.shape, solid.color.copy(), solid.pos.copy(), solid.scale.copy(), solid.alpha.copy(),
                     solid.yaw.copy(), name)

    def spots(self, n, spread, gap, centre=(0.0, 0.0)):
        """n ground positions within `spread` of centre, at least `gap` apart."""
        pts = []
        for _ in range(2000):
            p = np.asarray(centre) + self.rng.uniform(-spread, spread, 2)
            if all(np.linalg.norm(p - q) >= gap for q in pts):
                pts.append(p)
                if len(pts) == n:
                    break
        while len(pts) < n:  # crowded: fall back to a row
            pts.append(np.asarray(centre) + np.array([gap * len(pts), 0.0]))
        return np.array(pts)

    def direction(self):
        return unit(self.u(0, 2 * math.pi))

    def lateral(self):
        """A direction across the screen (left or right, within 35 degrees), for view-relative classes."""
        return unit(self.pick([0.0, math.pi]) + self.u(-0.6, 0.6))

    def oblique(self):
        """A ground direction 30-60 degrees off the screen's horizontal, to the left or the right and away from the
        camera, for view-relative classes whose name has no left or right."""
        angle = self.u(0.52, 1.05)
        return unit(angle if self.u() < 0.5 else math.pi - angle)

    def entry_direction(self):
        """Direction (from the destination) an object enters from, for view-relative classes: from the left,
        the right or the near side of the screen, never from the far side (where the ground stays visible)."""
        if self.view == "front":
            # from the left or the right, at most a little from the camera's side (a low camera would see an
            # object coming straight from behind it fill the frame)
            towards_camera = self.u(-0.15, 0.55)
            return unit(-towards_camera if self.u() < 0.5 else math.pi + towards_camera)
        return unit(self.u(-math.pi, 0.0))


def rest_z(solid):
    return HALF_HEIGHT[solid.shape] * solid.scale


def lift_of(solid):
    """(F,) height of the solid's bottom above the ground."""
    return solid.pos[:, 2] - rest_z(solid)


def set_xy(solid, xy):
    solid.pos[:, :2] = np.broadcast_to(np.asarray(xy, np.float64), (len(solid.pos), 2))


# Radius of a solid's footprint on the ground at scale 1 (for placing solids close but not into each other).
FOOTPRINT = {"cube": math.sqrt(2), "cone": 1.0, "pyramid": 1.0, "prism": 1.0, "sphere": 1.0, "cylinder": 1.0,
             "torus": 1.1, "capsule": 0.6}


def footprint_gap(*solids, extra=0.3):
    """Ground distance at which the footprints of these solids (at their largest) keep `extra` apart."""
    return sum(FOOTPRINT[s.shape] * float(np.max(s.scale)) for s in solids) + extra


def gap_for(*solids, extra=0.6):
    """Centre distance at which bounding spheres of these solids (at their largest) keep `extra` apart."""
    return sum(float(np.max(s.radius)) for s in solids) + extra


# ----------------------------------------------------------------------------------------------------------------
# 0 appearing / 7 disappearing

def appearing1(c):
    return [c.solid(xy=c.spots(1, 1.0, 0)[0], alpha=ramp(c.t, c.u(0.0, 0.12), c.u(0.7, 0.86)), name="appearing")]


def appearing2(c):
    n = c.pick([3, 4])
    t0, t1 = c.u(0.0, 0.12), c.u(0.65, 0.86)
    return [c.solid(xy=p, alpha=ramp(c.t, t0, t1), name=f"appearing{k}")
            for k, p in enumerate(c.spots(n, 3.5, 3.6))]


def appearing3(c):
    n = c.pick([3, 4])
    fade, pause = c.u(0.14, 0.17), c.u(0.03, 0.06)
    t0 = c.u(0.0, 0.95 - n * fade - (n - 1) * pause)
    pts = ring(n, c.u(3.5, 4.5), c.u(0, 2 * math.pi))
    return [c.solid(xy=p, alpha=ramp(c.t, t0 + k * (fade + pause), t0 + k * (fade + pause) + fade),
                    name=f"appearing{k}") for k, p in enumerate(pts)]


def appearing4(c):
    t0, t1 = c.u(0.05, 0.2), c.u(0.55, 0.8)
    corners = ring(4, c.u(2.8, 3.4), c.u(0, 2 * math.pi))
    static = [c.solid(xy=corners[k], name=f"present{k}") for k in (0, 2)]
    new = [c.solid(xy=corners[k], alpha=ramp(c.t, t0, t1), name=f"appearing{k}") for k in (1, 3)]
    return static + new


def disappearing1(c):
    return reverse_time(appearing1(c))


def disappearing2(c):
    return reverse_time(appearing2(c))


def disappearing3(c):
    return reverse_time(appearing3(c))


def disappearing4(c):
    n = c.pick([4, 5])
    going = c.pick([2, 3]) if n == 5 else 2
    pts = c.spots(n, 4.0, 3.6)
    order = c.rng.permutation(n)
    t0, t1 = c.u(0.15, 0.35), c.u(0.6, 0.85)
    out = []
    for k, p in enumerate(pts):
        if order[k] < going:
            out.append(c.solid(xy=p, alpha=1 - ramp(c.t, t0, t1), name=f"disappearing{k}"))
        else:
            out.append(c.solid(xy=p, name=f"remaining{k}"))
    return out


# ----------------------------------------------------------------------------------------------------------------
# 1 arriving / 6 departing (view-relative: they enter and leave through the sides or the near edge of the frame)

def _arrive(c, dest, t0, t1, direction=None, **kw):
    direction = c.entry_direction() if direction is None else direction
    start = dest + direction * c.u(14, 17)
    return c.solid(xy=lerp(start, dest, ramp(c.t, t0, t1)), **kw)


def arriving1(c):
    dest = c.spots(1, 1.0, 0)[0]
    c.focus = [dest]
    return [_arrive(c, dest, c.u(0.0, 0.1), c.u(0.75, 0.95), name="arriving")]


def arriving2(c):
    n = c.pick([2, 3])
    dests = c.spots(n, 2.5, 3.6)
    c.focus = dests
    base = c.entry_direction()
    t0, t1 = c.u(0.0, 0.1), c.u(0.75, 0.95)
    return [_arrive(c, d, t0, t1, direction=rotate2(base, c.u(-0.3, 0.3)), name=f"arriving{k}")
            for k, d in enumerate(dests)]


def arriving3(c):
    n = 3
    dests = c.spots(n, 2.5, 3.6)
    c.focus = dests
    dur, pause = c.u(0.2, 0.24), c.u(0.04, 0.08)
    t0 = c.u(0.0, 0.96 - n * dur - (n - 1) * pause)
    return [_arrive(c, d, t0 + k * (dur + pause), t0 + k * (dur + pause) + dur, name=f"arriving{k}")
            for k, d in enumerate(dests)]


def arriving4(c):
    n = c.pick([3, 4])
    direction = c.entry_direction()
    entry_angle = math.atan2(direction[1], direction[0])
    radius = c.u(3.4, 3.9)
    others = ring(n, radius, entry_angle + math.pi / n)
    c.focus = list(others) + [np.zeros(2)]
    static = [c.solid(xy=p, scale=c.u(0.8, 1.0), name=f"present{k}") for k, p in enumerate(others)]
    mover = _arrive(c, np.zeros(2), c.u(0.0, 0.1), c.u(0.75, 0.95), direction=direction, scale=c.u(0.8, 1.0),
                    name="arriving")
    return static + [mover]


def _beside(c):
    """A static solid and a spot beside it, plus the direction the mover comes from."""
    direction = c.entry_direction()
    side = rotate2(direction, c.u(-0.6, 0.6))
    other = c.spots(1, 1.0, 0)[0]
    static = c.solid(xy=other, name="present")
    dest = other + side * c.u(3.1, 3.6)
    return static, dest, direction, side


def arriving5(c):
    static, dest, direction, _ = _beside(c)
    c.focus = [static.pos[0, :2], dest]
    return [static, _arrive(c, dest, c.u(0.0, 0.1), c.u(0.75, 0.95), direction=direction, name="arriving")]


def arriving6(c):
    static, dest, direction, side = _beside(c)
    c.focus = [static.pos[0, :2], dest]
    leave = direction  # back the way it came, unless another way out is found that does not pass the other one
    for _ in range(50):
        candidate = c.entry_direction()
        if candidate @ direction < math.cos(0.7) and candidate @ side > 0.2:
            leave = candidate
            break
    start = dest + direction * c.u(14, 17)
    away = dest + leave * c.u(14, 17)
    t_in, t_stop, t_go = c.u(0.0, 0.05), c.u(0.3, 0.38), c.u(0.55, 0.65)
    xy = keyframes(c.t, [t_in, t_stop, t_go, c.u(0.9, 1.0)], [start, dest, dest, away])
    return [static, c.solid(xy=xy, name="arriving")]


def departing1(c):
    return reverse_time(arriving1(c))


def departing2(c):
    return reverse_time(arriving2(c))


def departing3(c):
    return reverse_time(arriving3(c))


def departing4(c):
    return reverse_time(arriving4(c))


def departing5(c):
    return reverse_time(arriving5(c))


def departing6(c):
    static, home, direction, _ = _beside(c)
    c.focus = [static.pos[0, :2], home]
    away = home + direction * c.u(14, 17)
    t_go, t_out, t_back = c.u(0.0, 0.08), c.u(0.32, 0.4), c.u(0.45, 0.55)
    xy = keyframes(c.t, [t_go, t_out, t_back, c.u(0.85, 0.95)], [home, away, away, home])
    return [static, c.solid(xy=xy, name="departing")]


# ----------------------------------------------------------------------------------------------------------------
# 2 bouncing

def bouncing1(c):
    lift = bounce_lift(c.t, 0.0, c.u(0.7, 0.88), c.u(3.5, 5.0), c.u(0.45, 0.6), 4)
    return [c.solid(xy=c.spots(1, 1.0, 0)[0], lift=lift, name="ball")]


def _bouncing_row(c, heights):
    n = len(heights)
    direction = c.direction()
    spacing = c.u(3.2, 3.6)
    out = []
    for k, h in enumerate(heights):
        xy = direction * spacing * (k - (n - 1) / 2)
        lift = bounce_lift(c.t, c.u(0.0, 0.05), c.u(0.7, 0.9), h, c.u(0.45, 0.6), 4)
        out.append(c.solid(xy=xy, lift=lift, scale=c.u(0.8, 1.0), name=f"ball{k}"))
    return out


def bouncing2(c):
    base = c.u(3.5, 5.0)
    return _bouncing_row(c, [base * c.u(0.92, 1.08) for _ in range(c.pick([3, 4]))])


def bouncing3(c):
    n = c.pick([3, 4])
    low = c.u(1.2, 1.6)
    heights = low * np.cumprod([1.0] + [c.u(1.7, 2.1) for _ in range(n - 1)])
    heights = heights / heights.max() * min(heights.max(), 8.0)
    return _bouncing_row(c, list(heights))  # ever higher along the row


def bouncing4(c):
    # thrown at a wall on the left or the right of the screen: it hits the wall in the air, rebounds, drops and
    # bounces to rest on its way back
    side = c.sign()
    ball = c.solid(name="ball")
    wall_x = side * c.u(2.6, 3.0)
    wall = c.box((wall_x, 0.0), (0.2, c.u(1.8, 2.2), c.u(1.9, 2.2)), "wall")
    contact = wall_x - side * (0.2 + FOOTPRINT[ball.shape] * ball.scale[0] + 0.05)
    start = contact - side * c.u(5.5, 6.5)
    t0, t_hit, t_rest = c.u(0.0, 0.06), c.u(0.3, 0.36), c.u(0.85, 0.95)
    approach = np.clip((c.t - t0) / (t_hit - t0), 0, 1)
    back = 1 - (1 - np.clip((c.t - t_hit) / (t_rest - t_hit), 0, 1)) ** 2   # slows down to rest
    x = np.where(c.t < t_hit, start + (contact - start) * approach, contact - c.u(0.5, 0.65) * (contact - start) * back)
    h0, h_hit = c.u(2.0, 2.6), c.u(0.9, 1.3)
    lift = np.where(c.t < t_hit, h0 - (h0 - h_hit) * approach ** 2,
                    bounce_lift(c.t, t_hit, t_hit + 0.8 * (t_rest - t_hit), h_hit, c.u(0.4, 0.5), 2))
    set_xy(ball, np.column_stack([x, np.zeros(c.n)]))
    ball.pos[:, 2] = rest_z(ball) + lift
    return [ball, wall]


def bouncing5(c):
    direction = c.lateral()
    t1 = c.u(0.75, 0.9)
    length = c.u(8.0, 11.0)
    xy = lerp(-direction * length / 2, direction * length / 2, ramp(c.t, 0.0, t1, eased=False))
    lift = bounce_lift(c.t, 0.0, t1, c.u(3.0, 4.0), c.u(0.7, 0.8), 4)
    return [c.solid(xy=xy, lift=lift, name="ball")]


def bouncing6(c):
    lift = periodic_bounce(c.t, c.u(3.0, 4.5), c.pick([3, 4]), c.u(0, 1))
    return [c.solid(xy=c.spots(1, 1.0, 0)[0], lift=lift, name="ball")]


def _stairs(c, down):
    """A ball hopping from step to step of a staircase (drawn: one box per step, as tall as its floor)."""
    ball = c.solid(name="ball")
    steps = c.pick([3, 4])
    step_h = c.u(0.8, 1.1)
    step_d = 2 * FOOTPRINT[ball.shape] * ball.scale[0] + c.u(0.4, 0.8)  # the ball fits on a step
    direction = c.sign()
    floors = step_h * np.arange(steps, -1, -1) if down else step_h * np.arange(0, steps + 1)
    xs = direction * step_d * (np.arange(steps + 1) - steps / 2)
    lift, x = hops(c.t, c.u(0.05, 0.12), c.u(0.8, 0.92), floors, xs, apex=step_h * c.u(2.0, 2.3))
    set_xy(ball, np.column_stack([x, np.zeros_like(x)]))
    ball.pos[:, 2] = rest_z(ball) + lift
    depth, color = c.u(1.4, 1.7), None
    stairs = []
    for k in np.nonzero(floors > 0)[0]:
        stairs.append(c.box((xs[k], 0.0), (step_d / 2, depth, floors[k] / 2), f"step{k}", color))
        color = stairs[0].color[0]
    return [ball] + stairs


def bouncing7(c):
    return _stairs(c, down=True)


def bouncing8(c):
    return _stairs(c, down=False)


# ----------------------------------------------------------------------------------------------------------------
# 3 changing color

def changing_color1(c):
    k = c.pick([5, 6])
    cols = c.colors(k)
    interval = 1.0 / k
    blend = interval * c.u(0.2, 0.35)
    times, values = [0.0], [cols[0]]
    for i in range(1, k):
        times += [i * interval - blend / 2, i * interval + blend / 2]
        values += [cols[i - 1], cols[i]]
    return [c.solid(xy=c.spots(1, 1.0, 0)[0], color=keyframes(c.t, times, values), name="object")]


def changing_color2(c):
    ca, cb = c.colors(2)
    ts = c.u(0.35, 0.55)
    f = ramp(c.t, ts, ts + c.u(0.12, 0.2))
    direction = c.direction() * c.u(1.7, 2.0)
    return [c.solid(xy=-direction, color=lerp(ca, cb, f), name="a"),
            c.solid(xy=direction, color=lerp(cb, ca, f), name="b")]


def _bright_dark(c, to_dark):
    h, s = c.look.uniform(), c.look.uniform(0.5, 0.9)
    bright, dark = hsv(h, s, c.u(0.9, 1.0)), hsv(h, s, c.u(0.1, 0.16))
    f = ramp(c.t, c.u(0.0, 0.15), c.u(0.75, 0.95))
    return [c.solid(xy=c.spots(1, 1.0, 0)[0], color=lerp(bright, dark, f) if to_dark else lerp(dark, bright, f),
                    name="object")]


def changing_color3(c):
    return _bright_dark(c, to_dark=True)


def changing_color4(c):
    return _bright_dark(c, to_dark=False)


def changing_color5(c):
    c0, c1 = c.colors(2)
    t1, t2 = c.u(0.15, 0.25), c.u(0.6, 0.7)
    blend = c.u(0.1, 0.14)
    col = keyframes(c.t, [t1, t1 + blend, t2, t2 + blend], [c0, c1, c1, c0])
    return [c.solid(xy=c.spots(1, 1.0, 0)[0], color=col, name="object")]


# ----------------------------------------------------------------------------------------------------------------
# 4 changing shape: the old shape shrinks away while the new one grows in its place (as the official scripts do)

def _morph(c, xy, color, scale, yaw, shapes, times, name):
    """One object whose shape goes shapes[0] -> shapes[1] -> ... over the windows times[i] = (start, end)."""
    pieces = []
    for i, shape in enumerate(shapes):
        grow = ramp(c.t, *times[i - 1]) if i > 0 else np.ones(c.n)
        shrink = 1 - ramp(c.t, *times[i]) if i < len(times) else np.ones(c.n)
        size = np.minimum(grow, shrink)
        s = c.solid(shape=shape, color=color, xy=xy, scale=scale * np.maximum(size, 0.02), yaw=yaw,
                    alpha=(size > 0.02).astype(float), name=f"{name}:{shape}")
        pieces.append(s)
    return pieces


def _into(c, target):
    src = c.shape(exclude=(target,))
    t0 = c.u(0.1, 0.3)
    return _morph(c, c.spots(1, 1.0, 0)[0], c.color(), c.u(0.9, 1.2), c.yaw(), [src, target],
                  [(t0, t0 + c.u(0.35, 0.45))], "object")


def changing_shape1(c):
    return _into(c, "pyramid")


def changing_shape2(c):
    return _into(c, "cube")


def changing_shape3(c):
    return _into(c, "sphere")


def changing_shape4(c):
    return _into(c, "cylinder")


def changing_shape5(c):
    a = c.shape()
    b = c.shape(exclude=(a,))
    ca, cb = c.colors(2)
    t0 = c.u(0.15, 0.3)
    window = [(t0, t0 + c.u(0.35, 0.45))]
    offset = c.direction() * c.u(1.9, 2.2)
    return (_morph(c, -offset, ca, c.u(0.9, 1.1), c.yaw(), [a, b], window, "a")
            + _morph(c, offset, cb, c.u(0.9, 1.1), c.yaw(), [b, a], window, "b"))


def changing_shape6(c):
    a = c.shape()
    b = c.shape(exclude=(a,))
    t1, t2 = c.u(0.1, 0.2), c.u(0.55, 0.65)
    d = c.u(0.2, 0.25)
    return _morph(c, c.spots(1, 1.0, 0)[0], c.color(), c.u(0.9, 1.2), c.yaw(), [a, b, a],
                  [(t1, t1 + d), (t2, t2 + d)], "object")


# ----------------------------------------------------------------------------------------------------------------
# 5 cloning: a copy appears exactly inside the original (invisible until then) and moves out of it

def _clone(c, original, t_appear, path_xy, name, color=None):
    clone = c.copy_of(original, name)
    clone.alpha = (c.t >= t_appear).astype(float)
    set_xy(clone, path_xy)
    if color is not None:
        clone.color = color
    return clone


def cloning1(c):
    p = c.spots(1, 1.0, 0)[0]
    direction = c.lateral()
    original = c.solid(xy=p, name="original")
    tc, t1 = c.u(0.3, 0.4), c.u(0.75, 0.92)
    d1 = c.u(2.0, 3.0)
    d2 = d1 + gap_for(original, original, extra=c.u(0.8, 1.4))
    f = ramp(c.t, tc, t1)
    set_xy(original, lerp(p, p + direction * d1, f))
    return [original, _clone(c, original, tc, lerp(p, p + direction * d2, f), "clone")]


def cloning2(c):
    p = c.spots(1, 1.0, 0)[0]
    direction = c.lateral()
    original = c.solid(xy=p, name="original")
    tc, t1 = c.u(0.3, 0.4), c.u(0.75, 0.92)
    f = ramp(c.t, tc, t1)
    other = rotate2(-direction, c.u(-0.5, 0.5))
    set_xy(original, lerp(p, p + direction * c.u(2.5, 3.5), f))
    return [original, _clone(c, original, tc, lerp(p, p + other * c.u(2.5, 3.5), f), "clone")]


def cloning3(c):
    p = np.zeros(2)
    original = c.solid(xy=p, scale=c.u(0.8, 1.0), name="original")
    n = 3
    slots = ring(n, gap_for(original, original, extra=c.u(0.6, 1.0)), c.u(0, 2 * math.pi))
    dur, pause = c.u(0.15, 0.18), c.u(0.06, 0.1)
    t0 = c.u(0.05, 0.95 - n * dur - (n - 1) * pause)
    out = [original]
    for k in range(n):
        tk = t0 + k * (dur + pause)
        out.append(_clone(c, original, tk, lerp(p, slots[k], ramp(c.t, tk, tk + dur)), f"clone{k}"))
    return out


def cloning4(c):
    p = np.zeros(2)
    original = c.solid(xy=p, scale=c.u(0.8, 1.0), name="original")
    n = c.pick([3, 4])
    slots = ring(n, gap_for(original, original, extra=c.u(0.6, 1.0)), c.u(0, 2 * math.pi))
    tc = c.u(0.25, 0.4)
    f = ramp(c.t, tc, tc + c.u(0.35, 0.5))
    return [original] + [_clone(c, original, tc, lerp(p, slots[k], f), f"clone{k}") for k in range(n)]


def cloning5(c):
    p = c.spots(1, 1.0, 0)[0]
    direction = c.lateral()
    h, base = c.hue_color()
    original = c.solid(xy=p, color=base, name="original")
    tc, t1 = c.u(0.3, 0.4), c.u(0.75, 0.92)
    f = ramp(c.t, tc, t1)
    set_xy(original, lerp(p, p - direction * c.u(1.6, 2.0), f))
    new_color = lerp(base, c.color(unlike=[h]), ramp(c.t, tc, tc + (t1 - tc) * 0.6))
    return [original, _clone(c, original, tc, lerp(p, p + direction * c.u(1.6, 2.0), f), "recoloured clone",
                             color=new_color)]


# ----------------------------------------------------------------------------------------------------------------
# 8 expanding / 18 shrinking (objects stay on the ground while they grow or shrink)

def _resize(c, sizes, shapes=None, same_look=False):
    """Solids in a row changing size from sizes[k][0] to sizes[k][1] over one window."""
    n = len(sizes)
    f = ramp(c.t, c.u(0.0, 0.15), c.u(0.7, 0.95))
    shape0, color0, yaw0 = c.shape(), c.color(), c.yaw()
    biggest = [max(a, b) for a, b in sizes]
    direction = c.direction()
    xs = np.cumsum([0.0] + [(biggest[k] + biggest[k + 1]) * 1.5 + 0.6 for k in range(n - 1)])
    xs -= xs.mean()
    out = []
    for k, (a, b) in enumerate(sizes):
        shape = shape0 if same_look else (shapes[k] if shapes else c.shape())
        out.append(c.solid(shape=shape, color=color0 if same_look else None, yaw=yaw0 if same_look else None,
                           xy=direction * xs[k], scale=a + (b - a) * f, name=f"object{k}"))
    return out


def expanding1(c):
    s0 = c.u(0.45, 0.6)
    return _resize(c, [(s0, s0 * c.u(1.45, 1.75))])


def expanding2(c):
    s0 = c.u(0.4, 0.55)
    return _resize(c, [(s0, s0 * c.u(2.8, 3.4))])


def expanding3(c):
    a = c.shape()
    b = c.shape(exclude=(a,))
    end = c.u(1.1, 1.4)
    return _resize(c, [(c.u(0.4, 0.6), end), (c.u(0.4, 0.6), end)], shapes=[a, b])


def expanding4(c):
    s0 = c.u(0.4, 0.55)
    return _resize(c, [(s0, s0 * c.u(1.4, 1.6)), (s0, s0 * c.u(2.8, 3.2))], same_look=True)


def shrinking1(c):
    s0 = c.u(1.2, 1.5)
    return _resize(c, [(s0, s0 / c.u(1.45, 1.75))])


def shrinking2(c):
    s0 = c.u(1.3, 1.6)
    return _resize(c, [(s0, s0 / c.u(4.0, 6.0))])


def shrinking3(c):
    a = c.shape()
    b = c.shape(exclude=(a,))
    end = c.u(0.45, 0.6)
    return _resize(c, [(c.u(1.1, 1.5), end), (c.u(1.1, 1.5), end)], shapes=[a, b])


def shrinking4(c):
    a = c.shape()
    b = c.shape(exclude=(a,))
    sa, sb = c.u(1.2, 1.5), c.u(1.2, 1.5)
    return _resize(c, [(sa, sa / c.u(1.3, 1.5)), (sb, sb / c.u(3.0, 3.5))], shapes=[a, b])


# ----------------------------------------------------------------------------------------------------------------
# 9 falling / 16 rising (view-relative: sideways motion is across the screen)

def _fall(c):
    return c.u(0.6, 0.85), c.u(6.0, 8.5), c.sign()


def falling1(c):
    t_land, h0, _ = _fall(c)
    t0 = c.u(0.0, 0.1)
    tau = np.clip((c.t - t0) / (t_land - t0), 0, 1)
    return [c.solid(xy=c.spots(1, 1.0, 0)[0], lift=h0 * (1 - tau ** 2), name="object")]


def _zigzag(c, rising):
    # legs alternate left and right, as wide as they are high or wider (the official zigzag script moves 4 units
    # sideways per step); keyed like Blender's default, easing into and out of every corner
    legs = c.pick([4, 5, 6])
    h = c.u(7.0, 8.5)
    swing = c.u(3.2, 4.2)
    levels = np.linspace(0, h, legs + 1) if rising else np.linspace(h, 0, legs + 1)
    xs = c.sign() * swing * (np.arange(legs + 1) % 2 - 0.5)
    times = np.linspace(c.u(0.0, 0.08), c.u(0.85, 0.95), legs + 1)
    x = keyframes(c.t, times, xs)
    return [c.solid(xy=np.column_stack([x, np.zeros_like(x)]), lift=keyframes(c.t, times, levels), name="object")]


def _bend(s, power=0.7):
    """A quarter superellipse from (0, 0) to (1, 1): (sideways, up) at s in 0..1. It leaves straight up and
    arrives level; power < 1 sharpens the bend (0.7: the middle of the path lies 0.28 of the chord off it)."""
    a = 0.5 * math.pi * np.clip(s, 0, 1)
    return 1 - np.cos(a) ** power, np.sin(a) ** power


def falling2(c):
    return _zigzag(c, rising=False)


def falling3(c):
    t_land, h0, side = _fall(c)
    t0 = c.u(0.0, 0.1)
    tau = np.clip((c.t - t0) / (t_land - t0), 0, 1) ** 2  # accelerating along a straight slanted line
    dx = side * h0 * c.u(0.8, 1.2)
    return [c.solid(xy=np.column_stack([-dx / 2 + dx * tau, np.zeros(c.n)]), lift=h0 * (1 - tau), name="object")]


def falling4(c):
    t_land, h0, side = _fall(c)
    t0 = c.u(0.0, 0.1)
    tau = np.clip((c.t - t0) / (t_land - t0), 0, 1)
    dx = side * h0 * c.u(0.8, 1.2)
    # the bend of rising4 played backwards: it sets off sideways and curves down into a vertical drop
    x, z = _bend(1 - tau ** 1.5)
    return [c.solid(xy=np.column_stack([dx * (x - 0.5), np.zeros(c.n)]), lift=h0 * z, name="object")]


def rising1(c):
    f = ramp(c.t, c.u(0.0, 0.15), c.u(0.75, 0.95))
    return [c.solid(xy=c.spots(1, 1.0, 0)[0], lift=c.u(6.0, 8.0) * f, name="object")]


def rising2(c):
    return _zigzag(c, rising=True)


def rising3(c):
    f = ramp(c.t, c.u(0.0, 0.15), c.u(0.75, 0.95))
    h = c.u(6.0, 8.0)
    dx = c.sign() * h * c.u(0.8, 1.2)
    return [c.solid(xy=np.column_stack([-dx / 2 + dx * f, np.zeros(c.n)]), lift=h * f, name="object")]


def rising4(c):
    f = ramp(c.t, c.u(0.0, 0.15), c.u(0.75, 0.95))
    h = c.u(6.0, 8.0)
    dx = c.sign() * h * c.u(0.8, 1.2)
    x, z = _bend(f)  # straight up at first, then curving over to level
    return [c.solid(xy=np.column_stack([dx * (x - 0.5), np.zeros(c.n)]), lift=h * z, name="object")]


# ----------------------------------------------------------------------------------------------------------------
# 10 following: the follower is where the leader was a fixed distance of path ago

class Path:
    """A ground path through waypoints (Catmull-Rom), walked by arc length."""

    def __init__(self, waypoints, samples=400):
        w = np.asarray(waypoints, np.float64)
        if len(w) == 2:
            s = np.linspace(0, 1, samples)[:, None]
            pts = w[0] + (w[1] - w[0]) * s
        else:
            ext = np.vstack([2 * w[0] - w[1], w, 2 * w[-1] - w[-2]])
            p0, p1, p2, p3 = (ext[k:k + len(w) - 1, None] for k in range(4))  # (segments, 1, 2) each
            u = np.linspace(0, 1, samples // (len(w) - 1), endpoint=False)[None, :, None]
            pts = 0.5 * (2 * p1 + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u * u
                         + (-p0 + 3 * p1 - 3 * p2 + p3) * u ** 3)
            pts = np.vstack([pts.reshape(-1, 2), w[-1:]])
        self.points = pts
        self.arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
        self.length = float(self.arc[-1])

    def at(self, s):
        s = np.clip(s, 0, self.length)
        return np.column_stack([np.interp(s, self.arc, self.points[:, 0]), np.interp(s, self.arc, self.points[:, 1])])


def _line(c, length):
    direction = c.lateral()
    return Path([-direction * length / 2, direction * length / 2])


def following1(c):
    gap = c.u(2.9, 3.4)
    path = _line(c, c.u(9.0, 11.0))
    s = gap + (path.length - gap) * ramp(c.t, c.u(0.0, 0.08), c.u(0.88, 1.0), eased=False)
    return [c.solid(xy=path.at(s), name="leader"), c.solid(xy=path.at(s - gap), name="follower")]


def following2(c):
    gap = c.u(2.9, 3.4)
    path = _line(c, c.u(9.0, 11.0))
    s = gap + (path.length - gap) * ramp(c.t, c.u(0.0, 0.08), c.u(0.88, 1.0), eased=False)
    follower = path.at(s - gap)
    split = c.u(0.35, 0.45)
    i = int(np.searchsorted(c.t, split))
    heading = (path.points[-1] - path.points[0]) / path.length
    # from the split on, the follower keeps its speed but turns off onto a path of its own, back and away from the
    # camera (sideways on screen it turns round, which a level camera sees as well as a high one)
    turn = rotate2(heading, math.copysign(c.u(2.0, 2.4), heading[0]))
    follower[i:] = follower[i] + turn[None] * (s[i:] - s[i])[:, None]
    return [c.solid(xy=path.at(s), name="leader"), c.solid(xy=follower, name="follower")]


def following3(c):
    gap = c.u(2.9, 3.3)
    n = c.pick([2, 3])
    path = _line(c, c.u(10.0, 12.0))
    s = n * gap + (path.length - n * gap) * ramp(c.t, c.u(0.0, 0.08), c.u(0.88, 1.0), eased=False)
    return [c.solid(xy=path.at(s), name="leader")] + [c.solid(xy=path.at(s - k * gap), name=f"follower{k}")
                                                    for k in range(1, n + 1)]


def _winding_path(c):
    # away from the camera in sharp bends alternating left and right (the first one to either side): a serpentine,
    # never close to a straight line
    heading = math.pi / 2 + c.u(-0.3, 0.3)
    turn = c.sign()
    pts = [np.zeros(2)]
    for k in range(4):
        heading += turn * (-1) ** k * (c.u(0.9, 1.1) if k == 0 else c.u(1.6, 1.9))
        pts.append(pts[-1] + unit(heading) * c.u(4.5, 5.5))
    pts = np.array(pts)
    return Path(pts - (pts.min(0) + pts.max(0)) / 2)


def following4(c):
    path = _winding_path(c)
    leader, follower = c.solid(name="leader"), c.solid(name="follower")
    progress = ramp(c.t, c.u(0.0, 0.06), c.u(0.9, 1.0), eased=False)
    gap = c.u(3.4, 3.8)
    while True:  # round the bends the two come closer than `gap`: keep their footprints apart
        s = gap + (path.length - gap) * progress
        if np.linalg.norm(path.at(s) - path.at(s - gap), axis=1).min() > footprint_gap(leader, follower, extra=0.3):
            break
        gap += 0.2
    set_xy(leader, path.at(s))
    set_xy(follower, path.at(s - gap))
    return [leader, follower]


def following5(c):
    gap = c.u(2.9, 3.3)
    path = _line(c, c.u(9.0, 11.0))
    s = gap + (path.length - gap) * ramp(c.t, c.u(0.0, 0.06), c.u(0.9, 1.0), eased=False)
    trail = path.at(s - gap)
    # at first the follower waits off the path, then it joins the trail and follows
    mid = path.at(np.array([path.length / 2]))[0]
    normal = rotate2((path.points[-1] - path.points[0]) / path.length, math.pi / 2)
    own = mid + math.copysign(c.u(4.5, 5.5), normal[1]) * normal  # behind the leader's line, seen from the camera
    t_start, t_join = c.u(0.3, 0.4), c.u(0.55, 0.62)
    f = ramp(c.t, t_start, t_join)
    follower = own[None] * (1 - f[:, None]) + trail * f[:, None]
    return [c.solid(xy=path.at(s), name="leader"), c.solid(xy=follower, name="follower")]


# ----------------------------------------------------------------------------------------------------------------
# 11 merging: same-looking objects meet; once they coincide only one is drawn

def merging1(c):
    shape, color, yaw, scale = c.shape(), c.color(), c.yaw(), c.u(0.85, 1.1)
    mid = c.spots(1, 1.0, 0)[0]
    direction = c.lateral() * c.u(3.5, 5.0)
    t1 = c.u(0.65, 0.85)
    f = ramp(c.t, c.u(0.0, 0.1), t1)
    a = c.solid(shape=shape, color=color, yaw=yaw, scale=scale, xy=lerp(mid - direction, mid, f), name="a")
    b = c.solid(shape=shape, color=color, yaw=yaw, scale=scale, xy=lerp(mid + direction, mid, f), name="b",
                alpha=(c.t < t1).astype(float))
    return [a, b]


def merging2(c):
    shape, color, yaw, scale = c.shape(), c.color(), c.yaw(), c.u(0.85, 1.1)
    direction = c.lateral()
    slow_speed = c.u(3.0, 5.0)            # units per clip
    head_start = c.u(4.0, 5.0)
    t_meet = c.u(0.45, 0.6)
    fast_speed = slow_speed + head_start / t_meet
    start = -direction * (fast_speed * t_meet + (1 - t_meet) * slow_speed) / 2
    slow = start + direction * head_start + direction * slow_speed * c.t[:, None]
    fast = np.where((c.t < t_meet)[:, None], start + direction * fast_speed * c.t[:, None], slow)
    return [c.solid(shape=shape, color=color, yaw=yaw, scale=scale, xy=slow, name="slower"),
            c.solid(shape=shape, color=color, yaw=yaw, scale=scale, xy=fast, name="faster",
                    alpha=(c.t < t_meet).astype(float))]


def _merge_group(c, centre, n, t0, t_meet, t_big, name):
    shape, color, yaw, scale = c.shape(), c.color(), c.yaw(), c.u(0.7, 0.9)
    pts = ring(n, c.u(2.8, 3.4) if n == 2 else c.u(3.2, 3.8), c.u(0, 2 * math.pi), centre)
    f = ramp(c.t, t0, t_meet)
    out = []
    for k, p in enumerate(pts):
        s = scale * (1 + (n ** (1 / 3) - 1) * ramp(c.t, t_meet, t_big)) if k == 0 else scale
        alpha = 1.0 if k == 0 else (c.t < t_meet).astype(float)
        out.append(c.solid(shape=shape, color=color, yaw=yaw, scale=s, xy=lerp(p, centre, f), alpha=alpha,
                           name=f"{name}{k}"))
    return out


def merging3(c):
    t_meet = c.u(0.5, 0.62)
    return _merge_group(c, np.zeros(2), c.pick([3, 4]), c.u(0.0, 0.1), t_meet, t_meet + c.u(0.15, 0.25), "part")


def merging4(c):
    t_meet = c.u(0.5, 0.62)
    offset = c.direction() * c.u(4.2, 4.8)
    t0, t_big = c.u(0.0, 0.1), t_meet + c.u(0.15, 0.25)
    return (_merge_group(c, -offset, c.pick([2, 3]), t0, t_meet, t_big, "a")
            + _merge_group(c, offset, c.pick([2, 3]), t0, t_meet, t_big, "b"))


# ----------------------------------------------------------------------------------------------------------------
# 12 moving in a path

def moving_in_a_path1(c):
    # slowly over half the clip, then it stays where it stopped
    d = c.oblique() * c.u(4.5, 6.0)
    return [c.solid(xy=lerp(-d / 2, d / 2, ramp(c.t, c.u(0.0, 0.06), c.u(0.55, 0.65))), name="object")]


def moving_in_a_path2(c):
    # the same distance in a sixth of the time, early, then it stays
    d = c.oblique() * c.u(4.5, 6.0)
    t0 = c.u(0.05, 0.2)
    return [c.solid(xy=lerp(-d / 2, d / 2, ramp(c.t, t0, t0 + c.u(0.12, 0.16))), name="object")]


def moving_in_a_path3(c):
    d = c.oblique() * c.u(4.5, 6.0)
    times = [c.u(0.0, 0.08), c.u(0.38, 0.45), c.u(0.55, 0.62), c.u(0.9, 0.98)]
    return [c.solid(xy=keyframes(c.t, times, [-d / 2, d / 2, d / 2, -d / 2]), name="object")]


def moving_in_a_path4(c):
    a = c.solid(name="a")
    b = c.solid(name="b")
    half = c.u(2.5, 3.5)
    width = gap_for(a, b, extra=0.4) / 2 + c.u(0.0, 0.5)
    angle0 = math.atan2(*c.lateral()[::-1])
    spin = c.sign()
    # both walk half an ellipse around the midpoint, always on opposite sides of it
    phi = math.pi * ramp(c.t, c.u(0.05, 0.2), c.u(0.8, 0.95)) * spin
    ell = np.column_stack([half * np.cos(phi), width * np.sin(phi)])
    set_xy(a, rotate2(ell, angle0))
    set_xy(b, rotate2(-ell, angle0))
    return [a, b]


def moving_in_a_path5(c):
    return _across(c, +1)


def moving_in_a_path6(c):
    return _across(c, -1)


def _across(c, sign):
    # straight across the screen for the whole clip, never stopping (moving_in_a_path1-3 move obliquely and stop)
    x = c.u(5.0, 6.0)
    f = ramp(c.t, c.u(0.0, 0.05), c.u(0.95, 1.0))
    y = c.u(-1.0, 1.0)
    return [c.solid(xy=np.column_stack([sign * (-x + 2 * x * f), np.full(c.n, y)]), name="object")]


# ----------------------------------------------------------------------------------------------------------------
# 13 not colliding

def not_colliding1(c):
    a, b = c.solid(name="a"), c.solid(name="b")
    lane = gap_for(a, b, extra=c.u(0.3, 0.8)) / 2
    d = c.u(5.5, 7.0)
    angle = math.atan2(*c.lateral()[::-1])
    f = ramp(c.t, c.u(0.0, 0.05), c.u(0.95, 1.0), eased=False)
    set_xy(a, rotate2(np.column_stack([-d + 2 * d * f, np.full(c.n, -lane)]), angle))
    set_xy(b, rotate2(np.column_stack([d - 2 * d * f, np.full(c.n, lane)]), angle))
    return [a, b]


def not_colliding2(c):
    still = c.solid(name="stationary")
    mover = c.solid(name="mover")
    clearance = gap_for(still, mover, extra=c.u(0.3, 0.8))
    d = c.u(5.5, 7.0)
    f = ramp(c.t, c.u(0.0, 0.05), c.u(0.95, 1.0), eased=False)
    x = -d + 2 * d * f
    # heads straight at the other object, swerves around it at the last moment, carries on
    # width >= sqrt(2) * clearance keeps x^2 + y^2 >= clearance^2 everywhere
    y = c.sign() * clearance * np.exp(-(x / (clearance * c.u(1.5, 1.7))) ** 2)
    set_xy(mover, rotate2(np.column_stack([x, y]), math.atan2(*c.lateral()[::-1])))
    return [still, mover]


def not_colliding3(c):
    n = c.pick([3, 4])
    movers = [c.solid(scale=c.u(0.75, 0.95), name=f"mover{k}") for k in range(n)]
    r = max(float(np.max(m.radius)) for m in movers)
    miss = (2 * r + c.u(0.3, 0.7)) / (2 * math.sin(math.pi / n))
    length = c.u(6.0, 8.0)
    s = -length + 2 * length * ramp(c.t, c.u(0.0, 0.05), c.u(0.95, 1.0), eased=False)
    base = np.column_stack([np.full(c.n, miss), s])
    angle0 = c.u(0, 2 * math.pi)
    # every object moves along a line passing the centre at distance `miss`, all in step: they converge
    # and swirl past each other
    for k, m in enumerate(movers):
        set_xy(m, rotate2(base, angle0 + 2 * math.pi * k / n))
    return movers


def not_colliding4(c):
    a, b = c.solid(scale=c.u(0.75, 0.95), name="clockwise"), c.solid(scale=c.u(0.75, 0.95), name="counterclockwise")
    r1 = c.u(2.8, 3.4)
    r2 = r1 + gap_for(a, b, extra=c.u(0.4, 0.9))
    turns = c.u(0.8, 1.0) * 2 * math.pi
    meet = c.u(0, 2 * math.pi)
    f = ramp(c.t, 0.0, 1.0, eased=False) - 0.5
    set_xy(a, np.column_stack([r1 * np.cos(meet - turns * f), r1 * np.sin(meet - turns * f)]))
    set_xy(b, np.column_stack([r2 * np.cos(meet + turns * f), r2 * np.sin(meet + turns * f)]))
    return [a, b]


def not_colliding5(c):
    n = 3
    still = [c.solid(scale=c.u(0.8, 1.0), name=f"stationary{k}") for k in range(n)]
    mover = c.solid(scale=c.u(0.7, 0.85), name="mover")
    spacing = 2 * gap_for(still[0], mover, extra=c.u(0.4, 0.8)) + 0.4
    xs = spacing * (np.arange(n) - (n - 1) / 2)
    angle = c.u(0, 2 * math.pi)
    for k, s in enumerate(still):
        set_xy(s, rotate2(np.array([xs[k], 0.0]), angle))
    gap_x = (xs[0] + xs[1]) / 2 if c.u() < 0.5 else (xs[1] + xs[2]) / 2
    d = c.u(6.0, 8.0)
    y = -d + 2 * d * ramp(c.t, c.u(0.0, 0.05), c.u(0.95, 1.0), eased=False)
    set_xy(mover, rotate2(np.column_stack([np.full(c.n, gap_x), y]), angle))
    return still + [mover]


# ----------------------------------------------------------------------------------------------------------------
# 14 occlusion (view-relative: "in front" = nearer to the camera, which looks along +y)

def occlusion1(c):
    c.elevation = (20.0, 28.0)
    big = c.solid(scale=c.u(1.8, 2.2), name="big")
    small = c.solid(scale=c.u(0.55, 0.7), name="small")
    depth = -footprint_gap(big, small, extra=c.u(0.2, 0.4))
    side = c.sign()
    x_end = c.u(-0.6, 0.6)
    f = ramp(c.t, c.u(0.0, 0.1), c.u(0.75, 0.95))
    set_xy(small, np.column_stack([side * c.u(5.0, 6.0) * (1 - f) + x_end * f, np.full(c.n, depth)]))
    return [big, small]


def occlusion2(c):
    c.elevation = (20.0, 28.0)
    small = c.solid(scale=c.u(0.45, 0.6), name="small")
    big = c.solid(scale=c.u(1.7, 2.1), name="big")
    depth = -footprint_gap(big, small, extra=c.u(0.1, 0.3))
    side = c.sign()
    f = ramp(c.t, c.u(0.0, 0.1), c.u(0.75, 0.95))
    set_xy(big, np.column_stack([side * c.u(6.5, 7.5) * (1 - f), np.full(c.n, depth)]))
    return [small, big]


def occlusion3(c):
    c.elevation = (20.0, 28.0)
    back = c.solid(scale=c.u(0.9, 1.1), name="occluded")
    front = c.solid(scale=c.u(0.9, 1.1), name="occluder")
    radius = footprint_gap(back, front, extra=c.u(0.2, 0.4))
    side = c.sign()
    # the occluder walks half a circle around the other object, from in front of it to behind it
    theta = -math.pi / 2 + side * math.pi * ramp(c.t, c.u(0.1, 0.25), c.u(0.75, 0.9))
    set_xy(front, np.column_stack([radius * np.cos(theta), radius * np.sin(theta)]))
    return [back, front]


def occlusion4(c):
    c.elevation = (20.0, 28.0)
    fronts = [c.solid(scale=c.u(0.8, 0.95), name=f"front{k}") for k in range(2)]
    backs = [c.solid(scale=c.u(0.8, 0.95), name=f"back{k}") for k in range(2)]
    depth = max(footprint_gap(f, b, extra=0.15) for f in fronts for b in backs)
    x_half = c.u(2.6, 3.0)
    shift = c.u(0.25, 0.5)
    times = [c.u(0.05, 0.1), c.u(0.3, 0.35), c.u(0.38, 0.42), c.u(0.6, 0.65), c.u(0.68, 0.72), c.u(0.9, 0.95)]
    out = []
    for k, sign in enumerate((-1.0, 1.0)):
        fx, bx = sign * x_half, sign * (x_half - shift)
        wide = sign * (x_half + gap_for(fronts[k], backs[k], extra=0.6) + 0.5)
        # the front one steps aside and back, the back one comes forward, the first one slides in behind it
        f_path = keyframes(c.t, [times[0], times[1], times[4], times[5]],
                           [[fx, -depth], [wide, 0.0], [wide, 0.0], [bx, 0.0]])
        b_path = keyframes(c.t, [times[2], times[3]], [[bx, 0.0], [fx, -depth]])
        set_xy(fronts[k], f_path)
        set_xy(backs[k], b_path)
        out += [fronts[k], backs[k]]
    return out


# ----------------------------------------------------------------------------------------------------------------
# 15 orbiting: angles measured counter-clockwise seen from above (horizontal) or from the camera (vertical)

# Lower than the official orbiting1 camera (radius 20, height 15-25: 37-51 degrees), so that the orbit reads as a
# flat ellipse on the ground and not as the circle of a vertical orbit (orbiting5/6)
HORIZONTAL_ORBIT_ELEVATION = (20.0, 30.0)


def _orbit(c, centre_lift=0.0):
    centre = c.solid(scale=c.u(0.9, 1.2), lift=centre_lift, name="centre")
    satellite = c.solid(scale=c.u(0.5, 0.7), name="satellite")
    radius = gap_for(centre, satellite, extra=c.u(1.0, 2.0))
    # view-relative: the satellite sets off from the right of the centre object, as the camera sees it, and goes
    # round once or a little more (the official orbiting1: one turn in 120 frames)
    return centre, satellite, radius, c.u(-0.35, 0.35), c.u(1.0, 1.25) * 2 * math.pi


def _horizontal_orbit(c, angle):
    c.elevation = HORIZONTAL_ORBIT_ELEVATION
    centre, satellite, radius, theta0, turns = _orbit(c)
    set_xy(satellite, np.column_stack([radius * np.cos(theta0 + angle(turns)), radius * np.sin(theta0 + angle(turns))]))
    # the satellite floats at the height of the centre object's middle
    satellite.pos[:, 2] = centre.pos[0, 2]
    return [centre, satellite]


def orbiting1(c):
    return _horizontal_orbit(c, lambda turns: -turns * c.t)


def orbiting2(c):
    return _horizontal_orbit(c, lambda turns: turns * c.t)


def orbiting3(c):
    # about two thirds of a turn clockwise until the switch, then as far back
    switch = c.u(0.45, 0.55)
    return _horizontal_orbit(c, lambda turns: -0.6 * turns * np.minimum(c.t, 2 * switch - c.t) / switch)


def orbiting4(c):
    c.elevation = HORIZONTAL_ORBIT_ELEVATION
    a = c.solid(scale=c.u(0.7, 0.9), name="first")
    b = c.solid(scale=c.u(0.7, 0.9), name="second")
    radius = gap_for(a, b, extra=c.u(1.0, 1.8))
    switch = c.u(0.45, 0.55)
    turns = c.u(0.7, 0.9) * 2 * math.pi
    theta0 = c.u(0, 2 * math.pi)
    # phase 1: the first object circles the second (at the origin) clockwise;
    # phase 2: the second circles the first clockwise where the first stopped
    th1 = theta0 - turns * np.clip(c.t / switch, 0, 1)
    a_xy = np.column_stack([radius * np.cos(th1), radius * np.sin(th1)])
    a_end = a_xy[-1] if c.t[-1] <= switch else np.array([radius * math.cos(theta0 - turns),
                                                         radius * math.sin(theta0 - turns)])
    phase2 = np.clip((c.t - switch) / (1 - switch), 0, 1)
    th2 = math.atan2(-a_end[1], -a_end[0]) - turns * phase2
    b_xy = np.where((c.t < switch)[:, None], 0.0, a_end + radius * np.column_stack([np.cos(th2), np.sin(th2)]))
    set_xy(a, a_xy)
    set_xy(b, b_xy)
    b.pos[:, 2] = a.pos[0, 2]
    return [a, b]


def _vertical_orbit(c, sign):
    c.elevation = (5.0, 15.0)  # nearly level: the circle is seen face on, above and below the centre object
    centre, satellite, radius, theta0, turns = _orbit(c)
    hover = radius + float(np.max(satellite.radius)) + 0.3 - centre.pos[0, 2]
    centre.pos[:, 2] += hover
    theta = theta0 + sign * turns * c.t
    satellite.pos[:, 0] = radius * np.cos(theta)
    satellite.pos[:, 1] = 0.0
    satellite.pos[:, 2] = centre.pos[0, 2] + radius * np.sin(theta)
    return [centre, satellite]


def orbiting5(c):
    return _vertical_orbit(c, -1.0)


def orbiting6(c):
    return _vertical_orbit(c, +1.0)


# ----------------------------------------------------------------------------------------------------------------
# 17 shooting projectile: ballistic arcs between corners of a square (constant ground speed, parabolic height)

def _shot(c, start, end, t0, t1, apex, **kw):
    f = ramp(c.t, t0, t1, eased=False)
    kw.setdefault("scale", c.u(1.1, 1.4))  # wide scenes: larger solids stay readable at 112 px
    return c.solid(xy=lerp(start, end, f), lift=4 * apex * f * (1 - f), **kw)


def shooting_projectile1(c):
    # view-relative: from a near corner to the far one, so it crosses the screen diagonally and recedes
    # (shooting_projectile2 and 3 cross it level, from one side to the other)
    half = c.u(4.5, 5.5)
    corner = np.array([c.sign(), -1.0]) * half  # a near corner
    return [_shot(c, corner, -corner, c.u(0.05, 0.15), c.u(0.75, 0.9), c.u(3.0, 5.0), name="projectile")]


def _sideways_shot(c, sign):
    half = c.u(4.5, 5.5)
    y = c.sign() * half * c.u(0.3, 1.0)
    start, end = np.array([sign * half, y]), np.array([-sign * half, y])
    return [_shot(c, start, end, c.u(0.05, 0.15), c.u(0.75, 0.9), c.u(3.0, 5.0), name="projectile")]


def shooting_projectile2(c):
    return _sideways_shot(c, +1)   # from the right corner to the left corner


def shooting_projectile3(c):
    return _sideways_shot(c, -1)


def shooting_projectile4(c):
    half = c.u(4.5, 5.5)
    corner = np.array([c.sign(), c.sign()]) * half
    along = rotate2(-corner / np.linalg.norm(corner), math.pi / 2)
    t0 = c.u(0.02, 0.08)
    delay = c.u(0.2, 0.28)
    first = _shot(c, corner, -corner + along * 1.3, t0, t0 + c.u(0.45, 0.55), c.u(3.0, 4.0), name="first")
    second = _shot(c, corner, -corner - along * 1.3, t0 + delay, t0 + delay + c.u(0.45, 0.55), c.u(4.0, 5.5),
                   name="second")
    # the second projectile is loaded once the first has left
    second.alpha = ramp(c.t, t0 + 0.08, t0 + 0.14)
    return [first, second]


def shooting_projectile5(c):
    half = c.u(4.5, 5.5)
    corner = np.array([c.sign(), c.sign()]) * half
    t0, t1 = c.u(0.05, 0.15), c.u(0.75, 0.9)
    low = c.u(2.0, 3.0)
    a = _shot(c, corner, -corner, t0, t1, low, name="a")
    b = _shot(c, -corner, corner, t0, t1, low, name="b")
    high = low + gap_for(a, b, extra=c.u(0.8, 1.5))
    b.pos[:, 2] = rest_z(b) + 4 * high * ramp(c.t, t0, t1, eased=False) * (1 - ramp(c.t, t0, t1, eased=False))
    return [a, b]


# ----------------------------------------------------------------------------------------------------------------
# 19 teleporting: fade out, move while invisible, fade in

def _teleport_alpha(c):
    t_out = c.u(0.08, 0.2)
    fade = c.u(0.1, 0.18)
    t_in = t_out + fade + c.u(0.08, 0.15)
    alpha = 1 - ramp(c.t, t_out, t_out + fade) + ramp(c.t, t_in, t_in + fade)
    jump = t_out + fade + (t_in - t_out - fade) / 2
    return alpha, jump


def _corners(c, half=None):
    half = c.u(3.6, 4.6) if half is None else half
    angle = c.pick([0.0, math.pi / 2, math.pi, 3 * math.pi / 2])
    return rotate2(np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], float) * half, angle)


def teleporting1(c, to=(1, 2, 3)):
    corners = _corners(c)
    alpha, jump = _teleport_alpha(c)
    return [c.solid(xy=np.where((c.t < jump)[:, None], corners[0], corners[c.pick(to)]), alpha=alpha,
                    scale=c.u(1.0, 1.3), name="teleporter")]


def teleporting2(c):
    # across the centre object, to the opposite corner
    return [c.solid(name="centre")] + teleporting1(c, to=(2,))


def teleporting3(c):
    corners = _corners(c)
    alpha, jump = _teleport_alpha(c)
    before = (c.t < jump)[:, None]
    return [c.solid(xy=np.where(before, corners[0], corners[2]), alpha=alpha, scale=c.u(1.0, 1.3), name="a"),
            c.solid(xy=np.where(before, corners[2], corners[0]), alpha=alpha, scale=c.u(1.0, 1.3), name="b")]


def teleporting4(c):
    corners = _corners(c)
    alpha, jump = _teleport_alpha(c)
    before = (c.t < jump)[:, None]
    shift = c.pick([1, 2, 3])
    return [c.solid(xy=np.where(before, corners[k], corners[(k + shift) % 4]), alpha=alpha, scale=c.u(1.0, 1.2),
                    name=f"corner{k}") for k in range(4)]


def teleporting5(c):
    corners = _corners(c)
    alpha, jump = _teleport_alpha(c)
    home = corners[0]
    stay = c.solid(name="stays")
    go = c.solid(name="teleporter")
    # side by side in the corner, almost touching
    side = rotate2(-home / np.linalg.norm(home), math.pi / 2) * footprint_gap(stay, go, extra=0.15) / 2
    set_xy(stay, home + side)
    # to the corner beside it across the screen (near or far, as the camera sees the stage)
    set_xy(go, np.where((c.t < jump)[:, None], home - side, home * np.array([-1.0, 1.0])))
    go.alpha = alpha
    return [stay, go]


# ----------------------------------------------------------------------------------------------------------------
# the class table: official video path stem -> (program, official frame count)
# Frame counts: `scene.frame_end` of the official Blender scripts (Motion-Transfer, synta_generate_blender/<coarse>/)
# where known (appearing1 140, appearing3 170, arriving/departing/expanding/rising/falling3/occlusion1/merging1/
# changing_shape1 60, cloning1 80, bouncing, changing_color1, following1, moving_in_a_path1, orbiting1, teleporting1
# 120, not_colliding1 130); the other fine classes take the value of their coarse class's known script, or more where
# a class needs more time (one-by-one, there-and-back) -- those are marked (inferred).

CLASSES = {
    "appearing/appearing1": (appearing1, 140),
    "appearing/appearing2": (appearing2, 140),                      # (inferred)
    "appearing/appearing3": (appearing3, 170),
    "appearing/appearing4": (appearing4, 140),                      # (inferred)
    "arriving/arriving1": (arriving1, 60),
    "arriving/arriving2": (arriving2, 60),
    "arriving/arriving3": (arriving3, 120),                         # (inferred) one by one
    "arriving/arriving4": (arriving4, 60),
    "arriving/arriving5": (arriving5, 60),
    "arriving/arriving6": (arriving6, 120),                         # (inferred) there and away
    "bouncing/bouncing1": (bouncing1, 120),
    "bouncing/bouncing2": (bouncing2, 120),
    "bouncing/bouncing3": (bouncing3, 120),
    "bouncing/bouncing4": (bouncing4, 120),
    "bouncing/bouncing5": (bouncing5, 120),
    "bouncing/bouncing6": (bouncing6, 120),
    "bouncing/bouncing7": (bouncing7, 120),
    "bouncing/bouncing8": (bouncing8, 120),
    "changing_color/changing_color1": (changing_color1, 120),
    "changing_color/changing_color2": (changing_color2, 120),       # (inferred)
    "changing_color/changing_color3": (changing_color3, 120),       # (inferred)
    "changing_color/changing_color4": (changing_color4, 120),       # (inferred)
    "changing_color/changing_color5": (changing_color5, 120),       # (inferred)
    "changing_shape/changing_shape1": (changing_shape1, 60),
    "changing_shape/changing_shape2": (changing_shape2, 60),
    "changing_shape/changing_shape3": (changing_shape3, 60),
    "changing_shape/changing_shape4": (changing_shape4, 60),
    "changing_shape/changing_shape5": (changing_shape5, 60),        # (inferred)
    "changing_shape/changing_shape6": (changing_shape6, 120),       # (inferred) there and back
    "cloning/cloning1": (cloning1, 80),
    "cloning/cloning2": (cloning2, 80),                             # (inferred)
    "cloning/cloning3": (cloning3, 120),                            # (inferred) one by one
    "cloning/cloning4": (cloning4, 80),                             # (inferred)
    "cloning/cloning5": (cloning5, 80),                             # (inferred)
    "departing/departing1": (departing1, 60),
    "departing/departing2": (departing2, 60),
    "departing/departing3": (departing3, 120),                      # (inferred) one by one
    "departing/departing4": (departing4, 60),
    "departing/departing5": (departing5, 60),
    "departing/departing6": (departing6, 120),                      # (inferred) away and back
    "disappearing/disappearing1": (disappearing1, 140),             # (inferred) mirrors appearing1
    "disappearing/disappearing2": (disappearing2, 140),             # (inferred)
    "disappearing/disappearing3": (disappearing3, 170),             # (inferred) mirrors appearing3
    "disappearing/disappearing4": (disappearing4, 140),             # (inferred)
    "expanding/expanding1": (expanding1, 60),
    "expanding/expanding2": (expanding2, 60),
    "expanding/expanding3": (expanding3, 60),
    "expanding/expanding4": (expanding4, 60),
    "falling/falling1": (falling1, 60),                             # (inferred) like falling3
    "falling/falling2": (falling2, 120),                            # (inferred) old zigzag script: 120
    "falling/falling3": (falling3, 60),
    "falling/falling4": (falling4, 60),                             # (inferred)
    "following/following1": (following1, 120),
    "following/following2": (following2, 120),
    "following/following3": (following3, 120),
    "following/following4": (following4, 120),
    "following/following5": (following5, 120),
    "merging/merging1": (merging1, 60),
    "merging/merging2": (merging2, 90),                             # (inferred)
    "merging/merging3": (merging3, 90),                             # (inferred) meet, then grow
    "merging/merging4": (merging4, 90),                             # (inferred)
    "moving_in_a_path/moving_in_a_path1": (moving_in_a_path1, 120),
    "moving_in_a_path/moving_in_a_path2": (moving_in_a_path2, 120),
    "moving_in_a_path/moving_in_a_path3": (moving_in_a_path3, 120),
    "moving_in_a_path/moving_in_a_path4": (moving_in_a_path4, 120),
    "moving_in_a_path/moving_in_a_path5": (moving_in_a_path5, 120),
    "moving_in_a_path/moving_in_a_path6": (moving_in_a_path6, 120),
    "not_colliding/not_colliding1": (not_colliding1, 130),
    "not_colliding/not_colliding2": (not_colliding2, 130),
    "not_colliding/not_colliding3": (not_colliding3, 130),
    "not_colliding/not_colliding4": (not_colliding4, 130),
    "not_colliding/not_colliding5": (not_colliding5, 130),
    "occlusion/occlusion1": (occlusion1, 60),
    "occlusion/occlusion2": (occlusion2, 60),                       # (inferred)
    "occlusion/occlusion3": (occlusion3, 120),                      # (inferred) goes around
    "occlusion/occlusion4": (occlusion4, 120),                      # (inferred)
    "orbiting/orbiting1": (orbiting1, 120),
    "orbiting/orbiting2": (orbiting2, 120),
    "orbiting/orbiting3": (orbiting3, 120),
    "orbiting/orbiting4": (orbiting4, 120),
    "orbiting/orbiting5": (orbiting5, 120),
    "orbiting/orbiting6": (orbiting6, 120),
    "rising/rising1": (rising1, 60),
    "rising/rising2": (rising2, 120),                               # (inferred) like falling2
    "rising/rising3": (rising3, 60),
    "rising/rising4": (rising4, 60),
    "shooting_projectile/shooting_projectile1": (shooting_projectile1, 60),   # (inferred) old script: ~40
    "shooting_projectile/shooting_projectile2": (shooting_projectile2, 60),   # (inferred)
    "shooting_projectile/shooting_projectile3": (shooting_projectile3, 120),
    "shooting_projectile/shooting_projectile4": (shooting_projectile4, 90),   # (inferred) two shots
    "shooting_projectile/shooting_projectile5": (shooting_projectile5, 120),  # (inferred)
    "shrinking/shrinking1": (shrinking1, 60),                       # (inferred) mirrors expanding
    "shrinking/shrinking2": (shrinking2, 60),
    "shrinking/shrinking3": (shrinking3, 60),
    "shrinking/shrinking4": (shrinking4, 60),
    "teleporting/teleporting1": (teleporting1, 120),
    "teleporting/teleporting2": (teleporting2, 120),
    "teleporting/teleporting3": (teleporting3, 120),
    "teleporting/teleporting4": (teleporting4, 120),
    "teleporting/teleporting5": (teleporting5, 120),
}

# Defined as seen by the camera (see the module docstring).
VIEW_RELATIVE = {
    "following/following1", "following/following2", "following/following3", "following/following4",
    "following/following5",
    "moving_in_a_path/moving_in_a_path1", "moving_in_a_path/moving_in_a_path2", "moving_in_a_path/moving_in_a_path3",
    "moving_in_a_path/moving_in_a_path4", "merging/merging1", "merging/merging2", "cloning/cloning1",
    "cloning/cloning2", "cloning/cloning5", "not_colliding/not_colliding1", "not_colliding/not_colliding2",
    "bouncing/bouncing5",
    "arriving/arriving1", "arriving/arriving2", "arriving/arriving3", "arriving/arriving4", "arriving/arriving5",
    "arriving/arriving6", "departing/departing1", "departing/departing2", "departing/departing3",
    "departing/departing4", "departing/departing5", "departing/departing6",
    "bouncing/bouncing4", "bouncing/bouncing7", "bouncing/bouncing8",
    "falling/falling2", "falling/falling3", "falling/falling4", "rising/rising2", "rising/rising3", "rising/rising4",
    "moving_in_a_path/moving_in_a_path5", "moving_in_a_path/moving_in_a_path6",
    "occlusion/occlusion1", "occlusion/occlusion2", "occlusion/occlusion3", "occlusion/occlusion4",
    "orbiting/orbiting1", "orbiting/orbiting2", "orbiting/orbiting3", "orbiting/orbiting5", "orbiting/orbiting6",
    "shooting_projectile/shooting_projectile1", "shooting_projectile/shooting_projectile2",
    "shooting_projectile/shooting_projectile3",
    # the corners of the stage as the camera sees it: near left, near right, far left, far right
    "teleporting/teleporting1", "teleporting/teleporting2", "teleporting/teleporting3", "teleporting/teleporting4",
    "teleporting/teleporting5",
}
