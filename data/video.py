"""Reading frames: two readers behind one interface, and the frame samplers.

    reader = open_video(path)        # backend "decord" (the default) or "pyav"
    len(reader)                      # the number of frames the file holds
    reader.get([0, 8, 16])           # uint8 [T, H, W, 3], RGB: exactly frames 0, 8 and 16

Frame i is the i-th picture the decoder outputs from the start of the file. PyAV decodes
sequentially from the start, so it returns exactly those frames in every container. decord seeks,
and its seeks land elsewhere in the file for many containers and codecs (measured on the corpus of
tests/test_reliability_video.py: MPEG-1/2 in program and transport streams, MPEG-4 Part 2 and HEVC
with B-frames in any container, H.264 with B-frames in AVI or TS return other frames, up to a whole
shot away). So `backend="decord"` reads with decord only the container/codec pairs where it was
exact (DECORD_EXACT) and with PyAV everything else; PyAV also takes over where decord cannot read a
file (it fails on frames narrower than 64 px) or is not installed (no aarch64/macOS-arm64 wheels).

Whatever goes wrong in opening or decoding a file raises DecodeError: no video stream, no frames, a
decoder error, or a file cut short (a header that declares more time than the frames cover: a
truncated download keeps its header and loses its end, and maybe with it the evidence for its
label). The frame count is what the file holds, never the header's word: an AVI header counts
dropped-frame chunks, and may count fewer frames than the file holds.
"""
import logging
import os
import struct
from contextlib import closing, contextmanager
from fractions import Fraction

import numpy as np

BACKENDS = ("decord", "pyav")
MP4, MATROSKA = "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"
DECORD_EXACT = {(MP4, "h264"), (MATROSKA, "h264"), (MATROSKA, "vp8"), (MATROSKA, "vp9")}
HEADER_DURATION = {MP4, "avi"}  # containers whose header states the duration (MPEG-PS/TS estimate it from the bitrate)
log = logging.getLogger(__name__)
_warned_no_decord = False


class DecodeError(RuntimeError):
    """A file that cannot be read as a video: training replaces it, testing reports it."""


@contextmanager
def _decoding(path):
    """Turns every error of the decoding libraries (they raise their own types) into a DecodeError."""
    try:
        yield
    except DecodeError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise DecodeError(f"{path}: {type(e).__name__}: {first}") from e


def _video_stream(container, path):
    if not container.streams.video:
        raise DecodeError(f"{path}: no video stream")
    return container.streams.video[0]


def probe(path) -> dict:
    """What the header says, without decoding: container format, codec, frame rate (a Fraction), size,
    frame count (0 where the container keeps none) and duration in seconds (None where it only estimates one)."""
    import av

    with _decoding(path), av.open(str(path)) as container:
        stream = _video_stream(container, path)
        declared = stream.duration * stream.time_base if stream.duration and container.format.name in HEADER_DURATION else None
        return {"format": container.format.name, "codec": stream.codec_context.name,
                "rate": stream.average_rate or stream.guessed_rate or Fraction(25), "width": stream.codec_context.width,
                "height": stream.codec_context.height, "header_frames": stream.frames,
                "header_seconds": None if declared is None else float(declared)}


# The decord path decides from the file's own header boxes (~0.05 ms) rather than from PyAV's probe
# (~0.8 ms, a quarter of a small clip's reading time): only MP4 and Matroska/WebM can qualify.
MP4_CODECS = {b"avc1": "h264", b"avc3": "h264", b"hvc1": "hevc", b"hev1": "hevc", b"vp09": "vp9", b"mp4v": "mpeg4"}
MATROSKA_CODECS = {b"V_MPEG4/ISO/AVC": "h264", b"V_VP8": "vp8", b"V_VP9": "vp9", b"V_MPEGH/ISO/HEVC": "hevc"}


def _mp4_boxes(f, start, end):
    """(type, payload start, payload end) of the ISO-BMFF boxes in [start, end)."""
    while start + 8 <= end:
        f.seek(start)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", f.read(8))[0], 16
        elif size == 0:
            size = end - start
        if size < header:
            return
        yield kind, start + header, min(start + size, end)
        start += size


def _mp4_child(f, span, kind):
    return next(((a, b) for k, a, b in _mp4_boxes(f, *span) if k == kind), None)


def _sniff_mp4(f, size):
    moov = _mp4_child(f, (0, size), b"moov")
    for kind, a, b in _mp4_boxes(f, *moov):
        mdia = _mp4_child(f, (a, b), b"mdia") if kind == b"trak" else None
        if mdia is None:
            continue
        f.seek(_mp4_child(f, mdia, b"hdlr")[0] + 8)
        if f.read(4) != b"vide":
            continue
        mdhd = _mp4_child(f, mdia, b"mdhd")[0]
        f.seek(mdhd)
        version = f.read(1)[0]
        f.seek(mdhd + (20 if version else 12))
        timescale, duration = struct.unpack(">IQ" if version else ">II", f.read(12 if version else 8))
        stbl = _mp4_child(f, _mp4_child(f, mdia, b"minf"), b"stbl")
        f.seek(_mp4_child(f, stbl, b"stsd")[0] + 12)  # version/flags, entry count, first entry's size
        fourcc = f.read(4)
        stsz = _mp4_child(f, stbl, b"stsz")
        f.seek(stsz[0] + 8)
        frames = struct.unpack(">I", f.read(4))[0]
        return {"format": MP4, "codec": MP4_CODECS.get(fourcc, fourcc.decode("latin-1")), "header_frames": frames,
                "header_seconds": duration / timescale if duration and timescale else None}
    return None


def _ebml_number(f, keep_marker: bool):
    first = f.read(1)[0]
    length = 9 - first.bit_length()
    value = first if keep_marker else first & (0xFF >> length)
    for byte in f.read(length - 1):
        value = value << 8 | byte
    return value, length


def _ebml_elements(f, start, end):
    """(id, data start, data end) of the EBML elements in [start, end); unknown sizes run to `end`."""
    while start < end:
        f.seek(start)
        element, id_length = _ebml_number(f, keep_marker=True)
        size, size_length = _ebml_number(f, keep_marker=False)
        data = start + id_length + size_length
        if size == (1 << 7 * size_length) - 1:
            size = end - data
        yield element, data, min(data + size, end)
        start = data + size


def _sniff_matroska(f, size):
    segment = next((a, b) for e, a, b in _ebml_elements(f, 0, size) if e == 0x18538067)
    for element, a, b in _ebml_elements(f, *segment):
        if element == 0x1F43B675:  # a cluster before the tracks: let PyAV look
            return None
        if element != 0x1654AE6B:
            continue
        for entry, c, d in _ebml_elements(f, a, b):
            if entry != 0xAE:  # TrackEntry
                continue
            fields = {}
            for field, x, y in _ebml_elements(f, c, d):
                f.seek(x)
                fields[field] = f.read(y - x)
            if fields.get(0x83) == b"\x01":  # TrackType: video
                codec = fields.get(0x86, b"").rstrip(b"\0")
                return {"format": MATROSKA, "codec": MATROSKA_CODECS.get(codec, codec.decode("latin-1")),
                        "header_frames": 0, "header_seconds": None}
    return None


def sniff(path):
    """Format, codec and the header's frame count and duration of an MP4/MOV or Matroska/WebM file,
    read from its own boxes without a decoder; None for other files or where unsure."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
                return _sniff_mp4(f, size)
            if head[:4] == b"\x1a\x45\xdf\xa3":
                return _sniff_matroska(f, size)
    except (OSError, struct.error, IndexError, TypeError, StopIteration):  # a truncated or odd header
        pass
    return None


def check_complete(path, info: dict, frames: int, covered_seconds: float) -> None:
    """No frames, or frames that cover less time than the header declares (more than 2 frames or 2 % short): DecodeError."""
    if frames == 0:
        raise DecodeError(f"{path}: no frames")
    declared = info["header_seconds"]
    if declared and covered_seconds < declared - max(2 / float(info["rate"]), 0.02 * declared):
        raise DecodeError(f"{path}: cut short: the header declares {declared:.2f} s "
                          f"({info['header_frames']} frames), the {frames} frames in the file cover {covered_seconds:.2f} s")


def decode_sequentially(path):
    """Every frame of the first video stream in output order (av.VideoFrame): frame i is the i-th."""
    import av

    with _decoding(path), av.open(str(path)) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        yield from container.decode(stream)


def _frame_list(indices, n: int, path) -> list:
    indices = [int(i) for i in indices]
    if not indices or min(indices) < 0 or max(indices) >= n:  # a caller's bug, not a broken file
        raise IndexError(f"{path}: frames {indices} asked of a video of {n} frames")
    return indices


def count_frames(path, info: dict) -> int:
    """The frames the file holds: its packets that carry a picture, counted without decoding. A file
    with none, or cut short (see check_complete), raises DecodeError."""
    import av

    frames, start, end = 0, None, None
    with _decoding(path), av.open(str(path)) as container:
        stream = _video_stream(container, path)
        for packet in container.demux(stream):
            # the demuxer ends with an empty packet; AVI drop-frame chunks hold no picture; an MP4 edit
            # list marks frames before the start (a stream-copy cut's pre-roll) to be decoded and dropped
            if packet.size and not packet.is_discard:
                frames += 1
                if packet.pts is not None:
                    start = packet.pts if start is None else min(start, packet.pts)
                    end = max(end or 0, packet.pts + (packet.duration or 0))
        covered = float((end - start) * stream.time_base) if start is not None else 0.0
    check_complete(path, info, frames, covered)
    return frames


class PyAVReader:
    """Counts the frames once (count_frames), then decodes from the start up to the last wanted frame."""

    backend = "pyav"

    def __init__(self, path, info: dict = None):
        self.path = str(path)
        self._n = count_frames(path, info or probe(path))

    def __len__(self):
        return self._n

    def get(self, indices) -> np.ndarray:
        indices = _frame_list(indices, self._n, self.path)
        wanted, last = set(indices), max(indices)
        frames, decoded = {}, 0
        with _decoding(self.path), closing(decode_sequentially(self.path)) as stream:
            for decoded, frame in enumerate(stream, start=1):
                if decoded - 1 in wanted:
                    frames[decoded - 1] = frame.to_ndarray(format="rgb24")
                if decoded > last:
                    break
        if decoded <= last:
            raise DecodeError(f"{self.path}: the decoder gave {decoded} frames of the {self._n} the file holds")
        return np.stack([frames[i] for i in indices])


class DecordReader:
    """decord's index and seeks (fast sparse reads), for the containers and codecs in DECORD_EXACT.
    A file decord cannot read is read again with PyAV before it counts as broken."""

    def __init__(self, path, info: dict):
        import decord

        self.path, self._pyav = path, None
        with _decoding(path):
            self._vr = decord.VideoReader(str(path), num_threads=1)
            n = len(self._vr)
            if n and self._vr.get_frame_timestamp(0)[0] < 0:  # measured: its index then counts the dropped frames
                raise DecodeError(f"{path}: frames before the start of the presentation (an edit list)")
            covered = float(self._vr.get_frame_timestamp(n - 1)[1] - self._vr.get_frame_timestamp(0)[0]) if n else 0.0
            info = {**info, "rate": self._vr.get_avg_fps() or 25}
        check_complete(path, info, n, covered)

    def __len__(self):
        return len(self._pyav or self._vr)

    @property
    def backend(self) -> str:
        return "pyav" if self._pyav else "decord"

    def get(self, indices) -> np.ndarray:
        if self._pyav is None:
            indices = _frame_list(indices, len(self._vr), self.path)
            try:
                with _decoding(self.path):
                    return self._vr.get_batch(indices).asnumpy()
            except DecodeError as e:
                log.debug("decord failed on %s (%s); reading it with PyAV", self.path, e)
                self._pyav = PyAVReader(self.path)
        return self._pyav.get(indices)


def open_video(path, backend: str = "decord"):
    """A reader for `path`: decord where it is exact (backend "decord"), PyAV everywhere else."""
    global _warned_no_decord
    if backend not in BACKENDS:
        raise SystemExit(f"error: unknown video backend '{backend}'; choose one of: {', '.join(BACKENDS)}")
    info = sniff(path) if backend == "decord" else None
    if info and (info["format"], info["codec"]) in DECORD_EXACT:
        try:
            return DecordReader(path, info)
        except ImportError:
            if not _warned_no_decord:
                log.warning("decord is not installed; reading videos with PyAV")
                _warned_no_decord = True
        except DecodeError as e:
            log.debug("decord cannot open %s (%s); trying PyAV", path, e)
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
