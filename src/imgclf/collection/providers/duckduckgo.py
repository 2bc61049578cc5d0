"""DuckDuckGo image search through the ``ddgs`` package: no key, but unofficial.

DuckDuckGo rate-limits and changes its pages without notice; failures make the collector
move on to the next provider. It reports no licences: the manifest leaves them empty.
"""

from __future__ import annotations

from imgclf.collection.http import ProviderUnavailable
from imgclf.collection.providers.base import Found, Provider


class DuckDuckGo(Provider):
    name = "duckduckgo"
    page_size = 100  # ddgs pages DuckDuckGo's results 100 at a time
    max_pages = 3

    def page(self, query: str, number: int) -> list[Found]:
        try:
            from ddgs import DDGS
            from ddgs.exceptions import DDGSException
        except ImportError:
            raise ProviderUnavailable(
                "duckduckgo needs the ddgs package: pip install 'imgclf[collect]'") from None
        try:
            rows = DDGS(timeout=int(self.http.timeout) or 10).images(
                query, max_results=self.page_size, page=number, backend="duckduckgo",
                safesearch="moderate")
        except DDGSException as error:
            if number > 1 and "No results" in str(error):
                return []
            raise ProviderUnavailable(f"duckduckgo: {error}") from None
        return [Found(image_url=row.get("image") or "", page_url=row.get("url") or "",
                      title=row.get("title") or "", provider=self.name, query=query)
                for row in rows]
