"""collect(): search each class's queries, download, check, de-duplicate, save, record."""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

from imgclf._files import FolderLock, atomic_open
from imgclf._progress import console, console as default_console
from imgclf.collection.dedupe import HashIndex, perceptual_hash
from imgclf.collection.http import Http, Skip
from imgclf.collection.manifest import MANIFEST, SKIPPED, Kept, RowWriter, Skipped, read_rows
from imgclf.collection.providers import (PROVIDERS, CollectError, Found, Provider,
                                         ProviderUnavailable,
                                         provider_names as resolve_provider_names)
from imgclf.config import CollectConfig
from imgclf.data.decoding import load_image, not_an_image_reason, sniff_format
from imgclf.data.sources import find_images
from imgclf.errors import ImageError

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
              "WebP": ".webp"}


@dataclass
class ClassResult:
    """What collection did for one class."""

    label: str
    queries: list[str]
    wanted: int
    existing: int  # pictures already in the folder before this run
    kept: list[Kept] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    # providers that failed or ran dry for this class, with the reason
    provider_problems: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.existing + len(self.kept)

    def reasons(self) -> Counter:
        """Skips counted by kind ("HTTP 404", "not an image", ...), details left out."""
        return Counter(re.split(r" \(|:", skip.reason, maxsplit=1)[0] for skip in self.skipped)


@dataclass
class CollectReport:
    folder: Path
    classes: list[ClassResult]

    @property
    def kept(self) -> int:
        return sum(len(result.kept) for result in self.classes)

    def short_classes(self) -> list[ClassResult]:
        return [result for result in self.classes if result.total < result.wanted]

    def print(self, console=None) -> None:
        from rich.table import Table

        console = console or default_console()
        table = Table(title=f"Collected into {self.folder}")
        for column in ("class", "wanted", "already there", "kept now", "skipped", "why skipped"):
            table.add_column(column, justify="left" if column in ("class", "why skipped")
                             else "right", overflow="fold")
        for result in self.classes:
            why = ", ".join(f"{reason} {count}" for reason, count in result.reasons().most_common())
            style = "yellow" if result.total < result.wanted else None
            table.add_row(result.label, str(result.wanted), str(result.existing),
                          str(len(result.kept)), str(len(result.skipped)), why, style=style)
        console.print(table)
        for result in self.classes:
            for problem in result.provider_problems:
                console.print(f"[yellow]{result.label}: {problem}")
            if result.total < result.wanted:
                console.print(f"[yellow]{result.label}: {result.total} of {result.wanted} "
                              "pictures; add queries, or another provider with --provider.")
        console.print(f"Provenance of every picture: {self.folder / MANIFEST}; "
                      f"what was skipped and why: {self.folder / SKIPPED}")


def parse_classes(arguments: Sequence[str]) -> dict[str, list[str]]:
    """ "wild_cat=lion,tiger" -> {"wild_cat": ["lion", "tiger"]}; "lions" -> {"lions": ["lions"]}.

    Example:
        >>> parse_classes(["house_cat=house cat,tabby cat", "lion"])
        {'house_cat': ['house cat', 'tabby cat'], 'lion': ['lion']}
    """
    classes: dict[str, list[str]] = {}
    for argument in arguments:
        label, _, queries = argument.partition("=")
        label = label.strip()
        terms = [q.strip() for q in (queries if _ else label).split(",") if q.strip()]
        if not label or not terms:
            raise CollectError(f"{argument!r}: write a class as NAME=QUERY[,QUERY...], "
                               'e.g. "wild_cat=lion,tiger,leopard".')
        classes.setdefault(check_label(label), []).extend(terms)
    if not classes:
        raise CollectError("Give at least one class, e.g. \"wild_cat=lion,tiger\".")
    return classes


def check_label(label: str) -> str:
    if label in (".", "..") or label.startswith(".") or re.search(r"[/\\:*?\"<>|]", label):
        raise CollectError(f"{label!r} cannot be a folder name: use letters, digits, spaces, "
                           "'_' or '-' for class names.")
    return label


def collect(folder: str | os.PathLike, classes: Mapping[str, Sequence[str]] | Sequence[str], *,
            per_class: int | None = None, providers: Sequence[str | Provider] | str | None = None,
            config: CollectConfig | None = None, show_progress: bool = True,
            http: Http | None = None) -> CollectReport:
    """Build class folders of pictures from web image search, with a provenance manifest.

    Each class's queries are searched in turn (one result of each, then the next), the
    results downloaded, checked (size, content type, magic bytes, decoding), shrunk to
    config.max_side, de-duplicated by perceptual hash against every class, and saved as
    ``folder/<class>/<sha256 prefix>.<ext>``. Running it again resumes: pictures already
    there count, and addresses already kept or rejected are not fetched again.

    Args:
        classes: {"wild_cat": ["lion", "tiger"], ...}, or plain names (each its own query).
        providers: names ("openverse") or Provider objects, tried in order until a class
            has enough pictures; default: duckduckgo, openverse, wikimedia, then keyed
            providers whose key is set.

    Example:
        >>> collect("data/cats", {"house_cat": ["house cat", "tabby cat"],
        ...                       "wild_cat": ["lion", "tiger", "leopard"]}, per_class=150)
    """
    config = config or CollectConfig()
    if per_class is not None:
        from dataclasses import replace

        config = replace(config, per_class=per_class)
    if not isinstance(classes, Mapping):
        classes = parse_classes(list(classes))
    classes = {check_label(label): list(queries) for label, queries in classes.items()}
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    own_http = http is None
    http = http or Http(timeout=config.timeout, retries=config.retries,
                        connections=config.workers * 2)
    try:
        chain = _providers(providers, http)
        with FolderLock(root, "imgclf collection"):  # one collection at a time per folder
            collector = _Collector(root, config, http, show_progress)
            return CollectReport(root, [collector.run(label, queries, chain)
                                        for label, queries in classes.items()])
    finally:
        if own_http:
            http.close()


def _providers(providers, http: Http) -> list[Provider]:
    if providers is None or isinstance(providers, str):
        names = resolve_provider_names(providers)
        explicit = providers is not None
        chain = [PROVIDERS[name](http) for name in names]
        if explicit:
            for provider in chain:
                provider.require_key()  # a chosen provider without its key: say so now
        return chain
    chain = []
    for provider in providers:
        if isinstance(provider, str):
            chain.extend(_providers(provider, http))
        else:
            chain.append(provider)
    return chain


@dataclass(frozen=True)
class _Candidate:
    found: Found
    content: bytes
    extension: str
    width: int
    height: int
    hash_value: object
    sha256: str


class _Collector:
    def __init__(self, root: Path, config: CollectConfig, http: Http, show_progress: bool):
        self.root, self.config, self.http, self.show_progress = root, config, http, show_progress
        self.index = HashIndex(config.duplicate_distance)
        manifest = read_rows(root / MANIFEST, Kept)
        self.kept_urls = {row.image_url for row in manifest}
        self.rejected = {row.url for row in read_rows(root / SKIPPED, Skipped)
                         if not row.transient}
        # every picture already under the folder, whichever class: a new one that nearly
        # duplicates any of them is skipped
        for path in find_images(root):
            try:
                # pHash looks at 32x32 pixels: a reduced decode is enough, and much faster
                # for the multi-megapixel photos a user may have put in a class folder
                self.index.add(perceptual_hash(load_image(path, max_side=512)),
                               path.relative_to(root).as_posix())
            except (ImageError, OSError):
                continue

    def run(self, label: str, queries: list[str], chain: list[Provider]) -> ClassResult:
        folder = self.root / label
        folder.mkdir(exist_ok=True)
        existing = len(find_images(folder))
        result = ClassResult(label, queries, self.config.per_class, existing)
        need = self.config.per_class - existing
        if need <= 0:
            return result
        manifest = RowWriter(self.root / MANIFEST, Kept)
        skipped = RowWriter(self.root / SKIPPED, Skipped)
        try:
            with self._bar(label, need) as advance:
                for provider in chain:
                    if len(result.kept) >= need:
                        break
                    try:
                        self._from_provider(provider, label, queries, need, result,
                                            manifest, skipped, advance)
                    except ProviderUnavailable as error:
                        result.provider_problems.append(f"{error} (moved on)")
        finally:
            manifest.close()
            skipped.close()
        return result

    def _candidates(self, provider: Provider, queries: list[str]) -> Iterator[Found]:
        """The queries' results interleaved (one of each in turn), each address once."""
        seen: set[str] = set()
        for round_ in zip_longest(*(provider.search(query) for query in queries)):
            for found in round_:
                if found is None or found.image_url in seen or found.image_url in self.kept_urls \
                        or found.image_url in self.rejected:
                    continue
                seen.add(found.image_url)
                yield found

    def _from_provider(self, provider, label, queries, need, result, manifest, skipped,
                       advance) -> None:
        candidates = self._candidates(provider, queries)
        problem: ProviderUnavailable | None = None
        pending: dict[Future, Found] = {}
        with ThreadPoolExecutor(self.config.workers, thread_name_prefix="imgclf-collect") as pool:
            exhausted = False
            while True:
                # keep the workers busy, but never fetch more than could still be kept
                while not exhausted and len(pending) < self.config.workers * 2 and \
                        len(result.kept) + len(pending) < need:
                    try:
                        found = next(candidates)
                    except StopIteration:
                        exhausted = True
                    except ProviderUnavailable as error:
                        problem, exhausted = error, True
                    else:
                        pending[pool.submit(self._fetch, found)] = found
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    found = pending.pop(future)
                    try:
                        candidate = future.result()
                    except Skip as skip:
                        self._skip(found, label, skip.reason, skip.transient, result, skipped)
                        continue
                    if len(result.kept) >= need:
                        continue  # enough already: a late finisher is not kept
                    twin = self.index.match(candidate.hash_value)
                    if twin is not None:
                        self._skip(found, label, f"near-duplicate of {twin}", False, result,
                                   skipped)
                        continue
                    row = self._save(candidate, label)
                    manifest.write(row)
                    result.kept.append(row)
                    self.kept_urls.add(found.image_url)
                    advance()
                if len(result.kept) >= need:
                    for future in pending:
                        future.cancel()
                    pending.clear()
                    break
        if problem is not None:
            raise problem
        if len(result.kept) < need:
            result.provider_problems.append(f"{provider.name}: no more results")

    def _skip(self, found, label, reason, transient, result, skipped) -> None:
        row = Skipped(found.image_url, label, found.query, found.provider or "", reason, transient)
        result.skipped.append(row)
        skipped.write(row)
        if not transient:
            self.rejected.add(found.image_url)

    def _fetch(self, found: Found) -> _Candidate:
        """Download and check one result (in a worker thread); Skip says why it is not kept."""
        config = self.config
        fetched = self.http.download(found.image_url,
                                     max_bytes=int(config.max_megabytes * 1e6))
        content = fetched.content
        if not content:
            raise Skip("empty download")
        kind = sniff_format(content[:16])
        if kind is None:
            raise Skip(not_an_image_reason(content))
        try:
            picture = load_image(content)
        except ImageError as error:
            raise Skip(error.reason) from None
        width, height = picture.size
        if min(width, height) < config.min_side:
            raise Skip(f"too small ({width}x{height} pixels)")
        extension = EXTENSIONS[kind]
        if config.max_side and max(width, height) > config.max_side:
            picture.thumbnail((config.max_side, config.max_side))
            buffer = io.BytesIO()
            picture.save(buffer, "JPEG", quality=90)
            content, extension, (width, height) = buffer.getvalue(), ".jpg", picture.size
        return _Candidate(found, content, extension, width, height, perceptual_hash(picture),
                          hashlib.sha256(content).hexdigest())

    def _save(self, candidate: _Candidate, label: str) -> Kept:
        name = f"{label}/{candidate.sha256[:16]}{candidate.extension}"
        target = self.root / name
        with atomic_open(target, "wb") as handle:  # never a half-written picture
            handle.write(candidate.content)
        self.index.add(candidate.hash_value, name)
        found = candidate.found
        return Kept(name, label, found.query, found.provider, found.image_url, found.page_url,
                    found.licence, found.licence_url, found.author, found.title,
                    candidate.width, candidate.height, candidate.sha256)

    @contextmanager
    def _bar(self, label: str, total: int) -> Iterator[Callable[[], None]]:
        """A progress bar for one class; yields the function that moves it one step."""
        if not self.show_progress:
            yield lambda: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        # the label goes in as data, not as a format string: class names may hold braces
        with Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                      MofNCompleteColumn(), console=console()) as progress:
            task = progress.add_task(label, total=total)
            yield lambda: progress.advance(task)
