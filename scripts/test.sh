#!/usr/bin/env bash
# Set up (or reuse) the environment and run the whole test suite; extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$IMGCLF_ROOT"

# The browser test drives Debian's Chromium: Playwright's own browser download cannot work
# offline. Install it where we can (root with apt); elsewhere that one test skips and says why.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing chromium for the browser test..." >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "chromium could not be installed; the browser test will skip" >&2
fi
exec python -m pytest "$@"
