"""Output files: never the store or its journal files, written whole or not at all."""

import doctest
import os

import pytest

from normscope import outputs
from normscope.errors import ConfigError


def test_docstring_examples_run():
    assert doctest.testmod(outputs, optionflags=doctest.ELLIPSIS).failed == 0


@pytest.fixture
def store(tmp_path):
    db = tmp_path / "r.db"
    for path in outputs.sqlite_files(db)[:3]:
        path.write_bytes(b"SQLite format 3\x00")
    return db


@pytest.mark.parametrize("name", ["r.db", "r.db-wal", "r.db-shm", "r.db-journal"])
def test_the_store_and_its_companions_are_refused(store, name):
    with pytest.raises(ConfigError, match=r"is the results store .*Nothing was written"):
        outputs.check_output(store.parent / name, store=store)


def test_symbolic_links_relative_paths_and_hard_links_are_seen_through(store, tmp_path):
    (tmp_path / "link.csv").symlink_to(store)
    (tmp_path / "sub").mkdir()
    os.link(store, tmp_path / "hard.csv")
    (tmp_path / "dirlink").symlink_to(tmp_path)
    for alias in [
        tmp_path / "link.csv",
        tmp_path / "sub" / ".." / "r.db",
        tmp_path / "hard.csv",
        tmp_path / "dirlink" / "r.db-wal",
    ]:
        with pytest.raises(ConfigError):
            outputs.check_output(alias, store=store)
    assert outputs.check_output(tmp_path / "r.csv", store=store) == tmp_path / "r.csv"


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old, complete")
    with pytest.raises(RuntimeError), outputs.replacing(target) as tmp:
        tmp.write_text("new, half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old, complete"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_finished_write_replaces_the_file_with_an_ordinary_mode(tmp_path):
    target = tmp_path / "deep" / "out.html"
    outputs.write_atomic(target, "<p>ok</p>")
    assert target.read_text() == "<p>ok</p>"
    assert target.stat().st_mode & 0o777 == 0o666 & ~outputs._umask()
    assert [p.name for p in target.parent.iterdir()] == ["out.html"]
