"""Reading ``.npz`` archives lazily: declared shapes first, then only the leading rows needed.

An ``.npz`` is a zip of ``.npy`` members, stored or deflated. :func:`open_npz` parses each
member's ``.npy`` header from the member stream, so every array's dtype and shape are known
before any data is inflated; :meth:`NpzArchive.read` then inflates only the first ``rows`` rows
of a C-order array (a Fortran-order array is read whole). Object arrays are refused, as
``numpy.load(allow_pickle=False)`` refuses them.

:func:`check_memory` refuses a load whose decoded size exceeds the memory available
(``MemAvailable``, the cgroup's headroom, or ``NERO_MEMORY_LIMIT`` when set, e.g. ``2G``).
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

PICKLE_MESSAGE = ("holds a pickled object array; nero loads npz with allow_pickle=False "
                  "(pickles can run code); save plain numeric arrays")
MAGIC = b"\x93NUMPY"
_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
_BLOCK = 1 << 22
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature ... file name length, extra field length


@dataclass(frozen=True)
class Member:
    """One ``.npy`` member: its zip entry and its declared array."""

    key: str
    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool

    @property
    def rows(self) -> int | None:
        """Rows (first axis) of the array, None for a 0-d array."""
        return self.shape[0] if self.shape else None

    def shape_read(self, rows: int | None = None) -> tuple[int, ...]:
        """The shape :meth:`NpzArchive.read` inflates for ``rows`` (all of it without rows, or in Fortran order)."""
        if rows is None or not self.shape or self.fortran:
            return self.shape
        return (min(rows, self.shape[0]), *self.shape[1:])

    def nbytes(self, rows: int | None = None) -> int:
        return math.prod(self.shape_read(rows)) * self.dtype.itemsize


class NpzArchive:
    """An open ``.npz``: member headers parsed, no array data read yet."""

    def __init__(self, path: Path, zf: zipfile.ZipFile, members: dict[str, Member], others: list[zipfile.ZipInfo]):
        self.path, self.zf, self.members, self.others = path, zf, members, others

    def __enter__(self) -> "NpzArchive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.zf.close()

    def read(self, key: str, rows: int | None = None) -> np.ndarray:
        """The array ``key``, or its first ``rows`` rows (C order: nothing past them is inflated)."""
        m = self.members[key]
        shape = m.shape_read(rows)
        try:
            out = np.empty(math.prod(shape), dtype=m.dtype)
            with self.zf.open(m.info) as fp:
                _read_header(fp)
                _fill(fp, memoryview(out.view(np.uint8) if out.nbytes else b""), self.path, key)
                if shape == m.shape:
                    _drain(fp)  # reaching the end checks the member's CRC
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - zip/zlib/format errors of a damaged file
            raise damaged(self.path, exc) from None
        if m.fortran and len(m.shape) > 1:
            whole = out.reshape(m.shape[::-1]).transpose()
            return whole if rows is None else whole[:rows]
        return out.reshape(shape)

    def digest(self) -> str:
        """sha256 of every member's name, compression method and stored (possibly compressed) bytes.

        It identifies the arrays exactly (the stored bytes decode to one content) and does not
        depend on which rows are read, on zip timestamps or on member order. Re-compressing the
        same arrays differently changes it (a cache miss, never a wrong hit).
        """
        h = hashlib.sha256()
        infos = sorted([m.info for m in self.members.values()] + self.others, key=lambda i: i.filename)
        try:
            with open(self.path, "rb") as f:
                for info in infos:
                    h.update(f"{info.filename}\0{info.compress_type}\0{info.compress_size}\0".encode())
                    for block in _stored_bytes(f, info):
                        h.update(block)
        except Exception as exc:  # noqa: BLE001 - a damaged or truncated archive
            raise damaged(self.path, exc) from None
        return h.hexdigest()


def damaged(path: Path, exc: BaseException) -> DataError:
    """The one-line error of a damaged archive."""
    text = str(exc).strip().splitlines()
    return DataError(f"{path}: not a readable .npz file ({exc.__class__.__name__}: {text[0] if text else ''})")


def open_npz(path: Path) -> NpzArchive:
    """The archive at ``path`` with every ``.npy`` header parsed (one DataError line if damaged)."""
    if not path.exists():
        raise DataError(f"{path}: data file not found; check the path")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not a readable .npz file (an .npz is a zip archive of arrays; save it with numpy.savez)")
    try:
        zf = zipfile.ZipFile(path)
    except Exception as exc:  # noqa: BLE001 - a damaged archive
        raise damaged(path, exc) from None
    try:
        members, others = _members(zf)
    except Exception as exc:  # noqa: BLE001 - zip/zlib/header errors of a damaged file
        zf.close()
        raise damaged(path, exc) from None
    for m in members.values():
        if m.dtype.hasobject:
            zf.close()
            raise DataError(f"{path}: {PICKLE_MESSAGE}")
    return NpzArchive(path, zf, members, others)


def _members(zf: zipfile.ZipFile) -> tuple[dict[str, Member], list[zipfile.ZipInfo]]:
    members: dict[str, Member] = {}
    others = []
    for info in zf.infolist():
        with zf.open(info) as fp:
            header = _read_header(fp) if fp.peek(len(MAGIC))[: len(MAGIC)] == MAGIC else None
        if header is None:
            others.append(info)  # not an array (numpy.load returns such members as bytes)
            continue
        key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        members[key] = Member(key, info, *header)
    return members, others


def _read_header(fp) -> tuple[tuple[int, ...], np.dtype, bool]:  # noqa: ANN001 - a zip member stream
    version = np.lib.format.read_magic(fp)
    if version not in _READERS:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, fortran, dtype = _READERS[version](fp)
    if any(int(s) < 0 for s in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return tuple(int(s) for s in shape), np.dtype(dtype), bool(fortran)


def _fill(fp, view: memoryview, path: Path, key: str) -> None:  # noqa: ANN001
    """Fill ``view`` (bytes) from the stream, in blocks (one block of extra memory)."""
    pos = 0
    while pos < len(view):
        got = fp.readinto(view[pos : pos + _BLOCK])
        if not got:
            raise DataError(f"{path}: '{key}' is truncated (the archive holds fewer bytes than its header declares)")
        pos += got


def _drain(fp) -> None:  # noqa: ANN001
    while fp.read(_BLOCK):
        pass


def _stored_bytes(f, info: zipfile.ZipInfo):  # noqa: ANN001, ANN202
    """The bytes of one zip member as stored (compressed or not), in blocks."""
    f.seek(info.header_offset)
    sig, name_len, extra_len = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
    if sig != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header of {info.filename}")
    f.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
    left = info.compress_size
    while left:
        block = f.read(min(left, _BLOCK))
        if not block:
            raise EOFError(f"{info.filename} is truncated")
        left -= len(block)
        yield block


# -- memory --------------------------------------------------------------------------------


def parse_bytes(text: str) -> int:
    """``1000000000``, ``500M``, ``2G``, ``1.5GB`` as bytes (decimal units, as messages print them)."""
    t = text.strip().upper().removesuffix("B")
    scale = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}.get(t[-1:], 1)
    return int(float(t[:-1] if scale > 1 else t) * scale)


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> int | None:
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((root / "memory.current").read_text()))
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes this process can still allocate: ``NERO_MEMORY_LIMIT`` if set, else the least of
    ``MemAvailable`` (or ``sysconf``) and the cgroup's headroom; None when unknown."""
    env = os.environ.get("NERO_MEMORY_LIMIT", "").strip()
    if env:
        try:
            return parse_bytes(env)
        except (ValueError, IndexError):
            raise DataError(f"NERO_MEMORY_LIMIT must be a size in bytes (e.g. 2G), got '{env}'") from None
    known = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(known) if known else None


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            break
        n /= 1000
    return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"


def check_memory(needed: int, what: str, source: str) -> None:
    """One DataError line when ``needed`` bytes exceed the memory available."""
    avail = available_memory()
    if avail is not None and needed > avail:
        raise DataError(f"{source}: loading {what} would need {human_bytes(needed)}, {human_bytes(avail)} available; "
                        "use --limit N (or --classes) to load fewer samples")
