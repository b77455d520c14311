"""On-disk cache of decoded small-image trees, keyed by the files' paths, sizes and mtimes."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

CACHE_VERSION = "folder-v1"  # bump when the cached payload's layout changes


def cache_dir() -> Path:
    """$SENET_CACHE, else ~/.cache/senet."""
    return Path(os.environ.get("SENET_CACHE") or "~/.cache/senet").expanduser()


def tree_key(root: Path, files: list[str]) -> str:
    """Identity of a tree as it is now: any added, removed, resized or touched file changes it."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{CACHE_VERSION}\0{root.resolve()}\0".encode())
    for path in files:
        st = os.stat(path)
        h.update(f"{os.path.relpath(path, root)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()


def tree_cache_path(root: Path, key: str) -> Path:
    """folder-<tree location>-<tree state>.pt: the location part lets stale states be found."""
    where = hashlib.blake2b(str(root.resolve()).encode(), digest_size=6).hexdigest()
    return cache_dir() / f"folder-{where}-{key}.pt"


def drop_stale(current: Path) -> None:
    """Delete cached states of the same tree other than `current` (they can never hit again)."""
    prefix = current.name.rsplit("-", 1)[0] + "-"
    for old in current.parent.glob(f"{prefix}*.pt"):
        if old != current:
            old.unlink(missing_ok=True)


def load(path: Path) -> dict[str, Any] | None:
    """The cached payload, or None if absent or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file is just a cache miss
        log.warning("ignoring unreadable cache file %s: %s", path, exc)
        return None


def save(path: Path, payload: dict[str, Any]) -> bool:
    """Write atomically (temp file + rename) so a crash never leaves a half-written cache."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, tmp)
        os.replace(tmp, path)
        return True
    except OSError as exc:  # e.g. read-only home: carry on without a cache
        log.warning("could not write cache %s: %s (set SENET_CACHE to a writable dir)", path, exc)
        tmp.unlink(missing_ok=True)
        return False
