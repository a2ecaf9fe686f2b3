"""A pure-Python wheel of the book's packages (``attnbook``, ``book_recipes``) for the browser.

Written directly with :mod:`zipfile` (no build backend, no network, reproducible bytes): every
file of each package folder under ``code/src`` except caches, plus the ``dist-info`` that a
wheel needs (METADATA, WHEEL, RECORD with sha256 of each file).
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

EPOCH = (1980, 1, 1, 0, 0, 0)


def package_version(src: Path, package: str = "attnbook") -> str:
    text = (src / package / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.MULTILINE)
    return match.group(1) if match else "0"


def package_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"})


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(src: Path, dest: Path, packages=("attnbook", "book_recipes"),
                name: str = "attnbook") -> Path:
    """Write ``<name>-<version>-py3-none-any.whl`` into ``dest`` from the packages found in ``src``.

    Packages of ``packages`` that do not exist (yet) are skipped; ``attnbook`` must exist.
    """
    present = [p for p in packages if (src / p / "__init__.py").exists()]
    if "attnbook" not in present:
        raise FileNotFoundError(f"no attnbook package in {src}")
    version = package_version(src)
    dist = f"{name}-{version}.dist-info"
    entries: list[tuple[str, bytes]] = []
    for package in present:
        for path in package_files(src / package):
            entries.append((f"{package}/{path.relative_to(src / package).as_posix()}", path.read_bytes()))
    entries.append((f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()))
    entries.append((f"{dist}/WHEEL", b"Wheel-Version: 1.0\nGenerator: attention-executed live\n"
                                     b"Root-Is-Purelib: true\nTag: py3-none-any\n"))
    entries.append((f"{dist}/top_level.txt", ("\n".join(present) + "\n").encode()))
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in entries) + f"{dist}/RECORD,,\n"
    entries.append((f"{dist}/RECORD", record.encode()))
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as wheel:
        for arcname, data in entries:
            info = zipfile.ZipInfo(arcname, EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            wheel.writestr(info, data)
    return target
