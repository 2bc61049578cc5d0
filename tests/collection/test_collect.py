"""collect against a local stand-in for the search APIs and image hosts (never the network)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from tests.fake_web import BAD, KEY, fake_web

pytest.importorskip("httpx")
pytest.importorskip("imagehash")

from imgclf import CollectConfig, CollectError, collect
from imgclf.collection import PROVIDERS, parse_classes  # noqa: E402
from imgclf.collection.manifest import MANIFEST, SKIPPED  # noqa: E402

# The slow picture never comes (fake_web), so it times out whatever the timeout; the other
# answers are immediate, so 3 s is far more than a busy machine needs for them. The huge
# picture is refused by its Content-Length, never by a timeout.
CONFIG = CollectConfig(timeout=3, retries=1, max_megabytes=0.5, workers=4, max_side=800)


@pytest.fixture
def web(monkeypatch):
    with fake_web() as server:
        for name, provider in PROVIDERS.items():
            monkeypatch.setenv(f"IMGCLF_{name.upper()}_URL", f"{server.base}/{name}")
            if provider.key_variable:  # keyed providers join the default chain only when set
                monkeypatch.delenv(provider.key_variable, raising=False)
        yield server


def manifest(folder: Path) -> list[dict]:
    with open(folder / MANIFEST, newline="") as handle:
        return list(csv.DictReader(handle))


def skipped(folder: Path) -> list[dict]:
    with open(folder / SKIPPED, newline="") as handle:
        return list(csv.DictReader(handle))


def test_parse_classes_merges_queries_into_one_class():
    assert parse_classes(["wild_cat=lion, tiger,leopard", "house cat"]) == {
        "wild_cat": ["lion", "tiger", "leopard"], "house cat": ["house cat"]}
    with pytest.raises(CollectError, match="NAME=QUERY"):
        parse_classes(["cats="])
    with pytest.raises(CollectError, match="folder name"):
        parse_classes(["../up=lion"])


def test_collect_keeps_good_pictures_and_skips_every_bad_case(web, tmp_path):
    good = [f"/img/red/{n}.jpg" for n in range(4)]
    web.catalogue["red thing"] = [*BAD, good[0], "/redirect/red/10.jpg", good[1]]
    web.catalogue["crimson thing"] = [good[2], "/limited/red/11.jpg", "/dup/red/0.jpg",
                                      "/big/red/12.jpg", good[3]]
    out = tmp_path / "data"
    # more wanted than there is: every result gets tried, and the class is reported short
    report = collect(out, {"red": ["red thing", "crimson thing"]}, per_class=20,
                     providers="openverse", config=CONFIG, show_progress=False)

    files = sorted((out / "red").iterdir())
    rows = manifest(out)
    assert len(files) == len(rows) == 7  # 4 good + redirected + rate-limited + shrunk
    kept = {row["image_url"].removeprefix(web.base) for row in rows}
    # /img/red/0.jpg and its re-encoded twin /dup/red/0.jpg: whichever finished first is kept
    twins = {"/img/red/0.jpg", "/dup/red/0.jpg"}
    assert len(kept & twins) == 1
    assert kept - twins == {*good[1:], "/redirect/red/10.jpg", "/limited/red/11.jpg",
                            "/big/red/12.jpg"}
    for row in rows:
        path = out / row["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["sha256"]
        assert row["class"] == "red" and row["provider"] == "openverse"
        assert row["licence"] == "CC BY 4.0" and row["author"] == "Ada Lovelace"
        assert row["page_url"].startswith(web.base) and row["query"] in ("red thing",
                                                                          "crimson thing")
    big = next(row for row in rows if "/big/" in row["image_url"])
    assert max(int(big["width"]), int(big["height"])) == 800  # shrunk to max_side
    from PIL import Image

    assert max(Image.open(out / big["file"]).size) == 800

    reasons = {row["url"].removeprefix(web.base): row["reason"] for row in skipped(out)}
    for path, expected in BAD.items():
        assert expected in reasons[path], (path, reasons[path])
    [twin] = twins - kept
    assert reasons[twin].startswith("near-duplicate of red/")
    assert len(reasons) == len(BAD) + 1
    transient = {row["url"].removeprefix(web.base) for row in skipped(out)
                 if row["transient"] == "yes"}
    assert transient == {"/bad/slow.jpg"}
    [result] = report.classes
    assert result.total == 7 and report.short_classes() == [result]
    assert web.requests["/limited/red/11.jpg"] == 2  # waited for Retry-After, then got it


def test_collect_stops_at_per_class_and_a_rerun_resumes(web, tmp_path):
    web.catalogue["blue thing"] = ["/bad/missing.jpg"] + [f"/img/blue/{n}.jpg" for n in range(12)]
    out = tmp_path / "data"
    collect(out, {"blue": ["blue thing"]}, per_class=3, providers="openverse",
            config=CollectConfig(workers=1, timeout=2, retries=1), show_progress=False)
    assert len(list((out / "blue").iterdir())) == 3
    first = dict(web.requests)

    report = collect(out, {"blue": ["blue thing"]}, per_class=5, providers="openverse",
                     config=CollectConfig(workers=1, timeout=2, retries=1), show_progress=False)
    assert report.classes[0].existing == 3 and len(report.classes[0].kept) == 2
    assert len(manifest(out)) == 5 and len(list((out / "blue").iterdir())) == 5
    # nothing kept or rejected before is fetched again
    for path, count in first.items():
        if path.startswith(("/img/", "/bad/")):
            assert web.requests[path] == count, path


def test_near_duplicates_across_classes_are_kept_once(web, tmp_path):
    web.catalogue["red thing"] = ["/img/red/0.jpg", "/img/red/1.jpg"]
    web.catalogue["maroon thing"] = ["/dup/red/1.jpg", "/img/blue/5.jpg"]
    out = tmp_path / "data"
    report = collect(out, {"red": ["red thing"], "maroon": ["maroon thing"]}, per_class=2,
                     providers="openverse", config=CONFIG, show_progress=False)
    assert [len(result.kept) for result in report.classes] == [2, 1]
    [skip] = report.classes[1].skipped
    assert skip.reason.startswith("near-duplicate of red/")


LICENCES = {"openverse": "CC BY 4.0", "wikimedia": "CC BY-SA 4.0", "pexels": "Pexels License",
            "unsplash": "Unsplash License", "pixabay": "Pixabay Content License",
            "flickr": "CC BY 2.0", "serpapi": ""}
AUTHORS = {"openverse": "Ada Lovelace", "wikimedia": "Grace Hopper", "pexels": "Pat Pexels",
           "unsplash": "Uma Unsplash", "pixabay": "Pix User", "flickr": "Fran Flickr",
           "serpapi": "example.org"}


@pytest.mark.parametrize("provider", sorted(LICENCES))
def test_each_provider_reads_its_api(provider, web, tmp_path, monkeypatch):
    variable = PROVIDERS[provider].key_variable
    if variable:
        monkeypatch.setenv(variable, KEY)
    web.catalogue["red thing"] = [f"/img/red/{n}.jpg" for n in range(3)]
    out = tmp_path / "data"
    report = collect(out, ["red=red thing"], per_class=3, providers=provider, config=CONFIG,
                     show_progress=False)
    assert len(report.classes[0].kept) == 3
    rows = manifest(out)
    assert {row["provider"] for row in rows} == {provider}
    assert {row["licence"] for row in rows} == {LICENCES[provider]}
    assert {row["author"] for row in rows} == {AUTHORS[provider]}
    assert all(row["page_url"] for row in rows)


@pytest.mark.parametrize("provider", ["pexels", "unsplash", "pixabay", "flickr", "serpapi"])
def test_a_missing_key_names_the_variable(provider, monkeypatch, tmp_path):
    variable = PROVIDERS[provider].key_variable
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(CollectError, match=variable):
        collect(tmp_path / "data", ["red=red thing"], providers=provider, show_progress=False)


def test_a_wrong_key_says_so(web, monkeypatch, tmp_path):
    monkeypatch.setenv("PEXELS_API_KEY", "wrong")
    web.catalogue["red thing"] = ["/img/red/0.jpg"]
    with pytest.raises(CollectError, match="API key"):
        collect(tmp_path / "data", ["red=red thing"], providers="pexels", config=CONFIG,
                show_progress=False)


class RateLimitedDDGS:
    """Stands in for ddgs.DDGS: DuckDuckGo refusing us, as it does when rate-limiting."""

    def __init__(self, **options):
        pass

    def images(self, query, **options):
        from ddgs.exceptions import RatelimitException

        raise RatelimitException("https://duckduckgo.com/i.js 403 Ratelimit")


def test_the_default_chain_falls_back_when_duckduckgo_refuses(web, monkeypatch, tmp_path):
    ddgs = pytest.importorskip("ddgs")
    monkeypatch.setattr(ddgs, "DDGS", RateLimitedDDGS)
    web.catalogue["red thing"] = [f"/img/red/{n}.jpg" for n in range(2)]
    web.catalogue["blue thing"] = [f"/img/blue/{n}.jpg" for n in range(2)]
    out = tmp_path / "data"
    report = collect(out, ["red=red thing", "blue=blue thing"], per_class=3, config=CONFIG,
                     show_progress=False)
    # duckduckgo refused, openverse gave 2 of 3, wikimedia (same catalogue here) adds nothing new
    # but near-duplicates; each class is short by one and says why
    for result in report.classes:
        assert len(result.kept) == 2
        assert any("duckduckgo" in problem and "Ratelimit" in problem
                   for problem in result.provider_problems)
    assert {row["provider"] for row in manifest(out)} == {"openverse"}


def test_duckduckgo_results_are_read(web, monkeypatch, tmp_path):
    ddgs = pytest.importorskip("ddgs")

    class FakeDDGS:
        def __init__(self, **options):
            pass

        def images(self, query, *, page=1, **options):  # ddgs's documented result keys
            if page > 1:
                return []
            return [{"title": f"{query} {n}", "image": web.url(f"/img/red/{n}.jpg"),
                     "thumbnail": web.url(f"/img/red/{n}.jpg"), "url": web.url(f"/page/{n}"),
                     "height": 90, "width": 120, "source": "Bing"} for n in range(3)]

    monkeypatch.setattr(ddgs, "DDGS", FakeDDGS)
    out = tmp_path / "data"
    collect(out, ["red=red thing"], per_class=3, providers="duckduckgo", config=CONFIG,
            show_progress=False)
    rows = manifest(out)
    assert len(rows) == 3 and {row["provider"] for row in rows} == {"duckduckgo"}


def test_cli_collect_then_train(web, tmp_path, monkeypatch, capsys):
    from imgclf.cli import main

    web.catalogue["red thing"] = ["/bad/page.jpg"] + [f"/img/red/{n}.jpg" for n in range(8)]
    web.catalogue["blue thing"] = [f"/img/blue/{n}.jpg" for n in range(8)]
    out = tmp_path / "colours"
    assert main(["collect", "--out", str(out), "red=red thing", "blue=blue thing",
                 "--per-class", "8", "--provider", "openverse", "--timeout", "2"]) == 0
    assert "imgclf train" in capsys.readouterr().out
    assert [row["reason"].split(":")[0] for row in skipped(out)] == ["not an image"]
    assert main(["train", str(out), "--mode", "probe", "--image-size", "64",
                 "--out", str(tmp_path / "model")]) == 0
    assert (tmp_path / "model" / "model.imgclf").exists()
    assert main(["predict", str(tmp_path / "model" / "model.imgclf"),
                 str(next((out / "red").iterdir())), "--json"]) == 0
    assert '"label": "red"' in capsys.readouterr().out


def test_cli_unknown_provider_is_a_clear_error(tmp_path, capsys):
    from imgclf.cli import main

    assert main(["collect", "--out", str(tmp_path), "red=red", "--provider", "bing"]) == 1
    assert "Unknown provider(s) bing" in capsys.readouterr().err


def test_kaggle_without_credentials_says_where_to_put_them(tmp_path, monkeypatch):
    from imgclf import import_kaggle

    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR",
                 "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(CollectError, match="kaggle.json"):
        import_kaggle("owner/dataset", tmp_path / "out")
    with pytest.raises(CollectError, match="OWNER/DATASET"):
        import_kaggle("just-a-name", tmp_path / "out")


def test_kaggle_download_unzips_into_the_folder(tmp_path):
    from imgclf import import_kaggle

    class Api:  # the KaggleApi methods import_kaggle calls
        def dataset_download_files(self, dataset, path, unzip, quiet):
            assert dataset == "owner/flowers" and unzip
            (Path(path) / "flowers" / "rose").mkdir(parents=True)

    folder = import_kaggle("owner/flowers", tmp_path / "out", api=Api())
    assert (folder / "flowers" / "rose").is_dir()


def test_huggingface_dataset_becomes_class_folders(tmp_path, make_photo):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    from imgclf import ImageData, import_huggingface

    pictures = [Image.open(make_photo(f"p/{n}.jpg", size=(40, 30))) for n in range(12)]
    table = datasets.Dataset.from_dict(
        {"img": pictures, "fine_label": [n % 2 for n in range(12)]},
        features=datasets.Features({"img": datasets.Image(),
                                    "fine_label": datasets.ClassLabel(names=["ant", "bee"])}))
    splits = datasets.DatasetDict({"train": table.select(range(8)),
                                   "validation": table.select(range(8, 12))})
    splits.save_to_disk(tmp_path / "saved")
    out = import_huggingface(str(tmp_path / "saved"), tmp_path / "imported", show_progress=False)
    assert sorted(p.name for p in (out / "train").iterdir()) == ["ant", "bee"]
    assert len(list((out / "valid" / "bee").iterdir())) == 2
    data = ImageData.from_folder(out, verbose=False)
    assert data.classes == ["ant", "bee"] and len(data.train) == 8 and len(data.valid) == 4
