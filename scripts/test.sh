#!/usr/bin/env bash
# Set up (or reuse) the environment and run the whole test suite; extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$IMGCLF_ROOT"
exec python -m pytest "$@"
