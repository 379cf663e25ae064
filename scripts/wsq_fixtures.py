#!/usr/bin/env python3
"""Make WSQ reference fixtures for the Rust WSQ decoder's tests.

Each fixture is a pair written side by side:

    NAME.wsq   the image compressed by the NIST NBIS reference encoder
    NAME.pgm   the same file decompressed by the NBIS reference decoder (binary P5),
               with a header comment `# wsq-reference ppi=N` giving the resolution the
               reference decoder read from the file's NISTCOM comment (-1: none)

`engine/tests/wsq_reference.rs` decodes every NAME.wsq with our decoder and compares the
pixels with NAME.pgm.

The reference codec is NBIS 5.0.0 as built into the PyPI package `wsq` (its Python wrapper
only exposes a fixed 0.75 bit rate, so this script calls the library's exported C entry
points `wsq_encode_mem` / `wsq_decode_mem` through ctypes). `imagecodecs` was checked first
but its current wheels carry no WSQ codec. Pillow (a dependency of `wsq`) reads the input
images.

Two modes:

    wsq_fixtures.py synthetic OUTPUT_DIR
        Synthesises small fingerprint-like images (ridges with a curved orientation field
        and noise) and writes fixtures for them. This is what is committed under
        engine/tests/fixtures/wsq/ -- no external image data is involved.

    wsq_fixtures.py encode [--limit N] INPUT_DIR OUTPUT_DIR
        Encodes up to N images (spread evenly over the sorted list of image files found
        recursively under INPUT_DIR) at every bit rate. Used by the project setup to build
        a cache of fixtures from real fingerprint scans; never commit its output.

Every image is encoded at bit rates 0.75 and 2.25 (override with --bitrates).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import math
import random
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".tif", ".tiff", ".png", ".bmp", ".pgm", ".jpg", ".jpeg", ".gif"}
DEFAULT_BITRATES = (0.75, 2.25)


class Nbis:
    """ctypes binding to the NBIS WSQ functions inside the `wsq` package's extension."""

    def __init__(self) -> None:
        spec = importlib.util.find_spec("_wsq")
        if spec is None or spec.origin is None:
            sys.exit("error: the PyPI package `wsq` (NBIS WSQ codec) is not installed")
        lib = ctypes.CDLL(spec.origin)
        libc = ctypes.CDLL(None)
        self._free = libc.free
        self._free.argtypes = [ctypes.c_void_p]
        self._free.restype = None

        u8p = ctypes.POINTER(ctypes.c_ubyte)
        intp = ctypes.POINTER(ctypes.c_int)
        # int wsq_encode_mem(unsigned char **odata, int *olen, const float r_bitrate,
        #                    unsigned char *idata, const int w, const int h, const int d,
        #                    const int ppi, char *comment_text)
        self._encode = lib.wsq_encode_mem
        self._encode.argtypes = [
            ctypes.POINTER(u8p), intp, ctypes.c_float, u8p,
            ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
        ]
        self._encode.restype = ctypes.c_int
        # int wsq_decode_mem(unsigned char **odata, int *ow, int *oh, int *od, int *oppi,
        #                    int *lossyflag, unsigned char *idata, const int ilen)
        self._decode = lib.wsq_decode_mem
        self._decode.argtypes = [
            ctypes.POINTER(u8p), intp, intp, intp, intp, intp, u8p, ctypes.c_int,
        ]
        self._decode.restype = ctypes.c_int

    def encode(self, pixels: bytes, width: int, height: int, bitrate: float, ppi: int) -> bytes:
        assert len(pixels) == width * height
        src = (ctypes.c_ubyte * len(pixels)).from_buffer_copy(pixels)
        out = ctypes.POINTER(ctypes.c_ubyte)()
        out_len = ctypes.c_int(0)
        ret = self._encode(ctypes.byref(out), ctypes.byref(out_len), bitrate, src,
                           width, height, 8, ppi, None)
        if ret != 0:
            raise RuntimeError(f"wsq_encode_mem failed with {ret} ({width}x{height})")
        try:
            return ctypes.string_at(out, out_len.value)
        finally:
            self._free(out)

    def decode(self, data: bytes) -> tuple[bytes, int, int, int]:
        src = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
        out = ctypes.POINTER(ctypes.c_ubyte)()
        w, h, d, ppi, lossy = (ctypes.c_int(0) for _ in range(5))
        ret = self._decode(ctypes.byref(out), ctypes.byref(w), ctypes.byref(h), ctypes.byref(d),
                           ctypes.byref(ppi), ctypes.byref(lossy), src, len(data))
        if ret != 0:
            raise RuntimeError(f"wsq_decode_mem failed with {ret}")
        try:
            return ctypes.string_at(out, w.value * h.value), w.value, h.value, ppi.value
        finally:
            self._free(out)


def write_pgm(path: Path, pixels: bytes, width: int, height: int, ppi: int) -> None:
    header = f"P5\n# wsq-reference ppi={ppi}\n{width} {height}\n255\n".encode("ascii")
    path.write_bytes(header + pixels)


def write_fixture(nbis: Nbis, out_dir: Path, name: str, pixels: bytes, width: int, height: int,
                  bitrates: tuple[float, ...], ppi: int) -> None:
    for bitrate in bitrates:
        tag = f"{name}_br{int(round(bitrate * 100)):03d}"
        wsq = nbis.encode(pixels, width, height, bitrate, ppi)
        ref, w, h, ref_ppi = nbis.decode(wsq)
        if (w, h) != (width, height):
            raise RuntimeError(f"{tag}: reference decoded {w}x{h}, expected {width}x{height}")
        (out_dir / f"{tag}.wsq").write_bytes(wsq)
        write_pgm(out_dir / f"{tag}.pgm", ref, w, h, ref_ppi)
        print(f"{tag}: {width}x{height} bitrate {bitrate} -> {len(wsq)} bytes, ppi {ref_ppi}")


def synth_fingerprint(width: int, height: int, seed: int) -> bytes:
    """A fingerprint-like test card: sinusoidal ridges whose orientation turns around a
    core point (a loop-like curved flow), a soft elliptical finger mask on a light
    background, and pixel noise. Deterministic for a given seed."""
    rng = random.Random(seed)
    cx, cy = width * rng.uniform(0.4, 0.6), height * rng.uniform(0.35, 0.5)
    period = rng.uniform(8.0, 10.0)  # ~500 ppi ridge spacing in pixels
    ax, ay = width * 0.46, height * 0.48
    out = bytearray(width * height)
    for y in range(height):
        for x in range(width):
            dx, dy = x - cx, y - cy
            r = math.hypot(dx, dy)
            theta = math.atan2(dy, dx)
            # Phase mixes concentric arcs near the core with parallel ridges further out,
            # which bends the ridge flow the way a loop pattern does.
            phase = (r * (1.0 + 0.25 * math.sin(theta)) + 0.35 * dy
                     + 6.0 * math.sin(x / 37.0) * math.cos(y / 41.0))
            ridge = math.cos(2.0 * math.pi * phase / period)
            e = (dx / ax) ** 2 + ((y - height * 0.5) / ay) ** 2
            mask = 1.0 / (1.0 + math.exp((e - 1.0) * 8.0))
            value = 200.0 - mask * (70.0 + 75.0 * ridge) + rng.gauss(0.0, 6.0)
            out[y * width + x] = max(0, min(255, int(round(value))))
    return bytes(out)


def cmd_synthetic(args: argparse.Namespace, nbis: Nbis) -> None:
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Sizes chosen to exercise both even and odd splits at every decomposition level
    # while keeping the committed fixtures small.
    cards = [("ridges_120x144", 120, 144, 1, 500, args.bitrates),
             ("ridges_97x119", 97, 119, 2, 500, args.bitrates),
             ("ridges_nonistppi_64x72", 64, 72, 3, -1, args.bitrates[:1])]
    for name, w, h, seed, ppi, bitrates in cards:
        write_fixture(nbis, out_dir, name, synth_fingerprint(w, h, seed), w, h, bitrates, ppi)


def cmd_encode(args: argparse.Namespace, nbis: Nbis) -> None:
    from PIL import Image  # Pillow is a dependency of `wsq`

    in_dir, out_dir = Path(args.input_dir), Path(args.output_dir)
    files = sorted(p for p in in_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        sys.exit(f"error: no images under {in_dir}")
    if args.limit and len(files) > args.limit:
        step = len(files) / args.limit
        files = [files[int(i * step)] for i in range(args.limit)]
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        with Image.open(path) as im:
            gray = im.convert("L")
            w, h = gray.size
            pixels = gray.tobytes()
        name = "_".join(path.relative_to(in_dir).with_suffix("").parts)
        write_fixture(nbis, out_dir, name, pixels, w, h, args.bitrates, args.ppi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bitrates", type=lambda s: tuple(float(v) for v in s.split(",")),
                        default=DEFAULT_BITRATES, help="comma-separated bit rates (default 0.75,2.25)")
    sub = parser.add_subparsers(dest="mode", required=True)
    synth = sub.add_parser("synthetic", help="fixtures from synthesised images (committed)")
    synth.add_argument("output_dir")
    enc = sub.add_parser("encode", help="fixtures from the images in a directory (cache only)")
    enc.add_argument("--limit", type=int, default=8, help="at most this many images (0: all)")
    enc.add_argument("--ppi", type=int, default=500, help="resolution written to the NISTCOM comment")
    enc.add_argument("input_dir")
    enc.add_argument("output_dir")
    args = parser.parse_args()
    nbis = Nbis()
    if args.mode == "synthetic":
        cmd_synthetic(args, nbis)
    else:
        cmd_encode(args, nbis)


if __name__ == "__main__":
    main()
