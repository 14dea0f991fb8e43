"""The model cache on disk: marking entries used, and pruning the least recently used by size.

The cache (see :class:`~modelreg.serving.loader.ModelLoader`) holds one
directory per verified version, ``<cache>/<digest hex>/``, and beside it files
derived from that version named ``<digest hex>.<suffix>`` (a compiled form,
say); all of them make one *entry*. Downloads in progress live in
``<cache>/.download-*`` directories until they are renamed into place.

An entry's recency is the newest modification time among its parts;
:func:`mark_used` sets it to now, so the loader calls it on every load, cached
or downloaded. :func:`prune_cache` then removes whole entries, oldest first,
until the cache fits its budget, never one that is served.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("modelreg.serving")

DOWNLOAD_PREFIX = ".download-"
"""Name prefix of the temporary directories a download is written into."""

#: A download younger than this may still be in progress (in this process or another
#: worker sharing the cache); one older than this was left behind by a crash.
DOWNLOAD_GRACE_SECONDS = 3600.0

_DIGEST_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass
class _Entry:
    """The parts of one cache entry (or one stale download), their bytes and last use."""

    key: str
    parts: dict[Path, int] = field(default_factory=dict)
    used_at: float = 0.0

    @property
    def size(self) -> int:
        """Bytes of all its parts."""
        return sum(self.parts.values())


def mark_used(entry: Path) -> None:
    """Set ``entry``'s recency to now (its directory's modification time), so pruning keeps it.

    Call it whenever a version is loaded from the cache or stored in it. A
    failure (the entry vanished, a read-only cache) is logged, not raised:
    recency only orders pruning.
    """
    try:
        os.utime(entry, follow_symlinks=False)
    except OSError as exc:
        log.warning("cannot mark cache entry %s as used: %s", entry, exc)


def prune_cache(cache_dir: Path, *, max_bytes: int, keep: Collection[str]) -> list[Path]:
    """Remove least recently used cache entries until their total size is at most ``max_bytes``.

    ``keep`` holds the digest hexes (64 lowercase hex digits, no ``sha256:``)
    of what is served; their entries are never removed, even when they alone
    exceed the budget. Sizes are the apparent sizes (bytes) of the regular
    files and symlinks in ``<hex>/`` directories, ``<hex>.*`` files beside
    them and ``.download-*`` directories; anything else in ``cache_dir`` is
    neither counted nor touched. A ``.download-*`` directory younger than
    :data:`DOWNLOAD_GRACE_SECONDS` may be a download in progress and is kept;
    an older one is the oldest entry of all. Symlinks are never followed (a
    link is removed, not its target). An entry that cannot be read or removed
    is logged and skipped, never raised.

    Returns the paths removed, oldest entry first. A missing ``cache_dir`` has
    nothing to prune. Raises ValueError when ``max_bytes`` is negative.
    """
    if max_bytes < 0:
        raise ValueError(f"max_bytes must not be negative, got {max_bytes}")
    entries = _entries(cache_dir)
    total = sum(entry.size for entry in entries)
    removed: list[Path] = []
    now = time.time()
    for entry in sorted(entries, key=lambda e: e.used_at):
        if total <= max_bytes:
            break
        if entry.key in keep:
            continue
        if entry.key.startswith(DOWNLOAD_PREFIX) and now - entry.used_at < DOWNLOAD_GRACE_SECONDS:
            continue
        gone = _remove(entry)
        removed.extend(gone)
        total -= sum(entry.parts[path] for path in gone)
    if removed:
        log.info(
            "pruned %d path(s) from the model cache %s; %d bytes remain (limit %d)",
            len(removed),
            cache_dir,
            total,
            max_bytes,
        )
    return removed


def _entries(cache_dir: Path) -> list[_Entry]:
    """Group the children of ``cache_dir`` into entries by digest hex (or download dir name)."""
    entries: dict[str, _Entry] = {}
    try:
        children = list(os.scandir(cache_dir))
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("cannot list the model cache %s: %s", cache_dir, exc)
        return []
    for child in children:
        key = _entry_key(child.name)
        if key is None:
            continue
        path = Path(child.path)
        try:
            info = child.stat(follow_symlinks=False)
            size = _size(path, info)
        except OSError as exc:
            log.warning("cannot size cache entry %s; leaving it: %s", path, exc)
            continue
        entry = entries.setdefault(key, _Entry(key))
        entry.parts[path] = size
        entry.used_at = max(entry.used_at, info.st_mtime)
    return list(entries.values())


def _entry_key(name: str) -> str | None:
    """The entry a cache child belongs to: its digest hex, a download dir's name, or None."""
    if name.startswith(DOWNLOAD_PREFIX):
        return name
    digest = name.split(".", 1)[0]
    return digest if _DIGEST_HEX.fullmatch(digest) else None


def _size(path: Path, info: os.stat_result) -> int:
    """Apparent bytes under ``path``: its files and links, without following any link."""
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size
    return sum(_file_sizes(path))


def _file_sizes(directory: Path) -> Iterator[int]:
    # os.walk neither follows links to directories (followlinks=False) nor lets
    # an unreadable subdirectory stop it; a vanished file is simply skipped.
    for root, dirs, files in os.walk(directory):
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(root, d)))]:
            try:
                yield os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue


def _remove(entry: _Entry) -> list[Path]:
    """Delete every part of ``entry``; the parts actually removed (failures are logged)."""
    removed = []
    for path in entry.parts:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)  # rmtree removes links inside, never their targets
            else:
                path.unlink()
        except FileNotFoundError:
            removed.append(path)  # another process pruned it first: gone all the same
        except OSError as exc:
            log.warning("cannot remove %s from the model cache: %s", path, exc)
        else:
            removed.append(path)
    return removed
