#!/usr/bin/env python3
"""Runs the afis package's own LEADER decoding (its `leader.py`, pinned by sha256 in the
manifest) on images and writes the minutiae it finds, one CSV per image:
`x,y,direction,kind,quality` with kind 0 = ending, 1 = bifurcation.

The engine's Rust decoding is tested against these files. Only `leader.py` and the two small
modules it imports are loaded, so the reference needs just numpy, onnxruntime and Pillow.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
from PIL import Image


def load_reference(ref_dir: Path):
    """Imports leader.py under its own package name so its relative imports resolve."""
    for pkg in ("afis", "afis.algorithms"):
        mod = types.ModuleType(pkg)
        mod.__path__ = []  # mark as a package
        sys.modules[pkg] = mod

    def load(name: str, file: str):
        spec = importlib.util.spec_from_file_location(name, ref_dir / file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    load("afis.op_lock", "op_lock.py")
    load("afis.algorithms.minutiae", "minutiae.py")
    return load("afis.algorithms.leader", "leader.py")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--reference", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--ppi", type=float, default=500.0)
    ap.add_argument("images", nargs="+", type=Path)
    args = ap.parse_args()
    leader = load_reference(args.reference)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.images:
        img = np.asarray(Image.open(path).convert("L"))
        arr, _meta = leader.extract(img, ppi=args.ppi, model_path=args.model)
        lines = ["x,y,direction,kind,quality"]
        lines += [f"{x:.3f},{y:.3f},{t:.6f},{int(k)},{q:.6f}" for x, y, t, k, q in arr]
        (args.out / f"{path.stem}.csv").write_text("\n".join(lines) + "\n")
        print(f"{path.name}: {len(arr)} minutiae", file=sys.stderr)


if __name__ == "__main__":
    main()
