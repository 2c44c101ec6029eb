"""Atomic file writes, JSON reading and SHA256 hashing shared by every package.

Every output is written to a temporary sibling first and moved into place with `os.replace`, so a reader
never sees a half-written file and an interrupted write leaves the old file (or nothing) behind. Before the
rename every file (and, for a directory, every directory) of the new output is fsynced, and after it the parent
directory, so a power loss cannot leave a renamed-in-place output whose contents never reached the disk.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def default_mode(path: Path) -> None:
    """Give a freshly written file or directory the permissions an ordinary open()/mkdir() would."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_UMASK)


_JSON_KINDS = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


def read_json(path: str | Path, error: Callable[[str], BaseException] = ValueError, *,
              missing: Callable[[Path], BaseException] | None = None, expect: type | None = None) -> Any:
    """Parse a UTF-8 JSON file; every failure raises an exception whose message names the file and the reason.

    error    builds the exception from its message (an exception class works): "<path>: unreadable: <why>",
             "<path>:<line>: invalid JSON: <what>" or "<path>: top level is an array, expected an object".
    missing  builds the exception, from the path, when the path is not a file (so a caller can give its own
             type and hint); by default error("<path>: not found").
    expect   the required top-level type (dict for a JSON object, list for an array); None accepts any.
    """
    path = Path(path)

    def not_found() -> BaseException:
        return missing(path) if missing is not None else error(f"{path}: not found")

    if not path.is_file():
        raise not_found()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:  # removed since the check above
        raise not_found() from None
    except OSError as exc:
        raise error(f"{path}: unreadable: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: unreadable: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    if expect is not None and not isinstance(value, expect):
        got = _JSON_KINDS.get(type(value), type(value).__name__)
        raise error(f"{path}: top level is {got}, expected {_JSON_KINDS.get(expect, expect.__name__)}")
    return value


def field_error(exc: Any) -> str:
    """`field <dotted.loc>: <message>` of the first error of a pydantic ValidationError (for "<file>: ..." messages)."""
    first = exc.errors()[0]
    return f"field {'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def sha256_file(path: str | Path) -> str:
    """Hex SHA256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path`, on error it is removed.

    Works for files and for directories (write a directory at the yielded path; an existing directory at
    `path` is swapped out and deleted only after the new one is in place).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp.rmdir()  # the caller creates a file or a directory here
    try:
        yield tmp
        install_path(tmp, path)
    finally:
        remove_path(tmp)


# A directory fsync some filesystems do not implement (FUSE mounts, some network filesystems): the files in it
# are still fsynced; only the durability of the names then rests on the filesystem.
_DIR_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.ENOSYS}


def fsync_path(path: str | Path) -> None:
    """fsync one file or directory (a directory's fsync makes the names in it durable)."""
    is_dir = Path(path).is_dir()
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if is_dir else 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if not (is_dir and exc.errno in _DIR_FSYNC_UNSUPPORTED):
            raise
    finally:
        os.close(fd)


def fsync_tree(path: str | Path) -> None:
    """fsync every file and directory under `path` (files first, each directory after its contents)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        for child in sorted(path.iterdir()):
            fsync_tree(child)
    if path.is_file() or (path.is_dir() and not path.is_symlink()):
        fsync_path(path)


def install_path(tmp: Path, path: Path) -> None:
    """Move a finished file or directory `tmp` to `path`; an existing directory is swapped out, then deleted."""
    if not tmp.exists():
        raise FileNotFoundError(f"{path}: nothing was written to the temporary path {tmp}")
    if tmp.is_dir():
        default_mode(tmp)  # mkdtemp-style private permissions are not wanted on the installed directory
    fsync_tree(tmp)  # contents durable before the rename makes them visible under the final name
    if tmp.is_dir() and path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        os.replace(tmp, path)
        remove_path(old)
    else:
        os.replace(tmp, path)
    fsync_path(path.parent)  # the rename itself


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2, sort_keys: bool = False) -> Path:
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, ensure_ascii=False) + "\n"
    return atomic_write_text(path, text)


def atomic_write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """One compact JSON object per line (UTF-8 kept, keys in insertion order), written atomically; the row count."""
    rows = list(rows)
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return len(rows)
