"""HTTP for collection: one httpx client, retries with backoff, 429/Retry-After, size limits."""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any

from imgclf._version import __version__
from imgclf.errors import CollectError

# Wikimedia and others ask API clients to say who they are.
USER_AGENT = f"imgclf/{__version__} (image classifier dataset collection; +https://pypi.org/project/imgclf/)"
# HTTP answers worth asking again: rate limited, or a server / gateway hiccup.
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class ProviderUnavailable(CollectError):
    """A provider cannot answer now (rate limited, down, blocked): the next one is tried."""


class Skip(Exception):
    """A download that is not kept, and why; transient ones are tried again on the next run."""

    def __init__(self, reason: str, *, transient: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True)
class Fetched:
    content: bytes
    content_type: str
    url: str  # after redirects


def _httpx():
    try:
        import httpx
    except ImportError:
        raise CollectError("Collecting images needs httpx: pip install 'imgclf[collect]'") from None
    return httpx


class Http:
    """A shared client: bounded connections, timeouts, retries with exponential backoff.

    Args:
        timeout: seconds to connect, and between two pieces of an answer.
        retries: further attempts after a timeout, a dropped connection, 429 or 5xx.
        backoff: first wait between attempts in seconds; it doubles each time (with jitter).
        max_wait: the longest Retry-After a 429 answer may ask for; longer gives up for now.
        connections: the most connections open at once.
    """

    def __init__(self, *, timeout: float = 15.0, retries: int = 3, backoff: float = 0.5,
                 max_wait: float = 30.0, connections: int = 16):
        httpx = _httpx()
        self.timeout, self.retries, self.backoff, self.max_wait = timeout, retries, backoff, max_wait
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout), follow_redirects=True, max_redirects=5,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=connections))

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Http:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- the one retry loop -------------------------------------------------------------

    def _attempts(self, send):
        """Call send() until it returns an answer not worth retrying; return that answer.

        send returns (status, headers, value). Raises Skip(transient) when attempts run out.
        """
        httpx = _httpx()
        reason = "failed"
        for attempt in range(self.retries + 1):
            try:
                status, headers, value = send()
            except httpx.TimeoutException:
                reason = "timed out"
            except httpx.TooManyRedirects:
                raise Skip("too many redirects") from None
            except httpx.UnsupportedProtocol:
                raise Skip("not an http(s) address") from None
            except (httpx.TransportError, httpx.DecodingError) as error:
                reason = f"connection failed ({type(error).__name__})"
            else:
                if status not in RETRY_STATUS:
                    return status, headers, value
                reason = f"HTTP {status}" + (" (rate limited)" if status == 429 else "")
                wait = _retry_after(headers.get("retry-after")) if status == 429 else None
                if wait is not None and wait > self.max_wait:
                    raise Skip(f"{reason}, asked to wait {wait:.0f} s", transient=True)
                if wait is not None and attempt < self.retries:
                    time.sleep(wait)
                    continue
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** attempt * (0.75 + random.random() / 2))
        raise Skip(reason, transient=True)

    # --- what callers use ---------------------------------------------------------------

    def get_json(self, url: str, *, params: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None, provider: str = "") -> Any:
        """A provider's API answer as JSON; refusals and outages raise clear errors."""

        def send():
            response = self.client.get(url, params=params, headers=headers)
            return response.status_code, response.headers, response

        try:
            status, _, response = self._attempts(send)
        except Skip as skip:
            raise ProviderUnavailable(f"{provider}: {skip.reason}") from None
        if status in (401, 403):
            raise CollectError(f"{provider} refused the request (HTTP {status}): check its "
                               "API key, or choose another provider with --provider.")
        if status >= 400:
            raise ProviderUnavailable(f"{provider}: HTTP {status} from {url}")
        try:
            return response.json()
        except ValueError:
            raise ProviderUnavailable(f"{provider}: the answer from {url} is not JSON") from None

    def download(self, url: str, *, max_bytes: int) -> Fetched:
        """The bytes at url, at most max_bytes, read within a deadline; else Skip(reason)."""
        deadline = self.timeout * 4  # a server trickling bytes must not hold a worker forever

        def send():
            started = time.monotonic()
            with self.client.stream("GET", url) as response:
                if response.status_code != 200:
                    return response.status_code, response.headers, None
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise Skip(f"too large ({int(declared) / 1e6:.1f} MB > "
                               f"{max_bytes / 1e6:.0f} MB limit)")
                kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if kind.startswith(("text/", "application/json", "application/xml")):
                    raise Skip(f"not an image (content type {kind})")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise Skip(f"too large (over the {max_bytes / 1e6:.0f} MB limit)")
                    if time.monotonic() - started > deadline:
                        raise Skip(f"too slow (not finished after {deadline:.0f} s)",
                                   transient=True)
                    chunks.append(chunk)
                return 200, response.headers, Fetched(b"".join(chunks), kind, str(response.url))

        status, _, fetched = self._attempts(send)
        if status != 200:
            raise Skip(f"HTTP {status}")
        return fetched


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: a number or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
