"""The README's scripts: sourcing scripts/env.sh leaves the user's shell as it was."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO

OPTIONS = "set -o | grep -E '^(errexit|nounset|pipefail)'"


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("flock") is None,
                    reason="needs bash and flock")
def test_sourcing_env_sh_leaves_the_shell_options_alone():
    if not os.environ.get("IMGCLF_VENV"):
        pytest.skip("runs where scripts/env.sh has built its venv (scripts/test.sh sets "
                    "IMGCLF_VENV); building one here would take minutes")
    script = (f"{OPTIONS}; echo ---; source scripts/env.sh; {OPTIONS}; "
              # a failing command afterwards does not end the shell
              "false; echo still here; command -v imgclf")
    result = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "IMGCLF_VENV": ""})
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.split("---\n")
    assert after.startswith(before)  # errexit, nounset, pipefail: all still off
    assert "off" in before and "on" not in before
    assert "still here" in after and after.strip().endswith("/bin/imgclf")
