"""Pixabay (https://pixabay.com/api/docs/): free images; key in PIXABAY_API_KEY."""

from __future__ import annotations

from imgclf.collection.providers.base import Found, Provider


class Pixabay(Provider):
    name = "pixabay"
    default_base_url = "https://pixabay.com"
    key_variable = "PIXABAY_API_KEY"
    key_help = "https://pixabay.com/api/docs/"
    page_size = 200

    def page(self, query: str, number: int) -> list[Found]:
        answer = self.get_json("/api/", {"key": self.require_key(), "q": query,
                                         "image_type": "photo", "page": number,
                                         "per_page": self.page_size})
        return [Found(image_url=row.get("largeImageURL") or row.get("webformatURL") or "",
                      page_url=row.get("pageURL") or "", title=row.get("tags") or "",
                      licence="Pixabay Content License",
                      licence_url="https://pixabay.com/service/license-summary/",
                      author=row.get("user") or "", provider=self.name, query=query)
                for row in answer.get("hits", [])]
