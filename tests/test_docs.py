"""The user guide: the README starts with the two commands and stays a guide, and the pages
in docs/ build as a site with no broken link (mkdocs --strict)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

GUIDES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "bench" / "README.md"]


def test_the_readme_opens_with_the_two_commands_and_stays_short():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = re.match(r"```bash\n(.*?)\n```", readme, re.S)
    assert commands, "the README's first lines are a bash block"
    lines = [line.split("#")[0].strip() for line in commands.group(1).splitlines()]
    assert lines == ["bash scripts/main.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text()  # CI runs the same
    assert len(readme.encode()) < 15_000, "depth belongs in docs/ and bench/README.md"


@pytest.mark.parametrize("page", GUIDES, ids=lambda path: path.relative_to(REPO).as_posix())
def test_the_guide_speaks_of_the_project_not_of_who_wrote_it(page):
    said = re.findall(r"[^.\n]*\bsessions?\b[^.\n]*", page.read_text(encoding="utf-8"), re.I)
    assert not said, said


def test_the_docs_build_as_a_site_with_no_broken_link(tmp_path):
    pytest.importorskip("mkdocs", reason="needs mkdocs-material (the docs or test extra)")
    pytest.importorskip("material", reason="needs mkdocs-material (the docs or test extra)")
    pytest.importorskip("mkdocs_jupyter", reason="needs mkdocs-jupyter (the docs or test extra)")
    mkdocs = Path(sys.executable).parent / "mkdocs"
    command = [str(mkdocs)] if mkdocs.exists() else [shutil.which("mkdocs") or "mkdocs"]
    result = subprocess.run([*command, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "ARCHITECTURE" / "index.html").is_file()
