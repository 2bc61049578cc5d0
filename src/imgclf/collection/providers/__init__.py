"""Web image search providers, one module each, all behind ``Provider``."""

from __future__ import annotations

from imgclf.collection.http import ProviderUnavailable
from imgclf.collection.providers.base import CollectError, Found, Provider
from imgclf.collection.providers.duckduckgo import DuckDuckGo
from imgclf.collection.providers.flickr import Flickr
from imgclf.collection.providers.openverse import Openverse
from imgclf.collection.providers.pexels import Pexels
from imgclf.collection.providers.pixabay import Pixabay
from imgclf.collection.providers.serpapi import SerpApi
from imgclf.collection.providers.unsplash import Unsplash
from imgclf.collection.providers.wikimedia import Wikimedia

PROVIDERS: dict[str, type[Provider]] = {
    provider.name: provider
    for provider in (DuckDuckGo, Openverse, Wikimedia, Pexels, Unsplash, Pixabay, Flickr, SerpApi)
}

# Without --provider: the keyless ones, most results first; keyed ones join when their key is set.
DEFAULT_CHAIN = ("duckduckgo", "openverse", "wikimedia")


def default_chain() -> list[str]:
    keyed = [name for name, provider in PROVIDERS.items()
             if provider.key_variable and provider.has_key()]
    return list(DEFAULT_CHAIN) + keyed


def provider_names(argument: str | None) -> list[str]:
    """'openverse,wikimedia' -> that chain; None -> the default chain. Unknown names fail."""
    if not argument:
        return default_chain()
    names = [name.strip().lower() for name in argument.split(",") if name.strip()]
    unknown = [name for name in names if name not in PROVIDERS]
    if unknown:
        raise CollectError(f"Unknown provider(s) {', '.join(unknown)}; choose from "
                           f"{', '.join(PROVIDERS)} (comma-separated for a fallback chain).")
    return names


__all__ = ["DEFAULT_CHAIN", "PROVIDERS", "CollectError", "Found", "Provider",
           "ProviderUnavailable", "default_chain", "provider_names"]
