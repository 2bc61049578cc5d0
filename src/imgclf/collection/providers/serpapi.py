"""SerpApi (https://serpapi.com/images-results): Google Images results; key in SERPAPI_API_KEY.

Google does not report licences: the manifest leaves them empty, so check before publishing.
"""

from __future__ import annotations

from imgclf.collection.providers.base import Found, Provider


class SerpApi(Provider):
    name = "serpapi"
    default_base_url = "https://serpapi.com"
    key_variable = "SERPAPI_API_KEY"
    key_help = "https://serpapi.com/manage-api-key"
    page_size = 100

    def page(self, query: str, number: int) -> list[Found]:
        answer = self.get_json("/search.json", {"engine": "google_images", "q": query,
                                                "ijn": number - 1, "api_key": self.require_key()})
        return [Found(image_url=row.get("original") or "", page_url=row.get("link") or "",
                      title=row.get("title") or "", author=row.get("source") or "",
                      provider=self.name, query=query)
                for row in answer.get("images_results", [])]
