"""Unsplash (https://unsplash.com/developers): free photos; key in UNSPLASH_ACCESS_KEY."""

from __future__ import annotations

from imgclf.collection.providers.base import Found, Provider


class Unsplash(Provider):
    name = "unsplash"
    default_base_url = "https://api.unsplash.com"
    key_variable = "UNSPLASH_ACCESS_KEY"
    key_help = "https://unsplash.com/developers"
    page_size = 30

    def page(self, query: str, number: int) -> list[Found]:
        answer = self.get_json("/search/photos",
                               {"query": query, "page": number, "per_page": self.page_size},
                               headers={"Authorization": f"Client-ID {self.require_key()}"})
        results = []
        for row in answer.get("results", []):
            user = row.get("user") or {}
            results.append(Found(
                image_url=(row.get("urls") or {}).get("regular") or "",
                page_url=(row.get("links") or {}).get("html") or "",
                title=row.get("alt_description") or row.get("description") or "",
                licence="Unsplash License", licence_url="https://unsplash.com/license",
                author=user.get("name") or "", provider=self.name, query=query))
        return results
