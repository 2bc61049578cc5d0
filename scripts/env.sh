# Sourced by scripts/main.sh and scripts/test.sh: create or reuse the project's virtualenv.
#
# The venv lives outside the clone, keyed by the dependency list, so CI and fresh clones
# reuse it instead of reinstalling ~6 GB of PyTorch on every run, while any change to the
# dependencies builds a new one from scratch (so a missing install step cannot hide).
#
# Sourcing it leaves the shell's options as they were (no `set -e` in an interactive
# terminal, where the first mistyped command would close it): a failing step returns 1, which
# stops a script that runs under `set -e`, as scripts/main.sh and scripts/test.sh do.

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "scripts/env.sh sets up the shell that sources it: source scripts/env.sh" >&2
  exit 2
fi
IMGCLF_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}

# torch/torchvision pairs that install from this project's machines' local disk.
if [ -z "${IMGCLF_TORCH:-}" ]; then
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) IMGCLF_TORCH="torch==2.14.1 torchvision==0.29.1" ;;
    Linux-aarch64) IMGCLF_TORCH="torch==2.9.1 torchvision==0.24.1" ;;
    *) IMGCLF_TORCH="" ;;  # let pip choose for macOS and others
  esac
fi
IMGCLF_EXTRAS=${IMGCLF_EXTRAS:-test}

# pip, quietly: this machine's pip config names local index folders that may be absent, and
# pip warns about each one for every package; drop only that line.
_pip() {
  "$IMGCLF_VENV/bin/pip" --disable-pip-version-check "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

key=$("$PYTHON" - "$IMGCLF_ROOT/pyproject.toml" "$IMGCLF_TORCH" "$IMGCLF_EXTRAS" <<'PY'
import hashlib, json, platform, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
spec = [project.get("dependencies", []), project.get("optional-dependencies", {}),
        sys.argv[2], sys.argv[3], platform.python_version(), platform.machine()]
print(hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12])
PY
) || return 1
if [ -z "$key" ]; then
  echo "Could not read the dependency list from $IMGCLF_ROOT/pyproject.toml" >&2
  return 1
fi
venv_root=${IMGCLF_VENV_ROOT:-$HOME/.cache/imgclf/venvs}
IMGCLF_VENV=$venv_root/$key
mkdir -p "$venv_root" || return 1

# Each step is chained with && (set -e does nothing in a subshell that `|| return` tests):
# a failed install never reaches .ready, so the next run builds again.
(
  flock 9 || exit 1  # two runs at once wait for one build
  if [ ! -f "$IMGCLF_VENV/.ready" ]; then
    echo "Setting up $IMGCLF_VENV (first run only: a few minutes, PyTorch is large)..." >&2
    # shellcheck disable=SC2086
    rm -rf "$IMGCLF_VENV" &&
      "$PYTHON" -m venv "$IMGCLF_VENV" &&
      _pip install -q setuptools wheel &&
      { [ -z "$IMGCLF_TORCH" ] || _pip install -q $IMGCLF_TORCH; } &&
      _pip install -q -e "$IMGCLF_ROOT[$IMGCLF_EXTRAS]" &&
      touch "$IMGCLF_VENV/.ready" || exit 1
    # keep the two newest environments; older ones only fill the disk
    ls -1dt "$venv_root"/*/ 2>/dev/null | tail -n +3 | xargs -r rm -rf
  fi
) 9>"$IMGCLF_VENV.lock" || return 1

# The venv is shared by clones: point its editable install (and so the imgclf command) at this
# checkout, and put this checkout's source first on the path, so that two clones testing at
# the same time each import their own code.
# (under the lock: two shells sourcing this at once would both rewrite bin/imgclf)
(
  flock 9 && _pip install -q --no-deps --no-build-isolation -e "$IMGCLF_ROOT" >/dev/null
) 9>"$IMGCLF_VENV.lock" || return 1
export PYTHONPATH="$IMGCLF_ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$IMGCLF_VENV/bin:$PATH"
export IMGCLF_VENV
