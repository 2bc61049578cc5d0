"""The review page carries out only what was decided on it, shrugs off odd events, and a
`kill` of `imgclf clean --review` leaves no temporary folder (issue #27, items 5, 10, 12)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from imgclf.cleaning.fixes import Decision, write_decisions
from imgclf.cleaning.review import ALL, ReviewPage
from tests.cleaning.test_review import _photo, flagged  # noqa: F401 - a fixture

gr = pytest.importorskip("gradio", reason="needs the serve extra")


def test_apply_carries_out_no_decision_the_page_never_showed(flagged):  # noqa: F811
    root, issues, files = flagged
    # a decisions.csv that came with the data, about a picture no one flagged or reviewed
    write_decisions(root / "decisions.csv", [Decision(root / "cats" / "cat0.jpg", "remove")])
    page = ReviewPage(issues, root, ["cats", "dogs"])
    text = page.apply()
    assert "nothing was moved" in text and (root / "cats" / "cat0.jpg").is_file()
    _gallery, paths, _counts = page.on_show(ALL, ALL)
    page.on_decide("remove", files["dogs/dog3.jpg"], None, ALL, ALL, paths)
    text = page.apply()
    assert text.startswith("Moved 1 file(s).") and "1 decision(s) about pictures not on" in text
    assert (root / "cats" / "cat0.jpg").is_file() and not (root / "dogs" / "dog3.jpg").exists()


@pytest.mark.parametrize("index", ["x", None, 1.5, True, -1, 99])
def test_a_select_event_with_an_odd_index_selects_nothing(flagged, index):  # noqa: F811
    root, issues, _files = flagged
    page = ReviewPage(issues, root, ["cats", "dogs"])
    _gallery, paths, _counts = page.on_show(ALL, ALL)
    current, *_ = page.on_select(paths, index)
    assert current is None


def test_a_killed_review_leaves_no_temporary_folder(flagged, tmp_path):  # noqa: F811
    root, _issues, _files = flagged
    temporary = tmp_path / "gradio"
    temporary.mkdir()
    environment = {**os.environ, "GRADIO_TEMP_DIR": str(temporary), "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "imgclf", "clean", str(root), "--image-size", "64", "--review",
         "--port", "7987"], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        said = ""
        for line in server.stdout:  # it finds the issues, then serves the page
            said += line
            if line.startswith("Review "):
                break
        assert "Review " in said, said
        assert _ours(temporary)  # its upload folder, while it runs
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    deadline = time.monotonic() + 10
    while _ours(temporary) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _ours(temporary) == []


def _ours(folder):
    """imgclf's temporary folders in folder (Gradio keeps some of its own there too)."""
    return sorted(path.name for path in folder.glob("imgclf-*"))
