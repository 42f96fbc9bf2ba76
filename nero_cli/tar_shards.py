"""WebDataset-style ``.tar`` shards as image classification data, read by chunk.

``--data`` names one shard (``data.tar``) or several with a brace pattern
(``data-{000000..000009}.tar``: zero-padded as written; ``{a,b}`` lists; several braces
allowed). A shard's regular files are grouped into samples by key, as WebDataset does: the
member's path up to the first dot of its file name (``dir/000123.png`` is key ``dir/000123``,
extension ``png``). A sample has exactly one image (``png``, ``jpg``, ``jpeg``, ``bmp``, ``gif``,
``tif``, ``tiff``, ``webp``) and optionally its class: ``KEY.cls`` (an integer as text), else
``KEY.json`` with an integer ``"label"`` or ``"cls"``. Other members of a sample (``KEY.txt``,
``KEY.seg.png``...) are ignored; hidden files (``._x``) are skipped. Every sample has a class or
none does (unlabelled data). The samples are numbered in shard order, then in the order of their
images within the shard.

:func:`read_shards` reads each shard once from start to end with :mod:`tarfile` in stream mode:
it hashes the shard's bytes, reads the labels, and opens each image's header (colour mode and
size; an unreadable image is refused there) without decoding it; it keeps only each image's
shard, data offset and length. :class:`TarRows` then reads a chunk's images by seeking to their
offsets (``pread``-like on an uncompressed shard; a compressed one — ``.tar.gz``, ``.tgz``,
``.tar.bz2``, ``.tar.xz`` — is inflated forward from the last read, and from its start again
when a pass goes back) and decodes them with image folders' thread pool.

The data's ``sha256`` is a digest of the colour mode the images are read in and of every
shard's bytes in order (each shard's digest and length); the shards' names do not enter it.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from .errors import DataError
from .folders import GRAY_MODES, IMAGE_SUFFIXES, Folder, FolderRows, colour_mode, header, one_size

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
IMAGE_EXTS = {s.lstrip(".") for s in IMAGE_SUFFIXES}
#: How each compression :mod:`tarfile` detects is opened for reading by offset (seek forward).
OPENERS: dict[str, Callable[[Path], BinaryIO]] = {
    "tar": lambda p: open(p, "rb"), "gz": lambda p: gzip.open(p, "rb"),  # type: ignore[dict-item]
    "bz2": lambda p: bz2.open(p, "rb"), "xz": lambda p: lzma.open(p, "rb"),  # type: ignore[dict-item]
}
_BROKEN = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)
_BRACE = re.compile(r"\{([^{}]*)\}")
EXAMPLE = "data-{000000..000009}.tar"


def is_shards(spec: str) -> bool:
    """Whether ``--data`` names ``.tar`` shards (one file, or a brace pattern of them)."""
    return not spec.startswith("sample:") and spec.lower().endswith(TAR_SUFFIXES)


def expand(spec: str) -> list[str]:
    """The shard names of a brace pattern, in order: ``{000..002}`` (padded to the bounds' width
    when one has a leading zero), ``{a,b}``; a spec without braces is itself."""
    m = _BRACE.search(spec)
    if m is None:
        return [spec]
    body = m.group(1)
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        a, b = rng.groups()
        if int(a) > int(b):
            raise DataError(f"{spec}: the range {{{body}}} is empty; write it low..high, e.g. {EXAMPLE}")
        width = max(len(a), len(b)) if (a[0] == "0" and len(a) > 1) or (b[0] == "0" and len(b) > 1) else 0
        parts = [f"{i:0{width}d}" for i in range(int(a), int(b) + 1)]
    elif "," in body:
        parts = body.split(",")
    else:
        raise DataError(f"{spec}: expected a shard pattern such as {EXAMPLE} or {{a,b}}.tar, found {{{body}}}")
    return [name for part in parts for name in expand(spec[: m.start()] + part + spec[m.end():])]


def shard_paths(spec: str) -> list[Path]:
    """The shards ``spec`` names; a missing one refused, saying how many of them exist."""
    paths = [Path(p) for p in expand(spec)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        some = f" ({len(paths) - len(missing)} of the {len(paths)} shards it names exist)" if len(paths) > 1 else ""
        raise DataError(f"{missing[0]}: shard not found{some}; give existing .tar files, one or a pattern like "
                        f"{EXAMPLE}")
    return paths


class _Hashed:
    """A file read forward, its bytes hashed as they are read."""

    def __init__(self, f: BinaryIO):
        self.f, self.sha = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        block = self.f.read(n)
        self.sha.update(block)
        return block


class _Strict(tarfile.TarInfo):
    """Member headers as :mod:`tarfile` reads them, except that a bad or cut-short header after
    the first ends the archive with an error, not silently (a truncated or damaged shard)."""

    @classmethod
    def fromtarfile(cls, tf: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tf)
        except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as exc:
            raise tarfile.SubsequentHeaderError(f"{exc} at byte {tf.offset}") from None
        except tarfile.EmptyHeaderError:
            if tf.offset == 0:
                raise  # an empty file: tarfile's own "empty file"
            # the data ends after a member, without the archive's end blocks: a shard cut short
            raise tarfile.SubsequentHeaderError(f"the archive ends at byte {tf.offset} without its end-of-archive "
                                                "blocks (cut short)") from None


@dataclass
class _Index:
    """What the headers pass keeps: per image its shard, data offset, length and name; the labels
    (None for a sample without a class); whether every image is grey, the sizes, the digests."""

    shard: list[int] = field(default_factory=list)
    offset: list[int] = field(default_factory=list)
    length: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    labels: list[int | None] = field(default_factory=list)
    gray: bool = True
    sizes: set[tuple[int, int]] = field(default_factory=set)
    comp: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)


def split_key(name: str) -> tuple[str, str] | None:
    """A member's WebDataset key and extension (lower case); None for a name without one or hidden."""
    folder, _, base = name.rpartition("/")
    if base.startswith(".") or "." not in base:
        return None
    stem, ext = base.split(".", 1)
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _label(shard: Path, member: str, ext: str, data: bytes) -> int | None:
    """The class a ``.cls`` member holds (an integer as text), or a ``.json`` object's integer
    ``"label"`` (else ``"cls"``); None for JSON without either (metadata)."""
    value: Any
    if ext == "json":
        try:
            obj = json.loads(data)
        except ValueError:
            return None
        value = obj.get("label", obj.get("cls")) if isinstance(obj, dict) else None
        if value is None:
            return None
        what = 'an integer "label" (or "cls")'
    else:
        try:
            value = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            value = data[:20]
        what = "an integer class id as text (e.g. 3)"
    ok = isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) and value.isascii() \
        and value.isdigit()
    if not ok or not 0 <= int(value) < 2**31:
        raise DataError(f"{shard}: {member}: expected {what}, from 0 to 2**31-1, found {str(value)[:30]!r}; fix the label or "
                        "remove the file")
    return int(value)


class _Shard:
    """One shard's samples as its members are read: images in order, classes and other members by key."""

    def __init__(self, path: Path, ix: int, index: _Index):
        self.path, self.ix, self.index = path, ix, index
        self.images: dict[str, int] = {}  # key -> position in the index
        self.labels: dict[str, int] = {}
        self.others: dict[str, str] = {}  # key -> its first member that is not an image, for messages

    def add(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        parts = split_key(m.name) if m.isreg() else None
        if parts is None:
            return
        key, ext = parts
        if ext in IMAGE_EXTS:
            self._image(tf, m, key)
            return
        self.others.setdefault(key, m.name)
        if ext == "cls" or ext == "json" and key not in self.labels:  # .cls wins over .json
            label = _label(self.path, m.name, ext, tf.extractfile(m).read())  # type: ignore[union-attr]
            if label is not None:
                self.labels[key] = label

    def _image(self, tf: tarfile.TarFile, m: tarfile.TarInfo, key: str) -> None:
        ix = self.index
        if key in self.images:
            first = ix.names[self.images[key]]
            raise DataError(f"{self.path}: sample '{key}' has two images ({first}, {m.name}); WebDataset samples hold "
                            "one image each: remove one or rename it (e.g. KEY.seg.png is ignored)")
        data = tf.extractfile(m).read()  # type: ignore[union-attr]
        mode, h, w = header(io.BytesIO(data), f"{self.path}: {m.name}")
        self.images[key] = len(ix.names)
        ix.gray &= mode in GRAY_MODES
        ix.sizes.add((h, w))
        ix.shard.append(self.ix)
        ix.offset.append(int(m.offset_data))
        ix.length.append(len(data))
        ix.names.append(m.name)

    def close(self) -> None:
        """Every key has its image; the samples' classes appended in image order."""
        lonely = next((k for k in self.others if k not in self.images), None)
        if lonely is not None:
            raise DataError(f"{self.path}: sample '{lonely}' has {self.others[lonely]} but no image (.png, .jpg, ...); "
                            "every sample needs one image: add it, or remove the sample's files")
        self.index.labels.extend(self.labels.get(k) for k in self.images)


def _read_shard(path: Path, ix: int, index: _Index) -> None:
    """Read one shard from start to end (stream mode: no seeking), hashing its bytes."""
    shard = _Shard(path, ix, index)
    try:
        with open(path, "rb") as raw:
            hashed = _Hashed(raw)
            with tarfile.open(fileobj=hashed, mode="r|*", tarinfo=_Strict) as tf:  # type: ignore[call-overload]
                index.comp.append(getattr(tf.fileobj, "comptype", "tar"))
                for m in tf:
                    shard.add(tf, m)
            while hashed.read(1 << 20):
                pass
    except _BROKEN as exc:
        raise DataError(f"{path}: not a readable tar file ({exc.__class__.__name__}: {exc}); check it with "
                        f"'tar -tf {path.name}', or leave it out of --data") from None
    if index.comp[-1] not in OPENERS:
        raise DataError(f"{path}: a {index.comp[-1]}-compressed tar; give it uncompressed or as .tar.gz")
    shard.close()
    index.digests.append(f"{hashed.sha.hexdigest()}:{path.stat().st_size}")


def _labels(paths: list[Path], index: _Index) -> np.ndarray | None:
    """The samples' classes, or None when none has one; some without a class is refused."""
    have = sum(label is not None for label in index.labels)
    if have == 0:
        return None
    if have < len(index.labels):
        i = index.labels.index(None)
        raise DataError(f"{paths[index.shard[i]]}: {have} of {len(index.labels)} samples have a class (.cls or a "
                        f".json label) but {index.names[i]} has none; give every sample a class, or none (unlabelled)")
    return np.array(index.labels, dtype=np.int64)


def read_shards(spec: str, channels: int | None, resized: bool = False) -> Folder:
    """The shards ``spec`` names, read lazily (see the module): an image folder's :class:`Folder`
    (no class folders; the labels are the ``.cls`` classes)."""
    paths = shard_paths(spec)
    index = _Index()
    for i, path in enumerate(paths):
        _read_shard(path, i, index)
    if not index.names:
        raise DataError(f"{spec}: no images in the shards; expected members such as 000123.png with 000123.cls")
    labels = _labels(paths, index)
    mode, want = colour_mode(spec, index.gray, channels)
    sizes = one_size(spec, index.sizes, resized)
    digest = hashlib.sha256(f"webdataset\0mode={mode}\0{chr(0).join(index.digests)}".encode()).hexdigest()
    rows = TarRows(paths, index, mode, want, max(h * w for h, w in sizes))
    return Folder(rows, labels, None, want, sizes[0] if len(sizes) == 1 else None, digest)  # type: ignore[arg-type]


class TarRows(FolderRows):
    """The images of ``.tar`` shards: each read seeks to a chunk's members in order, reads their
    bytes, and decodes them with :data:`nero_cli.folders.WORKERS` threads."""

    def __init__(self, paths: list[Path], index: _Index, mode: str, channels: int, largest: int):
        super().__init__([], mode, channels, largest)
        self.paths, self.comp, self.names = paths, index.comp, index.names
        self.shard = np.array(index.shard, dtype=np.int32)
        self.offset = np.array(index.offset, dtype=np.int64)
        self.length = np.array(index.length, dtype=np.int64)
        self.n = len(self.names)
        self._open: tuple[int, BinaryIO] | None = None

    def _file(self, s: int) -> BinaryIO:
        """Shard ``s`` open for reading (the last shard read stays open; a compressed one keeps its place)."""
        if self._open is not None and self._open[0] == s:
            return self._open[1]
        if self._open is not None:
            self._open[1].close()
            self._open = None
        self._open = (s, OPENERS[self.comp[s]](self.paths[s]))
        return self._open[1]

    def _bytes(self, p: int) -> bytes:
        s, n = int(self.shard[p]), int(self.length[p])
        try:
            f = self._file(s)
            f.seek(int(self.offset[p]))
            data = f.read(n)
        except _BROKEN as exc:
            raise DataError(f"{self.paths[s]}: cannot read {self.names[p]} ({exc.__class__.__name__}); the shard "
                            "changed or went away during the run: run again") from None
        if len(data) != n:
            raise DataError(f"{self.paths[s]}: {self.names[p]} is cut short (the shard changed during the run); "
                            "run again")
        return data

    def read(self, positions: np.ndarray) -> list[np.ndarray]:
        blobs = [io.BytesIO(self._bytes(int(p))) for p in positions]
        names = [f"{self.paths[int(self.shard[p])]}: {self.names[int(p)]}" for p in positions]
        return self.decode_all(blobs, names)
