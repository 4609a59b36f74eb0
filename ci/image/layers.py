"""Deterministic layer tarballs from a root filesystem directory.

The same tree gives the same bytes: entries sorted by path, mtimes clamped to
SOURCE_DATE_EPOCH, no atime/ctime, owners as numeric ids only (those dpkg set; everything the
build adds is root's), pax headers only where a path needs them, gzip without name or
timestamp at a fixed level. Layers after the first hold what a build step added or changed
(``snapshot`` before and after, ``changed_paths`` between), plus the parent directories of
those paths, as any OCI layer does.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# Kernel file systems: the directories stay (mount points), their content never belongs to an
# image (mmdebstrap's /dev nodes; the runtime mounts /dev, /proc and /sys).
MOUNT_POINTS = ("dev", "proc", "sys")
GZIP_LEVEL = 6  # zlib's default: 3x faster than 9 here for 2 % more bytes; fixed for digests

# What identifies a file's state between two snapshots without reading it: a rewrite changes
# the inode or mtime_ns, a chmod/chown changes mode or ids.
Stamp = tuple[int, int, int, int, int, int, int]


def snapshot(root: Path) -> dict[str, Stamp]:
    """Every path under ``root`` (relative, '/'-separated) with its stat stamp."""
    stamps: dict[str, Stamp] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            rel_dir = ""
            skipped = [d for d in dirnames if d in MOUNT_POINTS]
        else:
            skipped = []
        for name in [*dirnames, *filenames]:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            st = os.lstat(os.path.join(dirpath, name))
            stamps[rel] = (
                st.st_mode,
                st.st_uid,
                st.st_gid,
                st.st_size,
                st.st_mtime_ns,
                st.st_ino,
                st.st_nlink,
            )
        # Mount points themselves are recorded above; their content is not walked.
        dirnames[:] = [d for d in dirnames if d not in skipped]
    return stamps


def changed_paths(before: dict[str, Stamp], after: dict[str, Stamp]) -> list[str]:
    """Paths added or changed from ``before`` to ``after`` with their parent directories.

    Deleting a file of a lower layer would need a whiteout; no build step does that, so it is
    refused rather than silently shipped as still present.
    """
    gone = sorted(set(before) - set(after))
    if gone:
        raise ValueError(f"a build step deleted {len(gone)} path(s) of a lower layer: {gone[:5]}")
    paths = {p for p, s in after.items() if before.get(p) != s}
    for p in list(paths):
        parent = p.rpartition("/")[0]
        while parent and parent not in paths:
            paths.add(parent)
            parent = parent.rpartition("/")[0]
    return sorted(paths)


class _Hashing:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, sink: BinaryIO | gzip.GzipFile) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)


@dataclass(frozen=True)
class Layer:
    digest: str  # sha256 of the compressed blob
    size: int
    diff_id: str  # sha256 of the uncompressed tar (the image config names layers by it)
    unpacked: int  # bytes of regular file content
    entries: int
    path: Path  # the blob, written under its digest


def _tarinfo(
    root: Path, rel: str, epoch: int, links: dict[tuple[int, int], str]
) -> tuple[tarfile.TarInfo, Path | None]:
    full = root / rel
    st = os.lstat(full)
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = min(int(st.st_mtime), epoch)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        return info, None
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(full)
        return info, None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{rel}: only directories, symlinks and regular files go into a layer")
    if st.st_nlink > 1:
        # Hard links within one layer stay links (perl, gzip ship some); the first path in
        # sorted order carries the data.
        key = (st.st_dev, st.st_ino)
        if key in links:
            info.type = tarfile.LNKTYPE
            info.linkname = links[key]
            return info, None
        links[key] = rel
    info.size = st.st_size
    return info, full


def write_layer(root: Path, paths: Iterable[str], blobs: Path, epoch: int) -> Layer:
    """Write the layer holding ``paths`` of ``root`` into ``blobs`` (named by its digest)."""
    blobs.mkdir(parents=True, exist_ok=True)
    tmp = blobs / f".layer-{os.getpid()}.tmp"
    links: dict[tuple[int, int], str] = {}
    unpacked = entries = 0
    with tmp.open("wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(
            filename="",
            mode="wb",
            fileobj=compressed,  # type: ignore[arg-type]
            compresslevel=GZIP_LEVEL,
            mtime=0,
        ) as gz:
            tar_stream = _Hashing(gz)
            with tarfile.open(
                fileobj=tar_stream,
                mode="w|",  # type: ignore[call-overload]
                format=tarfile.PAX_FORMAT,
                encoding="utf-8",
            ) as tar:
                for rel in sorted(paths):
                    info, data = _tarinfo(root, rel, epoch, links)
                    if data is None:
                        tar.addfile(info)
                    else:
                        with data.open("rb") as fh:
                            tar.addfile(info, fh)
                        unpacked += info.size
                    entries += 1
    digest = f"sha256:{compressed.sha.hexdigest()}"
    final = blobs / compressed.sha.hexdigest()
    tmp.replace(final)
    return Layer(
        digest=digest,
        size=compressed.size,
        diff_id=f"sha256:{tar_stream.sha.hexdigest()}",
        unpacked=unpacked,
        entries=entries,
        path=final,
    )
