"""Wikimedia Commons (https://commons.wikimedia.org): free media, no key needed."""

from __future__ import annotations

import html
import re

from imgclf.collection.providers.base import Found, Provider

_TAGS = re.compile(r"<[^>]+>")


class Wikimedia(Provider):
    name = "wikimedia"
    default_base_url = "https://commons.wikimedia.org"
    page_size = 50
    # downscaled copies Wikimedia renders, instead of originals of tens of megapixels
    thumbnail_width = 1280

    def page(self, query: str, number: int) -> list[Found]:
        answer = self.get_json("/w/api.php", {
            "action": "query", "format": "json", "generator": "search",
            "gsrsearch": f"{query} filetype:bitmap", "gsrnamespace": 6,
            "gsrlimit": self.page_size, "gsroffset": (number - 1) * self.page_size,
            "prop": "imageinfo", "iiprop": "url|extmetadata|mime",
            "iiurlwidth": self.thumbnail_width,
        })
        pages = sorted((answer.get("query") or {}).get("pages", {}).values(),
                       key=lambda page: page.get("index", 0))
        results = []
        for page in pages:
            info = (page.get("imageinfo") or [{}])[0]
            meta = info.get("extmetadata") or {}

            def field(name: str) -> str:
                return html.unescape(_TAGS.sub("", str((meta.get(name) or {}).get("value", ""))))

            results.append(Found(
                image_url=info.get("thumburl") or info.get("url") or "",
                page_url=info.get("descriptionurl") or "",
                title=str(page.get("title", "")).removeprefix("File:"),
                licence=field("LicenseShortName"), licence_url=field("LicenseUrl"),
                author=field("Artist").strip(), provider=self.name, query=query))
        return results
