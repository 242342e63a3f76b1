"""Where normscope keeps generated data (cache) and looks for downloaded files (data root)."""

from __future__ import annotations

import os
from pathlib import Path

from normscope.errors import DataError


def cache_dir() -> Path:
    """Folder for data normscope generates itself.

    ``$NORMSCOPE_CACHE`` if set, else ``$XDG_CACHE_HOME/normscope``, else
    ``~/.cache/normscope``. Created on first use.
    """
    override = os.environ.get("NORMSCOPE_CACHE")
    if override:
        path = Path(override).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base).expanduser() / "normscope"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root() -> Path:
    """Parent folder of the file-based data sets (one subfolder per data set).

    ``$NORMSCOPE_DATA`` if set, else ``$XDG_DATA_HOME/normscope``, else
    ``~/.local/share/normscope``. normscope never downloads into it: the user puts files there.
    """
    override = os.environ.get("NORMSCOPE_DATA")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base).expanduser() / "normscope"


def source_folder(name: str, root: str | os.PathLike[str] | None) -> Path:
    """The folder holding the files of data set ``name``: ``root`` if given, else
    ``data_root() / name``."""
    return Path(root).expanduser() if root is not None else data_root() / name


def missing_files(
    name: str, folder: Path, files: list[str], missing: list[str], note: str = ""
) -> DataError:
    """The error for data files that are not on disk, saying exactly what to put where."""
    where = (
        f"folder {folder} does not exist"
        if not folder.is_dir()
        else f"{folder} lacks {', '.join(missing)}"
    )
    return DataError(
        f"data set {name!r} needs the files {', '.join(files)} in {folder}{note}, but {where}. "
        f"Put the files there, or pass root=<folder holding them>, or set NORMSCOPE_DATA "
        f"to a folder whose subfolder {name}/ holds them. normscope never downloads data."
    )
