"""Pexels (https://www.pexels.com/api/): free stock photos; key in PEXELS_API_KEY."""

from __future__ import annotations

from imgclf.collection.providers.base import Found, Provider


class Pexels(Provider):
    name = "pexels"
    default_base_url = "https://api.pexels.com"
    key_variable = "PEXELS_API_KEY"
    key_help = "https://www.pexels.com/api/"
    page_size = 80

    def page(self, query: str, number: int) -> list[Found]:
        answer = self.get_json("/v1/search",
                               {"query": query, "page": number, "per_page": self.page_size},
                               headers={"Authorization": self.require_key()})
        return [Found(image_url=(row.get("src") or {}).get("large")
                      or (row.get("src") or {}).get("original") or "",
                      page_url=row.get("url") or "", title=row.get("alt") or "",
                      licence="Pexels License", licence_url="https://www.pexels.com/license/",
                      author=row.get("photographer") or "", provider=self.name, query=query)
                for row in answer.get("photos", [])]
