"""Openverse (https://api.openverse.org): openly licensed images, no key needed."""

from __future__ import annotations

from imgclf.collection.providers.base import Found, Provider


class Openverse(Provider):
    name = "openverse"
    default_base_url = "https://api.openverse.org"
    page_size = 20  # anonymous requests get at most 20 per page

    def page(self, query: str, number: int) -> list[Found]:
        answer = self.get_json("/v1/images/", {"q": query, "page": number,
                                               "page_size": self.page_size})
        return [Found(image_url=row.get("url") or "", page_url=row.get("foreign_landing_url") or "",
                      title=row.get("title") or "",
                      licence=licence_name(row.get("license"), row.get("license_version")),
                      licence_url=row.get("license_url") or "", author=row.get("creator") or "",
                      provider=self.name, query=query)
                for row in answer.get("results", [])]


def licence_name(code: str | None, version: str | None) -> str:
    """Openverse's licence codes as people write them: ("by-sa", "4.0") -> "CC BY-SA 4.0"."""
    if not code:
        return ""
    name = {"pdm": "Public Domain Mark", "cc0": "CC0"}.get(code, f"CC {code.upper()}")
    return f"{name} {version}" if version else name
