"""Files that several processes share: written whole or not at all, changed one at a time."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO


class CannotCreate(FileNotFoundError):
    """A file or folder its folder refuses (/proc, /sys take no new entry) or that has no
    folder (a link into one missing): the system says only "No such file or directory"."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        folder = Path(path).parent
        why = "takes no new files" if folder.is_dir() else "does not exist"
        super().__init__(errno.ENOENT, f"cannot be created, {folder} {why}", str(path))


def make_folder(path: Path) -> None:
    """`mkdir -p path`, refused in words the user can act on: a file in the way is "Not a
    directory" (mkdir says "File exists"), a folder that takes no new entry says so."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:  # a file where a folder should be
        not_a_folder = errno.ENOTDIR, os.strerror(errno.ENOTDIR), error.filename
        raise NotADirectoryError(*not_a_folder) from error
    except FileNotFoundError as error:
        raise CannotCreate(error.filename or path) from error


def write_atomically(path: Path, text: str | bytes, mode: int | None = None) -> None:
    """Replace `path` with `text` (written as UTF-8) or bytes so a crash leaves either the
    old or the new file. The file is private to this user unless `mode` says otherwise:
    then it gets `mode` less the umask, as a file open() creates does."""
    with replacing(path, mode) as out:
        if isinstance(text, bytes):
            out.buffer.write(text)  # nothing went through the text layer: no order to keep
        else:
            out.write(text)


# what open() gives a new file: the umask decides who else may read it, and write it too
SHARED = 0o666


@contextlib.contextmanager
def replacing(path: Path, mode: int | None = None, buffering: int = -1) -> Iterator[TextIO]:
    """A file to write in place of `path`: once the block ends it is synced to disk and
    renamed over `path`, so a crash or an error in the block leaves the old file. Its mode
    is that of write_atomically."""
    make_folder(path.parent)
    with naming(path):
        if mode is None:
            descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        else:  # created with the mode, so the kernel applies the umask (a chmod would not)
            temporary = str(path.parent / f".{path.name}.{secrets.token_hex(8)}")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8", buffering=buffering) as out:
                yield out
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    sync_folder(path.parent)


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, read a mebibyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sync_folder(folder: Path) -> None:
    """Put on disk the names in `folder`: a file renamed into it (after its content was
    synced) survives a power cut."""
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """Name `path` in an OSError of the block, which writes `path` or a temporary file in its
    place: "No space left on device" from a write to an open file names no file, so not
    which disk is full, and a temporary's random name is none the user gave. "No such file"
    there is `path` (or the file a link at it names) that cannot be created."""
    try:
        yield
    except CannotCreate:
        raise
    except FileNotFoundError as error:
        raise CannotCreate(os.path.realpath(path) if path.is_symlink() else path) from error
    except OSError as error:
        if not error.errno or error.filename == str(path):
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error


@contextlib.contextmanager
def exclusive(lock_file: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold `lock_file` (created if needed) so one process or thread at a time runs the
    block: each entry opens the file anew, and flock excludes other opens in this process too.
    `waiting` is called first if another holds it."""
    make_folder(lock_file.parent)
    with lock_file.open("w", encoding="utf-8") as handle:
        if waiting is not None and not held_alone(handle, wait=False):
            waiting()
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def shared(lock_file: Path) -> Iterator[TextIO]:
    """Hold `lock_file` (created if needed) for the block, shared with its other holders;
    the open file is yielded so that the holder can wait to hold it alone (`held_alone`)."""
    make_folder(lock_file.parent)
    with lock_file.open("a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        yield handle  # closing the file lets it go


def held_alone(handle: TextIO, wait: bool = True) -> bool:
    """Turn a shared hold on `handle` into an exclusive one: True once no other process
    holds the file; without `wait`, False at once when another does."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        # Linux lets go of a shared hold before converting it, and a refused conversion
        # leaves it gone: taken again (not waited for: `exclusive` held nothing before)
        with contextlib.suppress(BlockingIOError):
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    return True
