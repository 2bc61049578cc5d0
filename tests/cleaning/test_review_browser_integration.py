"""The review page in a real browser: headless Chromium relabels one flagged picture and removes
another by clicking, presses Apply, and the files move, each move logged."""

from __future__ import annotations

import csv

import pytest

from tests.serving import BROWSER_FLAGS, running
from tests.cleaning.test_review import _photo, write_issues

pytestmark = pytest.mark.integration


def test_relabel_and_remove_by_clicking_then_apply_moves_both(chromium, tmp_path):
    from fastapi import FastAPI
    from gradio import mount_gradio_app
    from playwright.sync_api import expect, sync_playwright

    from imgclf.cleaning.review import ReviewPage
    from imgclf.serve.http import own_gradio_folder

    root = tmp_path / "pets"
    for index in range(4):
        _photo(root / "cats" / f"cat{index}.jpg", index)
        _photo(root / "dogs" / f"dog{index}.jpg", 100 + index)
    issues = write_issues(root / "issues.csv", [
        {"path": root / "cats/cat1.jpg", "kind": "label", "label": "cats", "suggested": "dogs",
         "score": "0.9100", "split": "train", "detail": "p(cats) = 0.05"},
        {"path": root / "dogs/dog2.jpg", "kind": "off_topic", "label": "dogs",
         "suggested": "cats", "score": "0.4000", "split": "valid"},
        {"path": root / "dogs/dog3.jpg", "kind": "duplicate", "label": "dogs", "score": "1.0000",
         "split": "train", "other": root / "dogs/dog1.jpg", "detail": "the same file content"}])
    with own_gradio_folder():
        page = ReviewPage(issues, root, ["cats", "dogs"])
        app = mount_gradio_app(FastAPI(), page.build(), path="/")
        with running(app) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_FLAGS)
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            tab.goto(url)
            thumbnails = tab.locator("#flagged button.thumbnail-item")
            expect(thumbnails).to_have_count(3, timeout=60_000)

            thumbnails.filter(has_text="cat1.jpg").click()
            expect(tab.locator("#details")).to_contain_text("likely mislabelled", timeout=30_000)
            tab.locator("#new-label input").click()
            tab.get_by_role("option", name="dogs").click()
            tab.locator("#relabel").click()
            expect(tab.locator("#status")).to_contain_text("Saved: relabel to dogs",
                                                           timeout=30_000)

            thumbnails.filter(has_text="dog3.jpg").click()
            expect(tab.locator("#details")).to_contain_text("dog3.jpg", timeout=30_000)
            tab.locator("#remove").click()
            expect(tab.locator("#status")).to_contain_text("Saved: remove", timeout=30_000)
            expect(thumbnails.filter(has_text="dog3.jpg")).to_contain_text("decided: remove")

            tab.locator("#apply").click()
            expect(tab.locator("#applied")).to_contain_text("Moved 2 file(s)", timeout=30_000)
            tab.screenshot(path=str(tmp_path / "review.png"), full_page=True)
            applied = tab.locator("#applied").inner_text()
            browser.close()
    assert "--undo" in applied, applied
    with open(root / "cleaning-log.csv", newline="") as handle:
        moves = {(row["action"], row["source"], row["target"]) for row in csv.DictReader(handle)}
    assert moves == {("relabel", str(root / "cats/cat1.jpg"), str(root / "dogs/cat1.jpg")),
                     ("remove", str(root / "dogs/dog3.jpg"), str(root / "_removed/dogs/dog3.jpg"))}
    assert (root / "dogs" / "cat1.jpg").is_file() and not (root / "cats" / "cat1.jpg").exists()
    assert (root / "_removed" / "dogs" / "dog3.jpg").is_file()
    assert not (root / "dogs" / "dog3.jpg").exists() and (root / "dogs" / "dog2.jpg").is_file()
