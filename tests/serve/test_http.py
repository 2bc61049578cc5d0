"""The server on 127.0.0.1: the HTTP API (good pictures, bad uploads, endless bodies, concurrent
clients, slow pictures) and the page's uploads, unreadable pictures and examples."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
def model(photos, tmp_path_factory):
    import os

    os.environ["IMGCLF_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return probe_model(photos, tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def examples(photos, tmp_path_factory):
    """An examples folder with one real picture and four files the page must not publish."""
    folder = tmp_path_factory.mktemp("examples")
    outside = tmp_path_factory.mktemp("private")
    (folder / "ant.jpg").write_bytes((photos / "red" / "0.jpg").read_bytes())
    (outside / "secret.txt").write_text("root:x:0:0:secret")
    (folder / "passwd.jpg").symlink_to(outside / "secret.txt")  # the /etc/passwd trick
    (folder / "elsewhere.jpg").symlink_to(photos / "blue" / "1.jpg")  # a picture, outside
    (folder / "page.jpg").write_text("<html><body>404</body></html>")
    (folder / "cut.jpg").write_bytes((photos / "red" / "1.jpg").read_bytes()[:300])
    return folder


@pytest.fixture(scope="module")
def base_url(model, examples):
    from imgclf.serve.http import create_app

    with running(create_app(model, max_upload_bytes=LIMIT, examples=examples)) as url:
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


def test_the_web_page_shows_the_model_its_controls_and_only_real_examples(base_url):
    page = httpx.get(f"{base_url}/", follow_redirects=True)
    assert page.status_code == 200 and "<!doctype html>" in page.text.lower()
    config = httpx.get(f"{base_url}/config").json()  # what the page's script draws
    assert config["title"] == "Blue or red?"
    by_type = {}
    for component in config["components"]:
        by_type.setdefault(component["type"], []).append(component["props"])
    text = " ".join(props.get("value") or "" for props in by_type["markdown"])
    assert "# Blue or red?" in text and "**Classes** (2): blue, red" in text
    assert "efficientnet_lite0" in text and "**Validation**: accuracy" in text
    assert [props["label"] for props in by_type["image"]] == ["Picture", "Evidence"]
    assert by_type["image"][0]["sources"] == ["upload", "clipboard", "webcam"]
    assert [props["label"] for props in by_type["label"]] == ["Prediction"]
    assert [props["value"] for props in by_type["button"]] == ["Classify", "Explain"]
    assert [props["label"] for props in by_type["accordion"]] == ["Why this answer?"]
    # the examples folder's one real picture, not its symlinks, its HTML page or its cut file
    shown = [props for props in by_type.get("dataset", [])]
    assert len(shown) == 1 and len(shown[0]["samples"]) == 1
    assert {"classify", "explain"} <= {dependency.get("api_name")
                                       for dependency in config["dependencies"]}


# --- the page (Gradio): uploads, pictures it cannot read, examples --------------------------

def upload(base_url: str, name: str, content: bytes) -> httpx.Response:
    return httpx.post(f"{base_url}/gradio_api/upload", files={"files": (name, content)})


def classify_on_the_page(base_url: str, path: str, button: str = "classify") -> str:
    """Call the page's Classify (or Explain) button through Gradio's API; the event
    stream's text."""
    started = httpx.post(f"{base_url}/gradio_api/call/{button}",
                         json={"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]})
    assert started.status_code == 200, started.text
    event = started.json()["event_id"]
    return httpx.get(f"{base_url}/gradio_api/call/{button}/{event}", timeout=120).text


def test_the_page_explains_an_answer(base_url, photos):
    """The "Why this answer?" panel: a heat picture, and the nearest training pictures'
    classes (their files are not published)."""
    good = upload(base_url, "red.jpg", (photos / "red" / "3.jpg").read_bytes()).json()[0]
    events = classify_on_the_page(base_url, good, "explain")
    assert "event: complete" in events, events
    assert "evidence for **red**" in events and "Most alike among the training pictures: red" \
        in events
    bad = upload(base_url, "page.jpg", b"<html>not found</html>").json()[0]
    events = classify_on_the_page(base_url, bad, "explain")
    assert "Cannot read this picture: not an image" in events
    assert httpx.get(f"{base_url}/gradio_api/file={bad}").status_code != 200


def test_the_page_refuses_uploads_over_the_api_limit(base_url):
    response = upload(base_url, "big.jpg", b"x" * (LIMIT + 1))
    assert response.status_code == 413 and "maximum allowed size" in response.text


def test_a_bad_picture_on_the_page_gets_imgclfs_reason_and_is_not_kept(base_url, photos):
    path = upload(base_url, "page.jpg", b"<html><body>not found</body></html>").json()[0]
    events = classify_on_the_page(base_url, path)
    assert "event: error" in events
    assert "Cannot read this picture: not an image: it is an HTML page" in events
    for leak in ("UnidentifiedImageError", "Traceback", path, "gradio/"):
        assert leak not in events
    # the file is deleted at once: the server hosts nothing it could not read
    assert httpx.get(f"{base_url}/gradio_api/file={path}").status_code != 200
    good = upload(base_url, "red.jpg", (photos / "red" / "5.jpg").read_bytes()).json()[0]
    events = classify_on_the_page(base_url, good)
    assert "event: complete" in events and '"label": "red"' in events


def test_only_a_page_of_this_computer_shows_the_training_pictures(model, photos, monkeypatch):
    """The "Why this answer?" panel of a page others can reach names the nearest training
    pictures' classes; a page on 127.0.0.1 (imgclf serve's default) or in a notebook shows
    the pictures too."""
    from imgclf.inference.predictor import Predictor
    from imgclf.serve.gradio_app import build_blocks, explain_picture
    from imgclf.serve.http import LOOPBACK

    predictor = Predictor.load(model)
    picture = str(photos / "blue" / "2.jpg")
    heat, reasons, shown = explain_picture(predictor, picture)
    assert heat.shape[2] == 3 and "evidence for **blue**" in reasons and shown == []
    heat, reasons, shown = explain_picture(predictor, picture, training_pictures=True)
    assert len(shown) == 4 and all(caption.startswith("blue (") for _, caption in shown)
    assert all(small.size[0] <= 160 for small, _ in shown)
    assert "127.0.0.1" in LOOPBACK and "0.0.0.0" not in LOOPBACK
    import uvicorn

    import imgclf.serve.http as http

    made = {}
    monkeypatch.setattr(http, "create_app", lambda model, **options: made.update(options))
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: None)
    for host, shown in (("127.0.0.1", True), ("0.0.0.0", False), ("192.168.1.5", False)):
        http.serve(model, host=host)
        assert made["training_pictures"] is shown, host
    for training_pictures in (False, True):
        page = build_blocks(predictor, training_pictures=training_pictures)
        galleries = [component["props"] for component in page.config["components"]
                     if component["type"] == "gallery"]
        assert [gallery["visible"] for gallery in galleries] == [training_pictures]


def test_classify_names_the_reason_not_the_temporary_file(model, tmp_path):
    import gradio

    from imgclf.inference.predictor import Predictor
    from imgclf.serve.gradio_app import classify

    predictor = Predictor.load(model)
    bad = tmp_path / "gradio" / "abc123" / "photo.jpg"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\xff\xd8\xff\xe0" + bytes(500))
    with pytest.raises(gradio.Error) as caught:
        classify(predictor, {"path": str(bad), "orig_name": "photo.jpg"})
    assert caught.value.message.startswith("Cannot read this picture: corrupt image")
    assert str(tmp_path) not in caught.value.message
    assert not bad.exists()
    assert classify(predictor, None) == {}


def test_examples_are_only_real_pictures_inside_their_folder(examples, capsys):
    from imgclf.serve.gradio_app import example_paths

    assert example_paths(examples) == [str((examples / "ant.jpg").resolve())]
    warnings = capsys.readouterr().err
    for skipped in ("passwd.jpg", "elsewhere.jpg", "page.jpg", "cut.jpg"):
        assert f"Skipping example {examples / skipped}" in warnings
    assert "leads out of" in warnings and "HTML page" in warnings
    # a list of paths is held to the same rules, each file to its own folder
    assert example_paths([examples / "passwd.jpg", examples / "ant.jpg"]) == [
        str((examples / "ant.jpg").resolve())]


def test_the_page_publishes_only_the_good_example(base_url, examples):
    config = httpx.get(f"{base_url}/config").json()
    samples = [component["props"]["samples"] for component in config["components"]
               if component.get("type") == "dataset"]
    names = [sample[0]["orig_name"] for sample in samples[0]]
    assert names == ["ant.jpg"]
    secret = (examples / "passwd.jpg").resolve()
    response = httpx.get(f"{base_url}/gradio_api/file={secret}")
    assert response.status_code != 200 and "root:x" not in response.text


def test_uploads_are_deleted_when_the_server_stops(model, photos):
    import os

    from imgclf.serve.http import create_app, own_gradio_folder

    before = os.environ.get("GRADIO_TEMP_DIR")
    with own_gradio_folder() as folder:
        with running(create_app(model)) as url:
            path = upload(url, "red.jpg", (photos / "red" / "2.jpg").read_bytes()).json()[0]
            assert Path(path).is_file() and Path(path).is_relative_to(folder)
        assert not Path(path).exists()  # Gradio's delete_cache, at shutdown
    assert not folder.exists()  # what `imgclf serve` does on its way out
    assert os.environ.get("GRADIO_TEMP_DIR") == before


# --- the API under load: endless bodies, slow pictures ---------------------------------------

def endless(consumed: list[int], *, head: bytes = b"", total: int = 64 << 20):
    """A chunked body of 64 MB that counts how much of it the client was asked to send."""
    yield head
    chunk = b"x" * (64 << 10)
    while consumed[0] < total:
        consumed[0] += len(chunk)
        yield chunk


@pytest.mark.parametrize("form", [False, True], ids=["raw", "multipart"])
def test_an_endless_chunked_body_is_refused_without_reading_it(base_url, form):
    consumed = [0]
    head, headers = b"", {"content-type": "application/octet-stream"}
    if form:
        head = (b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"'
                b"\r\nContent-Type: image/jpeg\r\n\r\n")
        headers = {"content-type": "multipart/form-data; boundary=b0undary"}
    response = httpx.post(f"{base_url}/predict", content=endless(consumed, head=head),
                          headers=headers, timeout=30)
    assert response.status_code == 413 and "too large" in response.json()["error"]
    # the server hung up near the limit (plus what the sockets' buffers hold), not at 64 MB
    assert consumed[0] < 16 << 20, consumed[0]


def test_a_slow_decode_holds_up_no_other_prediction(model, photos, monkeypatch):
    import threading

    import imgclf.data.datasets
    import imgclf.data.decoding
    import imgclf.data.transforms
    from imgclf.serve.http import create_app

    slow_picture = (photos / "blue" / "7.jpg").read_bytes()
    decoding, release = threading.Event(), threading.Event()
    real_load_image = imgclf.data.decoding.load_image

    def load_image(source, **options):
        if bytes(source) == slow_picture:  # a 90-megapixel PNG, say
            decoding.set()
            release.wait(30)
        return real_load_image(source, **options)

    # wherever the server reads pictures: its own decode step and the Predictor's loop
    monkeypatch.setattr(imgclf.data.transforms, "load_image", load_image)
    monkeypatch.setattr(imgclf.data.datasets, "load_image", load_image)
    with running(create_app(model, with_gradio=False)) as url, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.post, f"{url}/predict", content=slow_picture, timeout=60)
        assert decoding.wait(30)
        quick = httpx.post(f"{url}/predict", content=(photos / "red" / "4.jpg").read_bytes(),
                           timeout=15)
        assert quick.status_code == 200 and quick.json()["label"] == "red"
        assert not slow.done()  # still decoding, and the other client was answered
        release.set()
        assert slow.result().status_code == 200 and slow.result().json()["label"] == "blue"


def test_the_page_title_reads_as_a_title():
    from imgclf.serve.gradio_app import page_title

    assert page_title(["ants", "bees"]) == "Ants or bees?"
    assert page_title(["house_cat", "wild_cat", "dog"]) == "House cat, wild cat or dog?"
    many = ["dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts"]
    assert page_title(many) == "A classifier of 8 classes"
