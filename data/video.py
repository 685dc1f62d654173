"""Reading frames: one small reader interface, two backends, and the two frame samplers.

    reader = open_video(path, backend="decord")   # or "pyav"
    len(reader)                                    # frame count
    reader.get([0, 8, 16])                         # uint8 array [T, H, W, 3], RGB

decord is the default (fast sparse seeking); PyAV is the fallback, used for a file decord cannot
open and wherever decord is not installed (it has no aarch64/macOS-arm64 wheels).
"""
import logging

import numpy as np

BACKENDS = ("decord", "pyav")
log = logging.getLogger(__name__)
_warned_no_decord = False


class DecordReader:
    def __init__(self, path):
        import decord

        self._vr = decord.VideoReader(str(path), num_threads=1)
        if len(self._vr) == 0:
            raise RuntimeError(f"{path}: no frames")

    def __len__(self):
        return len(self._vr)

    def get(self, indices) -> np.ndarray:
        return self._vr.get_batch(list(indices)).asnumpy()


class PyAVReader:
    """Decodes from the start up to the last wanted frame; fine for short clips and as a fallback."""

    def __init__(self, path):
        import av

        self._path = str(path)
        with av.open(self._path) as container:
            stream = container.streams.video[0]
            # webm files often carry no frame count: count packets instead (no decoding needed)
            self._n = stream.frames or sum(1 for p in container.demux(stream) if p.size)
        if self._n == 0:
            raise RuntimeError(f"{path}: no frames")

    def __len__(self):
        return self._n

    def get(self, indices) -> np.ndarray:
        import av

        wanted = set(int(i) for i in indices)
        last_wanted = max(wanted)
        frames, last_i, last_frame = {}, -1, None
        with av.open(self._path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for last_i, last_frame in enumerate(container.decode(stream)):
                if last_i in wanted:
                    frames[last_i] = last_frame.to_ndarray(format="rgb24")
                if last_i >= last_wanted:
                    break
        if last_frame is None:
            raise RuntimeError(f"{self._path}: no frames could be decoded")
        if last_i < last_wanted:  # fewer frames than the container claimed: repeat the last decoded one
            self._n = last_i + 1
            frames[last_i] = last_frame.to_ndarray(format="rgb24")
        return np.stack([frames[min(int(i), last_i)] for i in indices])


class FallbackReader:
    """decord first; a file decord cannot read (it also fails on frames narrower than 64 px) is read
    again with PyAV before it counts as broken."""

    def __init__(self, path):
        self._path, self._reader = path, DecordReader(path)

    def __len__(self):
        return len(self._reader)

    def get(self, indices) -> np.ndarray:
        try:
            return self._reader.get(indices)
        except Exception as e:
            if isinstance(self._reader, PyAVReader):
                raise
            log.debug("decord failed on %s (%s); reading it with PyAV", self._path, e)
            self._reader = PyAVReader(self._path)
            return self._reader.get(indices)


def open_video(path, backend: str = "decord"):
    """Open with the chosen backend; if decord is missing or fails on this file, PyAV reads it."""
    global _warned_no_decord
    if backend not in BACKENDS:
        raise SystemExit(f"error: unknown video backend '{backend}'; choose one of: {', '.join(BACKENDS)}")
    if backend == "decord":
        try:
            return FallbackReader(path)
        except ImportError:
            if not _warned_no_decord:
                log.warning("decord is not installed; reading videos with PyAV")
                _warned_no_decord = True
        except Exception as e:  # decord raises its own error types; PyAV gets a second chance
            log.debug("decord failed on %s (%s); trying PyAV", path, e)
    return PyAVReader(path)


# ---------------------------------------------------------------------------------------------
# frame sampling: `rng` given -> training (random), None -> testing at position `view` in [0, 1]


def segment_indices(num_frames: int, frames: int, rng=None, view: float = 0.5) -> np.ndarray:
    """TSN sampling: `frames` equal segments; a random frame of each (train) or the frame at
    fraction `view` of each segment (test; 0.5 = the centre)."""
    segment = num_frames / frames
    where = rng.random(frames) if rng is not None else np.full(frames, view)
    idx = np.floor(segment * (np.arange(frames) + where)).astype(np.int64)
    return np.clip(idx, 0, num_frames - 1)


def dense_indices(num_frames: int, frames: int, stride: int, rng=None, view: float = 0.5) -> np.ndarray:
    """`frames` frames `stride` apart from a random start (train) or the start at fraction `view`
    of the possible starts (test). Clips longer than the video repeat its last frame."""
    span = (frames - 1) * stride + 1
    room = max(num_frames - span, 0)
    start = int(rng.integers(0, room + 1)) if rng is not None else int(round(room * view))
    return np.clip(start + stride * np.arange(frames), 0, num_frames - 1)


def temporal_views(clips: int, sampling: str) -> list:
    """Fixed temporal positions of `clips` test views: segment views spread inside each segment,
    dense clips spread over the video (first to last possible start)."""
    if sampling == "segment":
        return [(k + 0.5) / clips for k in range(clips)]
    return [0.5] if clips == 1 else [k / (clips - 1) for k in range(clips)]


def sample_indices(num_frames: int, cfg_input: dict, rng=None, view: float = 0.5) -> np.ndarray:
    if cfg_input["sampling"] == "segment":
        return segment_indices(num_frames, cfg_input["frames"], rng, view)
    if cfg_input["sampling"] == "dense":
        return dense_indices(num_frames, cfg_input["frames"], cfg_input["stride"], rng, view)
    raise SystemExit(f"error: input.sampling must be 'segment' or 'dense', found {cfg_input['sampling']!r}")
