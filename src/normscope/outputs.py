"""Writing output files without destroying results.

Every file normscope writes for the user (CSV / Parquet exports, HTML reports and their
PNG figures, audit pages) goes through this module:

- :func:`check_output` refuses an output path that resolves to the results store or to
  one of SQLite's companion files (``-wal``, ``-shm``, ``-journal``), through symbolic
  links, hard links and relative paths alike, before anything is written;
- :func:`replacing` writes to a temporary file in the destination's folder and renames
  it over the destination only once it is complete, so a crash or a full disk leaves
  the old file (or none), never half a file.

Example::

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with replacing(folder / "out.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> (folder / "out.txt").read_text()
    'done'
    >>> check_output(folder / "r.db-wal", store=folder / "r.db")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    normscope.errors.ConfigError: ...
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from normscope.errors import ConfigError

SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")
"""Files SQLite keeps beside a database while it is open or after a crash; they hold
committed data that the main file may not have yet."""


def sqlite_files(db: str | os.PathLike[str]) -> list[Path]:
    """The database file ``db`` and the companion files SQLite may keep beside it."""
    db = Path(db)
    return [db, *(db.with_name(db.name + suffix) for suffix in SQLITE_COMPANIONS)]


def _same(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, case-insensitive file systems
    except OSError:
        return False


def check_output(
    output: str | os.PathLike[str], *, store: str | os.PathLike[str], flag: str = "--output"
) -> Path:
    """``output`` as a Path, or :class:`ConfigError` when writing it would overwrite the
    results store ``store`` or one of its SQLite companion files."""
    output, store = Path(output), Path(store)
    for path in sqlite_files(store):
        if _same(output, path):
            which = "" if path == store else f" (its {path.name[len(store.name) :]} file)"
            raise ConfigError(
                f"{flag} {str(output)!r} is the results store {str(store)!r}{which}; writing "
                f"there would destroy the stored results. Give {flag} another path. Nothing "
                "was written."
            )
    return output


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an exception
    the temporary file is flushed to disk and renamed over ``path`` (atomic on POSIX),
    otherwise it is removed. The folder of ``path`` is created if missing. Raises
    ``OSError`` as the file system does."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        try:
            # mkstemp makes the file private (0600); give it the mode a plain open would.
            os.fchmod(fd, 0o666 & ~_umask())
        finally:
            os.close(fd)
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through :func:`replacing`."""
    with replacing(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
    return Path(path)
