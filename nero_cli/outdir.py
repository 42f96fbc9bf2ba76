"""Output folders nero writes (run folders, report folders): exclusive, atomic, never a user's files.

The guarantees, in the order a command meets them:

1. **Only nero's own folders are replaced.** A target that is the working directory, one of
   its ancestors, the home directory, or a folder holding the models or the data is refused.
   An existing non-empty target is replaced only with ``--overwrite`` and only if it is a
   folder nero wrote: its manifest (``run.json`` for runs, ``report.json`` for reports) says
   ``"written_by": "nero"`` and lists every file in the folder. A folder with any other file is
   never replaced, and the message never suggests ``--overwrite`` for it.
2. **One writer per target.** An advisory lock (``fcntl.flock``) on ``.NAME.lock`` beside the
   target is held for the whole command; a second command on the same target exits 5 naming
   the process that holds it. The kernel drops the lock when its process dies, so a crashed
   run never blocks the next one. The lock file says ``nero lock``: a file of that name with
   anything else in it is not nero's, and is neither written nor deleted.
3. **Atomic replacement.** The folder is built in ``.NAME.partial`` beside the target and
   swapped in with one ``renameat2(RENAME_EXCHANGE)``, so the target is at every instant
   either the old complete folder or the new one; the old one is then deleted. Where the
   file system cannot exchange, the old folder is renamed aside to ``.NAME.old`` first, and a
   crash between the two renames is repaired by the next command on that target. The target
   is checked again just before the swap: a file of the user's that appeared in it while the
   command ran stops the swap (exit 5; the new folder is kept in ``.NAME.new``), and the old
   folder is deleted file by file from its manifest, so nothing it did not list is removed.
   ``--out`` may not be a symbolic link: renaming would replace the link, not its folder.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
from fnmatch import fnmatchcase
import json
import os
import shutil
import time
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from .errors import OutputError

#: The manifest of each kind of folder: written last, it proves the folder is nero's.
MANIFESTS = {"run": "run.json", "report": "report.json", "plots": "plots.json"}
#: What a partial folder of each kind may hold (files, folders ending in "/", or patterns such as "*.png").
PARTIAL_FILES = {"run": ("run.json", "results.csv", "summary.csv", "summary.json", "shard.npz", "chunks/", "plots/",
                         "stream/", "shard/", "vectors/", "results.parquet",
                         "lie.csv", "layers.csv", "search.csv"),
                 "report": ("report.json", "report.html", "figures/"),
                 "plots": ("plots.json", "*.png", "*.svg")}
#: errno values that mean "this place cannot be written" (reported with exit 5, not as a bug).
IO_ERRORS = {errno.ENOSPC, errno.EROFS, errno.ENOTDIR, errno.EACCES, errno.EDQUOT, errno.EPERM, errno.EISDIR,
             errno.EEXIST, errno.ENAMETOOLONG, errno.EMLINK, errno.EFBIG}
_RENAME_EXCHANGE = 2
#: Test hook of the fault-injection suite: pause (seconds) inside the swap, so a kill can land there.
PAUSE_ENV = "NERO_TEST_SWAP_PAUSE"
#: The target of the command's last :func:`claim`: named by an I/O error that carries no path.
_claimed: list[Path] = []
LOCK_MARK = "nero lock"


class NotReplaced(OutputError):
    """The target gained files nero did not write while the command ran: the finished folder is kept aside."""


def io_error(exc: OSError, path: Path | str | None = None, what: str = "write") -> OutputError:
    """One line naming the path and the cause of an I/O failure."""
    where = exc.filename or path or (f"--out {_claimed[-1]}" if _claimed else "?")
    hint = {errno.ENOSPC: "free some space or choose another --out", errno.EDQUOT: "the disk quota is full",
            errno.EROFS: "the file system is read-only; choose another --out"}.get(exc.errno or 0,
                                                                                    "choose another --out")
    return OutputError(f"{where}: cannot {what} ({exc.strerror or exc}); {hint}")


def manifest(folder: Path, kind: str) -> dict[str, Any] | None:
    """The folder's nero manifest, or None when the folder is not nero's."""
    try:
        info = json.loads((folder / MANIFESTS[kind]).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("written_by") != "nero" or not isinstance(info.get("files"), list):
        return None
    return info


def listing(folder: Path) -> list[str]:
    """Every file below ``folder``, as sorted relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())


def foreign_files(folder: Path, kind: str) -> list[str]:
    """Files in ``folder`` that its manifest does not list (all of them when it has no manifest)."""
    info = manifest(folder, kind)
    known = set(info["files"]) if info else set()
    return [f for f in listing(folder) if f not in known]


def _sibling(out: Path, suffix: str) -> Path:
    return out.parent / f".{out.name}.{suffix}"


def check_target(out: Path, kind: str, overwrite: bool, protect: Sequence[Path | str] = ()) -> None:
    """Refuse a target nero must never replace; see the module docstring."""
    target, cwd = out.resolve(), Path.cwd().resolve()
    if target == cwd or target in cwd.parents or target == Path.home().resolve():
        raise OutputError(f"--out {out}: is the working directory, its parent or the home directory; nero never "
                          f"replaces it; give a new folder, e.g. --out {out / 'nero-run'}")
    for p in protect:
        rp = Path(p).resolve()
        if rp == target or target in rp.parents:
            raise OutputError(f"--out {out}: holds {p}, an input of this command; choose another --out")
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a directory; choose another path")
    if not out.is_dir() or not any(out.iterdir()):
        return
    extra = foreign_files(out, kind)
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise OutputError(f"--out {out}: holds files nero did not write ({shown}); nero never replaces such a "
                          "folder; choose another --out")
    if not overwrite:
        raise OutputError(f"--out {out}: already holds a nero {kind}; add --overwrite to replace it, or choose "
                          "another directory")


class Lock:
    """An exclusive advisory lock on ``.NAME.lock`` beside the target, released on exit."""

    def __init__(self, out: Path):
        self.out, self.path, self.fd = out, _sibling(out, "lock"), -1

    def __enter__(self) -> "Lock":
        while True:
            fd = self._open()
            if fd < 0:  # unlinked by its holder between our two calls: try again
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 64, 0).decode(errors="replace").split()
                os.close(fd)
                raise OutputError(f"--out {self.out}: another nero process (pid {text[-1] if text else 'unknown'}) is "
                                  "writing it; wait for it to finish or choose another --out") from None
            if self._same_file(fd):  # not unlinked by the previous holder between open and flock
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{LOCK_MARK} pid {os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def _open(self) -> int:
        """A descriptor of the lock file: a new one, or nero's own left by another process (-1 if it
        vanished meanwhile); a file of that name that is not nero's is refused, untouched."""
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW)
        except FileNotFoundError:
            return -1
        except OSError:  # a link, a folder, a file we may not write
            fd = None
        text = os.pread(fd, 64, 0).decode(errors="replace") if fd is not None else ""
        if text.startswith(LOCK_MARK) or text.rstrip("\n").isdigit():  # the digits: nero before the mark
            return fd  # type: ignore[return-value]
        if fd is not None:
            os.close(fd)
        raise OutputError(f"--out {self.out}: {self.path} exists and is not nero's lock file; nero neither writes "
                          "nor deletes it; move it away or choose another --out")

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def __exit__(self, *exc: Any) -> None:
        if self.fd >= 0:
            if self._same_file(self.fd):  # while still holding it: the next holder re-checks the inode
                Path(self.path).unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = -1


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2``); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _pause() -> None:
    if os.environ.get(PAUSE_ENV):
        time.sleep(float(os.environ[PAUSE_ENV]))


def repair(out: Path, kind: str) -> None:
    """Undo a swap cut short between its two renames: put a complete old folder back."""
    old = _sibling(out, "old")
    if old.is_dir() and not out.exists() and manifest(old, kind) is not None:
        old.rename(out)
    elif old.is_dir() and out.exists() and manifest(old, kind) is not None and not foreign_files(old, kind):
        shutil.rmtree(old)


def commit(partial: Path, out: Path, kind: str) -> None:
    """Put the finished folder ``partial`` at ``out`` atomically and delete what it replaced.

    ``out`` was checked by :func:`check_target` under the lock: it is missing, empty, or nero's."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        partial.rename(out)
        return
    late = foreign_files(out, kind)
    if late:  # kept aside under a fixed name (a report's partial folder has a random one)
        kept = _sibling(out, "new")
        discard(kept, kind)
        partial.rename(kept)
        raise NotReplaced(f"--out {out}: {', '.join(late[:3])} appeared in it while nero ran; nero never replaces a "
                          f"folder holding files it did not write; the new {kind} is in {kept}")
    if _exchange(partial, out):
        _pause()
        _remove_own(partial, kind)  # now the old folder
        return
    old = _sibling(out, "old")
    out.rename(old)
    _pause()
    partial.rename(out)
    _remove_own(old, kind)


def _remove_own(folder: Path, kind: str) -> None:
    """Delete a replaced folder of nero's: whole when it holds only what its manifest lists, else
    those files and the folders they leave empty (a file of the user's may have come since the check)."""
    if not foreign_files(folder, kind):
        shutil.rmtree(folder)
        return
    inside = set(listing(folder))  # a manifest's names, but only files that are in the folder
    for name in inside.intersection((manifest(folder, kind) or {}).get("files", [])):
        (folder / name).unlink()
    for d in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(d.iterdir()):
            d.rmdir()


def discard(partial: Path, kind: str, keep: Sequence[str] = ()) -> None:
    """Delete a partial folder, but only one that holds nothing but nero's files; with ``keep``
    (top-level names), delete everything in it but those (a resumed run keeps its ``chunks``)."""
    if not partial.exists():
        return
    allowed = PARTIAL_FILES[kind]
    strange = [f for f in listing(partial)
               if not any(f == a or (a.endswith("/") and f.startswith(a)) or fnmatchcase(f, a) for a in allowed)]
    if manifest(partial, kind) is None or strange:
        raise OutputError(f"{partial}: is in nero's way but is not a folder nero left; move it away and rerun")
    if not keep:
        shutil.rmtree(partial)
        return
    for child in partial.iterdir():
        if child.name not in keep:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


@contextmanager
def building(out: Path, kind: str) -> Iterator[Path]:
    """A fresh partial folder beside ``out`` (a stale one nero left is discarded) for the block to
    fill; when the block ends normally it is swapped in (:func:`commit`), otherwise removed. The
    caller holds ``out`` through :func:`claim` and writes the manifest last."""
    partial = _sibling(out, "partial")
    discard(partial, kind)
    partial.mkdir(parents=True)
    try:
        yield partial
        commit(partial, out, kind)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


@contextmanager
def claim(out: Path, kind: str, overwrite: bool, protect: Sequence[Path | str] = ()) -> Iterator[None]:
    """Hold ``out`` for one command: its parent made, the lock taken, a cut-short swap repaired,
    and the target checked (:func:`check_target`); I/O failures become one OutputError line."""
    if out.is_symlink():
        raise OutputError(f"--out {out}: is a symbolic link; nero replaces its folder by renaming, which would replace "
                          f"the link; give the folder itself (--out {out.resolve()}) or a new one")
    blocked = next((a for a in [out.parent, *out.parent.parents] if a.exists() and not a.is_dir()), None)
    if blocked is not None:
        raise OutputError(f"--out {out}: {blocked} is a file, not a directory; choose another --out")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise io_error(exc, out.parent, "create the folder") from None
    if not os.access(out.parent, os.W_OK):
        raise OutputError(f"--out {out}: the directory {out.parent} is not writable; choose another --out")
    try:
        lock = Lock(out).__enter__()
    except OSError as exc:
        raise io_error(exc, out.parent, "lock the output in") from None
    _claimed[:] = [out]
    try:
        repair(out, kind)
        check_target(out, kind, overwrite, protect)
        yield
    finally:
        lock.__exit__()


__all__ = ["MANIFESTS", "NotReplaced", "check_target", "claim", "building", "Lock", "commit", "discard", "repair", "manifest", "listing",
           "foreign_files", "io_error", "IO_ERRORS"]
