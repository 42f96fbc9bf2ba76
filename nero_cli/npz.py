"""Reading ``.npz`` archives lazily: declared shapes first, then only the leading rows needed.

An ``.npz`` is a zip of ``.npy`` members, stored or deflated. :func:`open_npz` parses each
member's ``.npy`` header from the member stream, so every array's dtype and shape are known
before any data is inflated; :meth:`NpzArchive.read` then inflates only the first ``rows`` rows
of a C-order array (a Fortran-order array is read whole). Object arrays are refused, as
``numpy.load(allow_pickle=False)`` refuses them.

For inputs read by chunk (:mod:`nero_cli.sources`), a C-order member stored uncompressed
(``numpy.savez``) is read by offset (:class:`FileRows`, see :meth:`NpzArchive.stored`), and a
deflated one (``numpy.savez_compressed``) is inflated forward from the last row read
(:class:`StreamRows`).

:func:`check_memory` refuses a load whose decoded size exceeds the memory available
(``MemAvailable``, the cgroup's headroom, or ``NERO_MEMORY_LIMIT`` when set, e.g. ``2G``).
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import zipfile
import zlib
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

    def stored(self, key: str, rows: int | None = None) -> "FileRows | None":
        """The rows of member ``key`` (its first ``rows``) read by offset, when it is a C-order array
        stored uncompressed that holds data; None otherwise. A member shorter than its header
        declares is refused as truncated."""
        m = self.members[key]
        info = m.info
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1 or m.fortran or not m.nbytes():
            return None
        try:
            with open(self.path, "rb") as f:
                start = _data_start(f, info)
                _read_header(f)
                offset = f.tell()
        except Exception as exc:  # noqa: BLE001 - a damaged archive
            raise damaged(self.path, exc) from None
        if offset + m.nbytes() > start + info.compress_size:
            raise DataError(f"{self.path}: '{key}' is truncated (the archive holds fewer bytes than its header declares)")
        return FileRows(self.path, offset, m.shape_read(rows), m.dtype, key)

    def digest(self) -> str:
        """sha256 of every member's name, compression method and stored (possibly compressed) bytes.

        It identifies the arrays exactly (the stored bytes decode to one content) and does not
        depend on which rows are read, on zip timestamps or on member order. Re-compressing the
        same arrays differently changes it (a cache miss, never a wrong hit).

        The same pass checks the CRC-32 of every member stored uncompressed (its stored bytes are
        its content): a member read by offset (:meth:`stored`) is never read through ``zipfile``,
        which checks it only at a member's end, so a damaged byte would otherwise go unnoticed.
        """
        h = hashlib.sha256()
        infos = sorted([m.info for m in self.members.values()] + self.others, key=lambda i: i.filename)
        try:
            with open(self.path, "rb") as f:
                for info in infos:
                    h.update(f"{info.filename}\0{info.compress_type}\0{info.compress_size}\0".encode())
                    plain = info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1
                    crc = 0
                    for block in _stored_bytes(f, info):
                        h.update(block)
                        if plain:
                            crc = zlib.crc32(block, crc)
                    if plain and crc != info.CRC:
                        raise zipfile.BadZipFile(f"Bad CRC-32 for file '{info.filename}'; the archive is damaged: "
                                                 "write or copy it again")
        except Exception as exc:  # noqa: BLE001 - a damaged or truncated archive
            raise damaged(self.path, exc) from None
        return h.hexdigest()


def damaged(path: Path, exc: BaseException, kind: str = ".npz") -> DataError:
    """The one-line error of a damaged archive (or ``.npy`` file)."""
    text = str(exc).strip().splitlines()
    return DataError(f"{path}: not a readable {kind} file ({exc.__class__.__name__}: {text[0] if text else ''})")


def open_npy(path: Path, rows: int | None = None) -> "FileRows | np.ndarray":
    """The array of a ``.npy`` file (its first ``rows`` rows): read by offset when in C order
    (:class:`FileRows`), else read whole; object arrays and files shorter than their header
    declares are refused in one line."""
    try:
        with open(path, "rb") as f:
            shape, dtype, fortran = _read_header(f)
            offset = f.tell()
        size = path.stat().st_size
    except Exception as exc:  # noqa: BLE001 - not an .npy, or a damaged one
        raise damaged(path, exc, ".npy") from None
    if dtype.hasobject:
        raise DataError(f"{path}: {PICKLE_MESSAGE}")
    if offset + math.prod(shape) * dtype.itemsize > size:
        raise DataError(f"{path}: the array is truncated (the file holds fewer bytes than its header declares)")
    if fortran or not shape:
        whole = np.load(path, allow_pickle=False)
        return whole if rows is None or not shape else whole[:rows]
    return FileRows(path, offset, (shape[0] if rows is None else min(rows, shape[0]), *shape[1:]), dtype)


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


def _data_start(f, info: zipfile.ZipInfo) -> int:  # noqa: ANN001
    """Seek ``f`` to the first stored byte of the member ``info`` (past its local header); its offset."""
    f.seek(info.header_offset)
    sig, name_len, extra_len = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
    if sig != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header of {info.filename}")
    start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    f.seek(start)
    return start


def _stored_bytes(f, info: zipfile.ZipInfo):  # noqa: ANN001, ANN202
    """The bytes of one zip member as stored (compressed or not), in blocks."""
    _data_start(f, info)
    left = info.compress_size
    while left:
        block = f.read(min(left, _BLOCK))
        if not block:
            raise EOFError(f"{info.filename} is truncated")
        left -= len(block)
        yield block


def _runs(positions: np.ndarray) -> list[np.ndarray]:
    """Indices into sorted ``positions`` split into runs of consecutive positions."""
    return np.split(np.arange(len(positions)), np.flatnonzero(np.diff(positions) != 1) + 1)


def _rows_out(positions: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """An empty array for the rows at ``positions``, and its bytes, one line per row."""
    out = np.empty((len(positions), *shape[1:]), dtype=dtype)
    return out, out.reshape(len(positions), -1).view(np.uint8)


class FileRows:
    """The rows of a C-order array stored at ``offset`` in a file (a ``.npy``, or an ``.npz``
    member stored uncompressed), read by offset (``os.preadv``): only the rows asked for are read,
    and the pages read stay in the page cache, outside this process's memory (a memory map would
    count every page a pass touches as the process's resident memory)."""

    slow = False

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype, key: str = "images"):
        self.path, self.offset, self.shape, self.dtype, self.key = path, offset, tuple(shape), dtype, key
        self.n = self.shape[0]
        self.row_bytes = math.prod(self.shape[1:]) * dtype.itemsize

    def read(self, positions: np.ndarray) -> np.ndarray:
        out, flat = _rows_out(positions, self.shape, self.dtype)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for run in _runs(positions):
                view = memoryview(flat[run[0] : run[-1] + 1]).cast("B")
                start, done = self.offset + int(positions[run[0]]) * self.row_bytes, 0
                while done < len(view):
                    got = os.preadv(fd, [view[done:]], start + done)
                    if not got:
                        raise DataError(f"{self.path}: '{self.key}' is truncated (the file holds fewer bytes than "
                                        "its header declares)")
                    done += got
        finally:
            os.close(fd)
        return out


class StreamRows:
    """The rows of a deflated C-order member, inflated forward: a read continues from the last row
    read (skipping the rows between), a read behind it starts the member again. A pass over the
    rows in order inflates the member once, holding one read's rows."""

    slow = True

    def __init__(self, path: Path, member: Member, rows: int | None = None):
        self.path, self.member = path, member
        self.n = member.rows if rows is None else min(rows, member.rows or 0)
        self.shape, self.dtype = (self.n, *member.shape[1:]), member.dtype
        self.row_bytes = math.prod(member.shape[1:]) * member.dtype.itemsize
        self._zf: zipfile.ZipFile | None = None
        self._fp = None
        self._at = 0

    def read(self, positions: np.ndarray) -> np.ndarray:
        out, flat = _rows_out(positions, self.shape, self.dtype)
        try:
            for run in _runs(positions):
                first = int(positions[run[0]])
                if self._fp is None or first < self._at:
                    self._open()
                self._skip(first - self._at)
                _fill(self._fp, memoryview(flat[run[0] : run[-1] + 1]).cast("B"), self.path, self.member.key)
                self._at = first + len(run)
            if self._at == self.member.rows:
                _drain(self._fp)  # reaching the end checks the member's CRC
                self.close()
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - zip/zlib errors of a damaged file
            self.close()
            raise damaged(self.path, exc) from None
        return out

    def _open(self) -> None:
        self.close()
        self._zf = zipfile.ZipFile(self.path)
        self._fp = self._zf.open(self.member.info)
        _read_header(self._fp)
        self._at = 0

    def _skip(self, rows: int) -> None:
        left = rows * self.row_bytes
        while left:
            got = len(self._fp.read(min(left, _BLOCK)))
            if not got:
                raise DataError(f"{self.path}: '{self.member.key}' is truncated (the archive holds fewer bytes than "
                                "its header declares)")
            left -= got

    def close(self) -> None:
        for h in (self._fp, self._zf):
            if h is not None:
                h.close()
        self._zf, self._fp, self._at = None, None, 0


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


def check_memory(needed: int, what: str, source: str,
                 hint: str = "use --limit N (or --classes) to load fewer samples") -> None:
    """One DataError line when ``needed`` bytes exceed the memory available."""
    avail = available_memory()
    if avail is not None and needed > avail:
        raise DataError(f"{source}: loading {what} would need {human_bytes(needed)}, {human_bytes(avail)} available; "
                        f"{hint}")
