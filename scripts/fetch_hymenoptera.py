"""Download the PyTorch transfer-learning tutorial's ants-vs-bees photos; print their folder.

Used by scripts/main.sh when ../shared/datasets/hymenoptera is absent. Needs the internet.
"""

from __future__ import annotations

import sys
import urllib.request
import zipfile
from pathlib import Path

URL = "https://download.pytorch.org/tutorial/hymenoptera_data.zip"


def main() -> int:
    target = Path.home() / ".cache" / "imgclf" / "datasets"
    folder = target / "hymenoptera_data"
    if not (folder / "train").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = target / "hymenoptera_data.zip"
        print(f"Downloading {URL} ...", file=sys.stderr)
        try:
            urllib.request.urlretrieve(URL, archive)
        except OSError as error:
            print(f"Cannot download the example photos ({error}). Pass a folder of class "
                  "folders instead: bash scripts/main.sh path/to/photos", file=sys.stderr)
            return 1
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(target)
        archive.unlink()
    print(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
