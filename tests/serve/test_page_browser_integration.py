"""End to end in a real browser: headless Debian Chromium uploads an ant photo to the page and
reads "ants", then a photo of an oxcart and reads that it is none of the classes, then a web
page saved as photo.jpg and reads imgclf's reason why it is no picture."""

from __future__ import annotations

import pytest

from tests.conftest import shared_dataset
from tests.serving import BROWSER_FLAGS, running

pytestmark = pytest.mark.integration


def test_upload_an_ant_photo_and_read_ants_then_an_oxcart_and_read_unknown(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    from imgclf import ImageData, train
    from imgclf.serve.http import create_app

    data_folder = shared_dataset("hymenoptera")
    data = ImageData.from_folder(data_folder, verbose=False)
    model = train(data, mode="probe", output=tmp_path / "model", verbose=False)
    assert model.metrics()["accuracy"] > 0.9
    # the first validation ant the model itself names (5% of them, by design, are the
    # detector's: the page is under test here, not one photo's margin)
    ant = next(path for path in sorted((data_folder / "val" / "ants").glob("*.jpg"))
               if model.predict(path).label == "ants")
    with running(create_app(tmp_path / "model" / "model.imgclf")) as url, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_FLAGS)
        page = browser.new_page()
        page.goto(url, wait_until="networkidle")
        page.set_input_files("input[type=file]", str(ant))
        top = page.locator("#prediction h2, #prediction .output-class").first
        top.wait_for(timeout=60_000)
        page.wait_for_function(
            "() => /ants|bees/.test(document.querySelector('#prediction')?.innerText || '')",
            timeout=60_000)
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        text = page.locator("#prediction").inner_text()
        oxcart = shared_dataset("imagenet-sample-100") / "n03868242_oxcart.JPEG"
        page.set_input_files("input[type=file]", str(oxcart))
        page.wait_for_function(
            "() => /Unknown/.test(document.querySelector('#prediction')?.innerText || '')",
            timeout=60_000)
        page.screenshot(path=str(tmp_path / "unknown.png"), full_page=True)
        stranger = page.locator("#prediction").inner_text()
        broken = tmp_path / "photo.jpg"  # a web page saved under a picture's name
        broken.write_text("<html><body>Not found</body></html>")
        page.set_input_files("input[type=file]", str(broken))
        page.wait_for_function(
            "() => /Cannot read this picture/.test(document.body.innerText)", timeout=60_000)
        page.screenshot(path=str(tmp_path / "broken.png"), full_page=True)
        complaint = page.locator("body").inner_text()
        browser.close()
    first_line = [line for line in text.splitlines() if line.strip() in ("ants", "bees")][0]
    assert first_line.strip() == "ants", text
    assert "Unknown: none of ants, bees (closest: " in stranger, stranger
    # imgclf's reason, not Gradio's decoder naming a file in its temp folder
    assert "not an image: it is an HTML page" in complaint, complaint
    assert "UnidentifiedImageError" not in complaint and "gradio/" not in complaint
