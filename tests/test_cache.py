"""imgclf's cache: `imgclf cache --clear` deletes only what imgclf wrote, and a cache setting
that cannot work is said plainly (issue #27, items 2 and 10)."""

from __future__ import annotations

import json
import os

import pytest

from imgclf.cache import MARKER, cache_folder, cache_root, clear_cache
from imgclf.cli import main
from imgclf.errors import ImgclfError


def _users_folder(root):
    """A folder of the user's own, with files that look like imgclf's."""
    (root / "images" / "empty_album").mkdir(parents=True)
    (root / "verified.json").write_text('{"holiday": "notes"}')
    (root / ".verified.json.backup.tmp").write_text("mine")
    (root / "images" / ".holiday.tmp").write_text("mine")
    (root / "holiday.jpg").write_bytes(b"\xff\xd8 my photo")
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*"))


def test_clear_deletes_nothing_in_a_folder_that_is_not_imgclfs(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "mine"
    before = _users_folder(folder)
    monkeypatch.setenv("IMGCLF_CACHE", str(folder))
    cache_folder("views")  # imgclf used it: still no marker, it holds the user's files
    assert not (folder / MARKER).exists()
    assert main(["cache", "--clear"]) == 1
    assert "not marked as imgclf's cache" in capsys.readouterr().err
    assert sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")) == before


def test_clear_in_imgclfs_own_cache_spares_what_is_not_of_its_shape(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("IMGCLF_CACHE", str(root))
    copies = cache_folder("images")
    assert (root / MARKER).is_file()  # a new folder: imgclf's
    ours = copies / "ab" / ("0" * 24 + "_448.jpg")
    ours.parent.mkdir(parents=True)
    ours.write_bytes(b"copy")
    (copies / "empty_album").mkdir()
    (copies / ".holiday.tmp").write_text("mine")
    (root / "verified.json").write_text('{"holiday": "notes"}')  # not imgclf's index
    clear_cache(["copies", "verdicts"])
    assert not ours.exists() and not ours.parent.exists()
    assert (copies / "empty_album").is_dir() and (copies / ".holiday.tmp").is_file()
    assert json.loads((root / "verified.json").read_text()) == {"holiday": "notes"}


def test_an_old_cache_with_only_imgclfs_files_is_marked_and_cleared(tmp_path, monkeypatch):
    root = tmp_path / "old"
    (root / "venvs").mkdir(parents=True)
    (root / "verified.json").write_text(json.dumps({"version": "3", "entries": {}}))
    monkeypatch.setenv("IMGCLF_CACHE", str(root))
    cache_folder("views")
    assert (root / MARKER).is_file()
    assert clear_cache(["verdicts"])["verdicts"][0] == 1 and (root / "venvs").is_dir()


def test_a_tilde_means_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("IMGCLF_CACHE", "~/x")
    monkeypatch.chdir(tmp_path)
    assert cache_root() == tmp_path / "x"
    cache_folder("views")
    assert (tmp_path / "x").is_dir() and not (tmp_path / "~").exists()


def test_a_cache_setting_naming_a_file_is_said_plainly(tmp_path, monkeypatch, colours, capsys):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("IMGCLF_CACHE", str(tmp_path / "file"))
    with pytest.raises(ImgclfError, match="is a file, not a folder"):
        cache_root()
    assert main(["data", str(colours)]) == 1
    assert "is a file, not a folder" in capsys.readouterr().err


def test_a_read_only_cache_is_said_plainly(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    monkeypatch.setenv("IMGCLF_CACHE", str(folder))
    if os.geteuid() == 0:  # root may write anywhere: the check asks the system as a user would
        monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ImgclfError, match="read-only"):
        cache_folder("views")


def test_the_default_cache_folder_is_imgclfs_whatever_else_is_in_it(tmp_path, monkeypatch):
    monkeypatch.delenv("IMGCLF_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    default = tmp_path / ".cache" / "imgclf"
    (default / "bench-fastai-0123456789").mkdir(parents=True)  # a benchmark's own virtualenv
    assert cache_folder("views") == default / "views" and (default / MARKER).is_file()
    assert clear_cache(["views"]) == {"views": (0, 0, 0)}
    assert (default / "bench-fastai-0123456789").is_dir()
