"""What every search provider has in common: one page of results for one query."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from imgclf.collection.http import Http
from imgclf.errors import CollectError


@dataclass(frozen=True)
class Found:
    """One search result: where the image is, where it was shown, and who may use it how."""

    image_url: str
    page_url: str = ""
    title: str = ""
    licence: str = ""
    licence_url: str = ""
    author: str = ""
    provider: str = ""
    query: str = ""


class Provider:
    """A web image search. Subclasses set the class attributes and implement ``page``.

    base_url is a setting (argument, or the environment variable ``IMGCLF_<NAME>_URL``) so
    tests can point a provider at a local server.
    """

    name: ClassVar[str]
    # the public API's root; the path of each request is added by the provider
    default_base_url: ClassVar[str] = ""
    # environment variable holding the API key, None for providers that need none
    key_variable: ClassVar[str | None] = None
    # where a user gets a key
    key_help: ClassVar[str] = ""
    # results per request (the most the API allows without a paid plan)
    page_size: ClassVar[int] = 50
    # pages to read per query before giving up on it
    max_pages: ClassVar[int] = 10

    def __init__(self, http: Http, *, base_url: str | None = None, key: str | None = None):
        self.http = http
        self.base_url = (base_url or os.environ.get(f"IMGCLF_{self.name.upper()}_URL")
                         or self.default_base_url).rstrip("/")
        self.key = key or (os.environ.get(self.key_variable) if self.key_variable else None)

    @classmethod
    def has_key(cls) -> bool:
        return cls.key_variable is None or bool(os.environ.get(cls.key_variable))

    def require_key(self) -> str:
        if self.key_variable and not self.key:
            raise CollectError(
                f"{self.name} needs an API key: set the environment variable "
                f"{self.key_variable}" + (f" (get one at {self.key_help})" if self.key_help else "")
                + ", or choose a provider that needs none: duckduckgo, openverse, wikimedia.")
        return self.key or ""

    def page(self, query: str, number: int) -> list[Found]:
        """Results of page `number` (1-based) for a query; an empty list means no more."""
        raise NotImplementedError

    def search(self, query: str) -> Iterator[Found]:
        """Every result for a query, page by page, read lazily as the caller needs more."""
        self.require_key()
        for number in range(1, self.max_pages + 1):
            results = self.page(query, number)
            if not results:
                return
            for found in results:
                if found.image_url:
                    yield found
            if len(results) < self.page_size:
                return

    def get_json(self, path: str, params: dict[str, Any], headers: dict[str, str] | None = None
                 ) -> Any:
        return self.http.get_json(f"{self.base_url}{path}", params=params, headers=headers,
                                  provider=self.name)
