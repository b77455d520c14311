"""Messages for a write that failed on a full disk: which file system, how full."""

from __future__ import annotations

import errno
import os
from pathlib import Path

CHECKPOINT_ADVICE = ("free some space there (or give another --out) and resume; the "
                     "previous checkpoint, if any, is kept")


def write_error(exc: OSError, path: Path, advice: str = CHECKPOINT_ADVICE) -> str:
    """One line for a failed write of ``path``: a full disk names the disk and what to do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        return f"{what} on {describe_disk(path)} writing {path}: {advice}"
    return f"cannot write {path}: {exc.strerror or exc}; check the folder and its disk"


def describe_disk(path: Path) -> str:
    """`tmpfs at /mnt/small (0.0 of 2.1 MB free)`: the file system holding ``path``."""
    folder = path.resolve().parent
    source, mount = "the disk", None
    try:
        with open("/proc/self/mounts") as fh:
            for line in fh:
                dev, point, kind = line.split()[:3]
                point = point.replace("\\040", " ")
                inside = folder == Path(point) or Path(point) in folder.parents
                if inside and (mount is None or len(point) >= len(str(mount))):
                    source, mount = f"{kind} {dev}" if dev != kind else kind, Path(point)
    except OSError:
        pass  # not Linux: the free space below still says enough
    try:
        stats = os.statvfs(folder)
        free = (f"{stats.f_bavail * stats.f_frsize / 1e6:.1f} of "
                f"{stats.f_blocks * stats.f_frsize / 1e6:.1f} MB free")
    except OSError:
        free = "free space unknown"
    return f"{source} at {mount or folder} ({free})"
