"""Near-duplicate detection by perceptual hash (imagehash's pHash), within and across classes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imgclf.errors import CollectError


def perceptual_hash(picture) -> Any:
    """pHash of an RGB picture (64 bits; subtracting two gives their Hamming distance)."""
    try:
        import imagehash
    except ImportError:
        raise CollectError("Removing duplicates needs imagehash: "
                           "pip install 'imgclf[collect]'") from None
    return imagehash.phash(picture)


@dataclass
class HashIndex:
    """Hashes of the pictures kept so far, and which file each belongs to."""

    max_distance: int
    entries: list[tuple[Any, str]] = field(default_factory=list)

    def add(self, hash_value, name: str) -> None:
        self.entries.append((hash_value, name))

    def match(self, hash_value) -> str | None:
        """The kept file this picture nearly duplicates, or None."""
        for known, name in self.entries:
            if known - hash_value <= self.max_distance:
                return name
        return None
