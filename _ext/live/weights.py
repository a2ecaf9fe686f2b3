"""Export the models the build trained, so the browser loads them instead of training.

``attnbook``'s ``cached(config, fn)`` stores each trained model in ``$ATTNBOOK_CACHE_DIR`` as
``<ConfigName>-<key>.npz`` (weights) and ``<ConfigName>-<key>.json`` (model class, model
configuration, history, and the training configuration as JSON). The key hashes, besides the
configuration, the Python and NumPy versions, the BLAS thread count and the training
function's bytecode, none of which the browser shares, so the browser cannot compute it.

The manifest therefore maps what the browser *can* compute, the training configuration's
canonical JSON (``_config_json(config)``, keys sorted, no spaces), to the stem of the files the
build wrote for it::

    {"format": 1,
     "models": {"<canonical config JSON>": {"stem": "ScoreRun-0b3dd1...", "bytes": 628862,
                                              "sha256": {"npz": "...", "json": "..."}}}}

When a configuration appears more than once in the cache (the cache also keeps models of
earlier builds whose code has since changed), the newest pair wins: every build that executes
a page writes (or, on a hit, reads) the entries of its own code, and a page whose execution
is cached was last executed with the newest entries.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path


def canonical(config_json) -> str:
    return json.dumps(config_json, sort_keys=True, separators=(",", ":"))


def scan(cache_dir: Path) -> dict[str, Path]:
    """canonical config JSON -> path of the newest ``.json`` meta file with weights beside it."""
    chosen: dict[str, tuple[float, Path]] = {}
    if not cache_dir.is_dir():
        return {}
    for meta in sorted(cache_dir.glob("*.json")):
        if not meta.with_suffix(".npz").exists():
            continue
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
            key = canonical(info["config"])
        except (ValueError, KeyError, OSError):
            continue
        mtime = max(meta.stat().st_mtime, meta.with_suffix(".npz").stat().st_mtime)
        if key not in chosen or mtime > chosen[key][0]:
            chosen[key] = (mtime, meta)
    return {k: v[1] for k, v in chosen.items()}


def export(cache_dir: Path, dest: Path) -> dict:
    """Copy the chosen models into ``dest`` and write ``dest/manifest.json``; return a summary."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    models, total = {}, 0
    for key, meta in sorted(scan(cache_dir).items()):
        entry = {"stem": meta.stem, "sha256": {}, "bytes": 0}
        for suffix in ("npz", "json"):
            data = meta.with_suffix("." + suffix).read_bytes()
            (dest / f"{meta.stem}.{suffix}").write_bytes(data)
            entry["sha256"][suffix] = hashlib.sha256(data).hexdigest()
            entry["bytes"] += len(data)
        total += entry["bytes"]
        models[key] = entry
    text = json.dumps({"format": 1, "models": models}, indent=1, sort_keys=True) + "\n"
    (dest / "manifest.json").write_text(text)
    return {"count": len(models), "bytes": total, "stamp": hashlib.sha256(text.encode()).hexdigest()[:12]}
