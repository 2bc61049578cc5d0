"""The HTTP API on a real server on 127.0.0.1: good pictures, bad uploads, concurrent clients."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from tests.serving import colour_photos, probe_model, running  # noqa: E402

LIMIT = 200_000


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return colour_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def base_url(photos, tmp_path_factory):
    import os

    from imgclf.serve.http import create_app

    os.environ["IMGCLF_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    model = probe_model(photos, tmp_path_factory.mktemp("model"))
    with running(create_app(model, max_upload_bytes=LIMIT)) as url:
        yield url


def test_health_and_model(base_url):
    assert httpx.get(f"{base_url}/health").json() == {"status": "ok"}
    model = httpx.get(f"{base_url}/model").json()
    assert model["classes"] == ["blue", "red"] and model["backbone"] == "efficientnet_lite0"
    assert model["input"]["image_size"] == 64


def test_predict_multipart_and_raw_bytes(base_url, photos):
    picture = (photos / "red" / "3.jpg").read_bytes()
    multipart = httpx.post(f"{base_url}/predict", files={"file": ("red.jpg", picture, "image/jpeg")})
    raw = httpx.post(f"{base_url}/predict", content=picture,
                     headers={"content-type": "image/jpeg"})
    for response in (multipart, raw):
        assert response.status_code == 200
        body = response.json()
        assert body["label"] == "red" and body["index"] == 1
        assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert multipart.json() == raw.json()


@pytest.mark.parametrize("body, status, message", [
    (b"x" * (LIMIT + 1), 413, "too large"),
    (b"<html><body>not found</body></html>", 422, "HTML page"),
    (b"\xff\xd8\xff\xe0" + bytes(500), 422, "corrupt"),
    (b"", 400, "Empty request"),
], ids=["oversized", "html", "corrupt-jpeg", "empty"])
def test_bad_uploads_get_a_4xx_with_a_message(base_url, body, status, message):
    for response in (httpx.post(f"{base_url}/predict", content=body),
                     httpx.post(f"{base_url}/predict", files={"file": ("a.jpg", body)})):
        assert response.status_code == status, response.text
        assert message in response.json()["error"]
        assert "Traceback" not in response.text


def test_truncated_picture_is_refused(base_url, photos):
    from PIL import Image

    buffer = io.BytesIO()
    Image.effect_noise((400, 300), 60).convert("RGB").save(buffer, format="JPEG", quality=95)
    response = httpx.post(f"{base_url}/predict", content=buffer.getvalue()[:3000])
    assert response.status_code == 422 and "truncated" in response.json()["error"]


def test_form_without_a_file(base_url):
    response = httpx.post(f"{base_url}/predict", files={"note": (None, "no picture")})
    assert response.status_code == 400 and "No file" in response.json()["error"]


def test_raw_bytes_sent_the_way_curl_sends_them(base_url, photos):
    # curl --data-binary @photo.jpg labels the body application/x-www-form-urlencoded
    response = httpx.post(f"{base_url}/predict", content=(photos / "blue" / "2.jpg").read_bytes(),
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200 and response.json()["label"] == "blue"


def test_eight_concurrent_clients_all_get_answers(base_url, photos):
    pictures = [(photos / label / f"{i}.jpg").read_bytes()
                for label in ("red", "blue") for i in range(4)]

    def ask(picture):
        return httpx.post(f"{base_url}/predict", content=picture, timeout=60)

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(ask, pictures))
    assert [r.status_code for r in responses] == [200] * 8
    assert [r.json()["label"] for r in responses] == ["red"] * 4 + ["blue"] * 4


def test_the_web_page_is_served(base_url):
    page = httpx.get(f"{base_url}/", follow_redirects=True)
    assert page.status_code == 200 and "gradio" in page.text.lower()
