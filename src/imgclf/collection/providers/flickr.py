"""Flickr (https://www.flickr.com/services/api/): openly licensed photos only; key in
FLICKR_API_KEY."""

from __future__ import annotations

from imgclf.collection.http import ProviderUnavailable
from imgclf.collection.providers.base import Found, Provider

# flickr.photos.licenses.getInfo; only these (open licences and public domain) are asked for
LICENCES = {
    "1": ("CC BY-NC-SA 2.0", "https://creativecommons.org/licenses/by-nc-sa/2.0/"),
    "2": ("CC BY-NC 2.0", "https://creativecommons.org/licenses/by-nc/2.0/"),
    "3": ("CC BY-NC-ND 2.0", "https://creativecommons.org/licenses/by-nc-nd/2.0/"),
    "4": ("CC BY 2.0", "https://creativecommons.org/licenses/by/2.0/"),
    "5": ("CC BY-SA 2.0", "https://creativecommons.org/licenses/by-sa/2.0/"),
    "6": ("CC BY-ND 2.0", "https://creativecommons.org/licenses/by-nd/2.0/"),
    "7": ("No known copyright restrictions", "https://www.flickr.com/commons/usage/"),
    "8": ("United States Government Work", "http://www.usa.gov/copyright.shtml"),
    "9": ("CC0 1.0", "https://creativecommons.org/publicdomain/zero/1.0/"),
    "10": ("Public Domain Mark 1.0", "https://creativecommons.org/publicdomain/mark/1.0/"),
}


class Flickr(Provider):
    name = "flickr"
    default_base_url = "https://www.flickr.com"
    key_variable = "FLICKR_API_KEY"
    key_help = "https://www.flickr.com/services/apps/create/"
    page_size = 100

    def page(self, query: str, number: int) -> list[Found]:
        answer = self.get_json("/services/rest/", {
            "method": "flickr.photos.search", "api_key": self.require_key(), "text": query,
            "license": ",".join(LICENCES), "content_type": 1, "media": "photos",
            "sort": "relevance", "extras": "url_l,url_c,url_o,license,owner_name",
            "per_page": self.page_size, "page": number, "format": "json", "nojsoncallback": 1,
        })
        if answer.get("stat") == "fail":
            raise ProviderUnavailable(f"flickr: {answer.get('message', 'request failed')}")
        results = []
        for row in (answer.get("photos") or {}).get("photo", []):
            licence, licence_url = LICENCES.get(str(row.get("license")), ("", ""))
            results.append(Found(
                image_url=row.get("url_l") or row.get("url_c") or row.get("url_o") or "",
                page_url=f"https://www.flickr.com/photos/{row.get('owner')}/{row.get('id')}",
                title=row.get("title") or "", licence=licence, licence_url=licence_url,
                author=row.get("ownername") or "", provider=self.name, query=query))
        return results
