"""The data stage on the real hymenoptera photos (ants vs bees, with one real placeholder GIF)."""

from __future__ import annotations

import pytest

from imgclf import ImageData
from imgclf.cli import main
from tests.conftest import shared_dataset

pytestmark = pytest.mark.integration


def test_hymenoptera_split_by_folders_and_placeholder_flagged():
    data = ImageData.from_folder(shared_dataset("hymenoptera"), verbose=False)
    assert data.classes == ["ants", "bees"]
    assert data.counts() == {"ants": {"train": 124, "valid": 70, "test": 0},
                             "bees": {"train": 121, "valid": 83, "test": 0}}
    assert [p.name for p, _ in data.report.suspicious] == ["imageNotFound.gif"]
    assert not data.report.skipped and not data.report.leakage


def test_hymenoptera_show_batch_cli(tmp_path):
    out = tmp_path / "batch.png"
    assert main(["show-batch", str(shared_dataset("hymenoptera")), "--augment",
                 "--out", str(out)]) == 0
    assert out.stat().st_size > 50_000  # eight real photos, not an empty canvas
