"""A local stand-in for the image search APIs and the image hosts behind them (127.0.0.1 only).

Each provider's search endpoint answers in the shape its documentation gives; the image
addresses point back at this server, which serves real pictures and every kind of bad answer
the collector must survive: broken bytes, HTML named .jpg, oversized files, redirects,
429 with Retry-After, slow answers and 404s.
"""

from __future__ import annotations

import functools
import io
import json
import threading
from collections import Counter
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
from PIL import Image

KEY = "test-key"
# the bad addresses every query's results include; what the collector should say of each
BAD = {
    "/bad/truncated.jpg": "truncated",
    "/bad/page.jpg": "HTML page",
    "/bad/text.jpg": "content type text/html",
    "/bad/huge.jpg": "too large",
    "/bad/slow.jpg": "timed out",
    "/bad/missing.jpg": "HTTP 404",
    "/bad/tiny.png": "too small",
}


@functools.lru_cache(maxsize=None)
def photo(label: str, number: int, size=(120, 90)) -> bytes:
    """A distinct JPEG per (label, number): red or blue tinted noise, easy to tell apart."""
    tint = {"red": (180, 20, 20), "blue": (20, 20, 180)}.get(label, (90, 90, 90))
    generator = np.random.default_rng([sum(map(ord, label)), number])
    pixels = generator.integers(0, 70, (size[1], size[0], 3)) + np.array(tint)
    # a smooth gradient under the noise gives every picture its own perceptual hash
    ramp = np.linspace(0, 1, size[0])[None, :, None] * generator.integers(-60, 60, 3)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels + ramp, 0, 255).astype("uint8")).save(buffer, "JPEG",
                                                                          quality=90)
    return buffer.getvalue()


class FakeWeb:
    """Catalogue: query -> image paths. Counts every request by path."""

    def __init__(self):
        self.catalogue: dict[str, list[str]] = {}
        self.requests: Counter = Counter()
        self.limited_once: set[str] = set()
        self.api_limited_once = False
        self.base = ""
        # set when the server stops: the slow picture waits for it, so it is slower than any
        # timeout, however busy the machine
        self.released = threading.Event()
        photo("red", 998, size=(1600, 1200))  # the huge picture, made before any request

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    # --- images ---

    def image(self, path: str):
        """(status, headers, body) for an image address."""
        parts = path.strip("/").split("/")
        if parts[0] == "img":  # /img/<label>/<n>.jpg
            return 200, {"Content-Type": "image/jpeg"}, photo(parts[1], int(parts[2][:-4]))
        if parts[0] == "big":  # /big/<label>/<n>.jpg: 1600x1200 (smooth, ~0.1 MB), shrunk on save
            picture = Image.open(io.BytesIO(photo(parts[1], int(parts[2][:-4]))))
            buffer = io.BytesIO()
            picture.resize((1600, 1200), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=80)
            return 200, {"Content-Type": "image/jpeg"}, buffer.getvalue()
        if parts[0] == "dup":  # /dup/<label>/<n>.jpg: /img/<label>/<n>.jpg re-encoded larger
            picture = Image.open(io.BytesIO(photo(parts[1], int(parts[2][:-4]))))
            buffer = io.BytesIO()
            picture.resize((240, 180)).save(buffer, "JPEG", quality=70)
            return 200, {"Content-Type": "image/jpeg"}, buffer.getvalue()
        if parts[0] == "redirect":  # /redirect/<label>/<n>.jpg -> /img/...
            return 302, {"Location": "/img/" + "/".join(parts[1:])}, b""
        if parts[0] == "limited":  # 429 first, then the picture
            if path not in self.limited_once:
                self.limited_once.add(path)
                return 429, {"Retry-After": "1"}, b"slow down"
            return 200, {"Content-Type": "image/jpeg"}, photo(parts[1], int(parts[2][:-4]))
        if path == "/bad/truncated.jpg":
            data = photo("red", 999)
            return 200, {"Content-Type": "image/jpeg"}, data[: len(data) // 2]
        if path == "/bad/page.jpg":  # the server says JPEG, the bytes are a web page
            return 200, {"Content-Type": "image/jpeg"}, b"<!DOCTYPE html><html>Not found</html>"
        if path == "/bad/text.jpg":
            return 200, {"Content-Type": "text/html; charset=utf-8"}, b"<html>login</html>"
        if path == "/bad/huge.jpg":
            return 200, {"Content-Type": "image/jpeg"}, photo("red", 998, size=(1600, 1200))
        if path == "/bad/slow.jpg":
            self.released.wait(60)
            return 200, {"Content-Type": "image/jpeg"}, photo("red", 997)
        if path == "/bad/tiny.png":
            buffer = io.BytesIO()
            Image.new("RGB", (20, 20), (200, 0, 0)).save(buffer, "PNG")
            return 200, {"Content-Type": "image/png"}, buffer.getvalue()
        return 404, {"Content-Type": "text/plain"}, b"not found"

    # --- search APIs, in each provider's documented shape ---

    def results(self, query: str, page: int, size: int) -> list[str]:
        paths = self.catalogue.get(query, [])
        return paths[(page - 1) * size: page * size]

    def api(self, path: str, query: dict[str, str], headers) -> tuple[int, object] | None:
        if path == "/openverse/v1/images/":
            if not self.api_limited_once:  # the API itself rate-limits the first call
                self.api_limited_once = True
                return 429, {"detail": "Request was throttled."}
            size = int(query.get("page_size", 20))
            paths = self.results(query["q"], int(query.get("page", 1)), size)
            return 200, {"result_count": len(self.catalogue.get(query["q"], [])),
                         "page_count": 1, "page_size": size, "page": int(query.get("page", 1)),
                         "results": [{"id": str(i), "title": f"{query['q']} {i}",
                                      "url": self.url(p), "creator": "Ada Lovelace",
                                      "license": "by", "license_version": "4.0",
                                      "license_url": "https://creativecommons.org/licenses/by/4.0/",
                                      "foreign_landing_url": self.url(f"/page{p}"),
                                      "provider": "flickr", "source": "flickr"}
                                     for i, p in enumerate(paths)]}
        if path == "/wikimedia/w/api.php":
            search = query["gsrsearch"].removesuffix(" filetype:bitmap")
            size, offset = int(query["gsrlimit"]), int(query.get("gsroffset", 0))
            paths = self.results(search, offset // size + 1, size)
            pages = {str(1000 + i): {
                "pageid": 1000 + i, "ns": 6, "title": f"File:{search} {i}.jpg", "index": i + 1,
                "imageinfo": [{"thumburl": self.url(p), "url": self.url(p),
                               "descriptionurl": self.url(f"/wiki/File:{i}"),
                               "mime": "image/jpeg",
                               "extmetadata": {
                                   "LicenseShortName": {"value": "CC BY-SA 4.0"},
                                   "LicenseUrl": {"value": "https://creativecommons.org/licenses/by-sa/4.0"},
                                   "Artist": {"value": '<a href="//commons.wikimedia.org/wiki/User:Grace">Grace Hopper</a>'},
                               }}]} for i, p in enumerate(paths)}
            answer = {"batchcomplete": "", "query": {"pages": pages}} if pages else {"batchcomplete": ""}
            return 200, answer
        if path == "/pexels/v1/search":
            if headers.get("Authorization") != KEY:
                return 401, {"error": "Unauthorized"}
            paths = self.results(query["query"], int(query.get("page", 1)), int(query["per_page"]))
            return 200, {"page": int(query.get("page", 1)), "per_page": int(query["per_page"]),
                         "total_results": len(paths),
                         "photos": [{"id": i, "url": self.url(f"/photo/{i}"),
                                     "photographer": "Pat Pexels", "alt": query["query"],
                                     "src": {"original": self.url(p), "large": self.url(p)}}
                                    for i, p in enumerate(paths)]}
        if path == "/unsplash/search/photos":
            if headers.get("Authorization") != f"Client-ID {KEY}":
                return 401, {"errors": ["OAuth error: The access token is invalid"]}
            paths = self.results(query["query"], int(query.get("page", 1)), int(query["per_page"]))
            return 200, {"total": len(paths), "total_pages": 1,
                         "results": [{"id": str(i), "alt_description": query["query"],
                                      "urls": {"regular": self.url(p), "raw": self.url(p)},
                                      "links": {"html": self.url(f"/photos/{i}")},
                                      "user": {"name": "Uma Unsplash"}}
                                     for i, p in enumerate(paths)]}
        if path == "/pixabay/api/":
            if query.get("key") != KEY:
                return 400, {"error": "[ERROR 400] Invalid or missing API key"}
            paths = self.results(query["q"], int(query.get("page", 1)), int(query["per_page"]))
            return 200, {"total": len(paths), "totalHits": len(paths),
                         "hits": [{"id": i, "pageURL": self.url(f"/photos/{i}"),
                                   "largeImageURL": self.url(p), "webformatURL": self.url(p),
                                   "user": "Pix User", "tags": query["q"]}
                                  for i, p in enumerate(paths)]}
        if path == "/flickr/services/rest/":
            if query.get("api_key") != KEY:
                return 200, {"stat": "fail", "code": 100, "message": "Invalid API Key"}
            paths = self.results(query["text"], int(query.get("page", 1)), int(query["per_page"]))
            return 200, {"stat": "ok", "photos": {
                "page": 1, "pages": 1, "perpage": int(query["per_page"]), "total": len(paths),
                "photo": [{"id": str(i), "owner": "12345@N00", "title": query["text"],
                           "license": "4", "ownername": "Fran Flickr", "url_l": self.url(p)}
                          for i, p in enumerate(paths)]}}
        if path == "/serpapi/search.json":
            if query.get("api_key") != KEY:
                return 401, {"error": "Invalid API key."}
            paths = self.results(query["q"], int(query.get("ijn", 0)) + 1, 100)
            return 200, {"images_results": [{"position": i + 1, "original": self.url(p),
                                             "link": self.url(f"/article/{i}"),
                                             "title": query["q"], "source": "example.org"}
                                            for i, p in enumerate(paths)]}
        return None


def _handler(web: FakeWeb):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):  # noqa: N802 - the name http.server calls
            parsed = urlparse(self.path)
            web.requests[parsed.path] += 1
            query = {key: values[0] for key, values in parse_qs(parsed.query).items()}
            answered = web.api(parsed.path, query, self.headers)
            if answered is not None:
                status, payload = answered
                body = json.dumps(payload).encode()
                headers = {"Content-Type": "application/json"}
                if status == 429:
                    headers["Retry-After"] = "0"
            else:
                status, headers, body = web.image(parsed.path)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

    return Handler


@contextmanager
def fake_web():
    """Serve a FakeWeb on a free 127.0.0.1 port; yields it with .base set."""
    web = FakeWeb()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(web))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    web.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield web
    finally:
        web.released.set()
        server.shutdown()
        server.server_close()
