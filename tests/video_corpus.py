"""A small corpus of real containers whose every frame is identifiable, for the reader tests.

Frame t shows t in binary: 8 blocks of 16x16 (white = 1, black = 0) in the top two rows of a 64x48
picture, the bottom row grey with a bar that moves with t (so predicted frames carry real motion).
`frame_number` reads the number back; coarse codecs (cinepak, MPEG-1) keep it intact.

    build_corpus(folder) -> {name: (path, expected)}   expected: frames a sequential decode yields,
                                                       or None where the file holds no video to read
"""
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

WIDTH, HEIGHT, BLOCK = 64, 48, 16
FRAMES = 60


def pattern(t: int) -> np.ndarray:
    frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for bit in range(8):
        if t >> bit & 1:
            y, x = divmod(bit, 4)
            frame[y * BLOCK : (y + 1) * BLOCK, x * BLOCK : (x + 1) * BLOCK] = 255
    frame[2 * BLOCK :] = 128
    x = (3 * t) % (WIDTH - 8)
    frame[2 * BLOCK + 4 : HEIGHT - 4, x : x + 8] = (255, 64, 0)
    return frame


def frame_number(frame: np.ndarray) -> int:
    """The number a decoded frame shows (inverse of `pattern`)."""
    t = 0
    for bit in range(8):
        y, x = divmod(bit, 4)
        block = frame[y * BLOCK + 4 : (y + 1) * BLOCK - 4, x * BLOCK + 4 : (x + 1) * BLOCK - 4]
        t |= int(block.mean() > 128) << bit
    return t


def encode(path: Path, codec: str, fmt: str = None, frames: int = FRAMES, options: dict = None, pix_fmt: str = "yuv420p",
           rate: int = 24, pts=None, time_base=Fraction(1, 1000), b_frames: int = 0) -> Path:
    """Write `frames` pattern frames with PyAV. `pts`: explicit timestamps in `time_base` units."""
    with av.open(str(path), "w", format=fmt, options={}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
        stream.options = options or {}
        if b_frames:
            stream.codec_context.max_b_frames = b_frames
        if pts is not None:
            stream.time_base = stream.codec_context.time_base = time_base
        container.start_encoding()  # writes the header even when no frame follows
        for t in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(t), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = int(pts[t]), stream.codec_context.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def patch_avi_frame_count(path: Path, frames: int) -> Path:
    """Make an AVI's headers lie: avih dwTotalFrames and the video strh dwLength set to `frames`."""
    data = bytearray(path.read_bytes())
    avih = data.index(b"avih")
    struct.pack_into("<I", data, avih + 8 + 16, frames)  # chunk id, size, then dwTotalFrames at offset 16
    strh = data.index(b"strh")
    assert data[strh + 8 : strh + 12] == b"vids"
    struct.pack_into("<I", data, strh + 8 + 32, frames)  # dwLength at offset 32 of AVISTREAMHEADER
    path.write_bytes(bytes(data))
    return path


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def build_corpus(folder: Path) -> dict:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x264 = {"preset": "ultrafast", "crf": "18"}
    all_frames = list(range(FRAMES))
    corpus = {}

    def add(name, path, expected=all_frames):
        corpus[name] = (path, expected)

    add("h264.mp4", encode(folder / "h264.mp4", "libx264", options={**x264, "bf": "0", "g": "12"}))
    add("h264_bframes.mp4", encode(folder / "h264_bframes.mp4", "libx264", options={"preset": "medium", "crf": "18", "bf": "3", "g": "12"}))
    add("h264.mkv", encode(folder / "h264.mkv", "libx264", "matroska", options={"preset": "medium", "crf": "18", "bf": "3", "g": "12"}))
    add("vp8.webm", encode(folder / "vp8.webm", "libvpx", "webm", options={"g": "12"}))
    add("vp9.webm", encode(folder / "vp9.webm", "libvpx-vp9", "webm", options={"g": "12", "deadline": "realtime", "cpu-used": "8"}))
    add("mpeg1.mpg", encode(folder / "mpeg1.mpg", "mpeg1video", "mpeg", options={"g": "12", "qscale": "3"}, b_frames=2))
    add("mpeg2.mpg", encode(folder / "mpeg2.mpg", "mpeg2video", "mpeg", options={"g": "12", "qscale": "3"}, b_frames=2))
    add("mpeg2.ts", encode(folder / "mpeg2.ts", "mpeg2video", "mpegts", options={"g": "12", "qscale": "3"}, b_frames=2))
    add("mpeg4_bframes.avi", encode(folder / "mpeg4_bframes.avi", "mpeg4", "avi", options={"g": "12", "qscale": "3"}, b_frames=2))
    add("mjpeg.avi", encode(folder / "mjpeg.avi", "mjpeg", "avi", pix_fmt="yuvj420p", options={"qscale": "3"}))
    add("cinepak.avi", encode(folder / "cinepak.avi", "cinepak", "avi", pix_fmt="rgb24"))
    # frames that stay on screen for 3 frame periods: the AVI muxer writes empty "drop" chunks between
    # them, which the header counts as frames (as in real capture files: "444 frames", 68 pictures)
    drops = encode(folder / "drop_chunks.avi", "cinepak", "avi", pix_fmt="rgb24", frames=FRAMES // 3,
                   pts=3 * np.arange(FRAMES // 3), time_base=Fraction(1, 24))
    add("drop_chunks.avi", drops, list(range(FRAMES // 3)))
    vfr = np.cumsum([0] + [40 if t % 3 else 90 for t in range(1, FRAMES)])  # 40 ms steps, every third 90 ms
    add("vfr.mp4", encode(folder / "vfr.mp4", "libx264", options={**x264, "bf": "0", "g": "12"}, pts=vfr))
    liar = encode(folder / "header_says_more.avi", "mpeg4", "avi", options={"g": "12", "qscale": "3"})
    add("header_says_more.avi", patch_avi_frame_count(liar, 4 * FRAMES), None)  # as a truncated AVI looks: refused
    short = encode(folder / "header_says_fewer.avi", "mjpeg", "avi", pix_fmt="yuvj420p", options={"qscale": "3"})
    add("header_says_fewer.avi", patch_avi_frame_count(short, FRAMES // 3))
    full = encode(folder / "faststart_full.mp4", "libx264", options={**x264, "bf": "0", "g": "12"}, frames=FRAMES)
    # index first, then cut mid-file: the header promises 60 frames, the bytes hold fewer
    faststart = folder / "faststart_truncated.mp4"
    with av.open(str(full)) as src, av.open(str(faststart), "w", format="mp4", options={"movflags": "faststart"}) as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    with av.open(str(faststart)) as container:
        packet_ends = [p.pos + p.size for p in container.demux(container.streams.video[0]) if p.size]
    data = faststart.read_bytes()
    (folder / "cut_at_a_packet.mp4").write_bytes(data[: packet_ends[20]])  # every byte of 21 whole frames
    add("cut_at_a_packet.mp4", folder / "cut_at_a_packet.mp4", None)
    mdat = data.index(b"mdat")
    faststart.write_bytes(data[: mdat + (len(data) - mdat) // 3])
    add("faststart_truncated.mp4", faststart, None)
    # a stream-copy cut: packets from the keyframe at 12, the first 5 before the start, hidden by an edit list
    edit_list = folder / "edit_list.mp4"
    with av.open(str(full)) as src, av.open(str(edit_list), "w", format="mp4") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        packets = [p for p in src.demux(src.streams.video[0]) if p.size]
        step = packets[1].pts - packets[0].pts
        for packet in packets[12:]:
            packet.pts -= 17 * step
            packet.dts -= 17 * step
            packet.stream = out
            dst.mux(packet)
    add("edit_list.mp4", edit_list, list(range(17, FRAMES)))
    (folder / "empty.mp4").write_bytes(b"")
    add("empty.mp4", folder / "empty.mp4", None)
    add("zero_frames.mkv", encode(folder / "zero_frames.mkv", "libx264", "matroska", options=x264, frames=0), None)
    add("audio_only.mp4", write_audio_only(folder / "audio_only.mp4"), None)
    (folder / "garbage.avi").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    add("garbage.avi", folder / "garbage.avi", None)
    (folder / "text.mp4").write_text("path,coarse_id,fine_id,set\n" * 50)
    add("text.mp4", folder / "text.mp4", None)
    return corpus
