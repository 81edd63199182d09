"""link.fileio.write_atomically: the one way small state files are replaced."""

import os

import pytest

from link.fileio import write_atomically


def test_replaces_whole_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    write_atomically(str(path), '{"new": 1}')
    assert path.read_text() == '{"new": 1}'
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def test_failed_rename_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "adir"
    target.mkdir()
    (target / "keep").write_text("x")        # a non-empty directory cannot be replaced by a file
    with pytest.raises(OSError):
        write_atomically(str(target), b"data")
    assert (target / "keep").read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == ["adir"]


def test_mode_is_0640_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        write_atomically(str(tmp_path / "f"), b"1")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "f").st_mode & 0o777 == 0o640
