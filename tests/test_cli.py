"""The command line: real commands, real exit codes and messages."""

from __future__ import annotations

import json

from imgclf.cli import main


def test_backbones_json_lists_offline_choices(capsys):
    assert main(["backbones", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    offline = {row["name"] for row in rows if row["offline"]}
    assert {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"} <= offline


def test_imagenet_classifies_a_folder_and_skips_bad_files(tmp_path, make_picture, capsys):
    for index in range(3):
        make_picture(f"photo{index}.jpg", color=(40 * index, 120, 200))
    (tmp_path / "broken.jpg").write_bytes(b"")
    assert main(["imagenet", str(tmp_path), "--top-k", "2", "--json"]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert sorted(line["path"].rsplit("/", 1)[1] for line in lines) == [
        "photo0.jpg", "photo1.jpg", "photo2.jpg"]
    for line in lines:
        assert len(line["top"]) == 2
        assert line["top"][0]["probability"] >= line["top"][1]["probability"]
    assert "broken.jpg: empty file (0 bytes)" in captured.err


def test_wrong_path_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    assert main(["imagenet", str(tmp_path / "missing")]) == 1
    assert "No such file or folder" in capsys.readouterr().err


def test_empty_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["imagenet", str(tmp_path)]) == 1
    assert "No image files in folder" in capsys.readouterr().err
