#!/usr/bin/env bash
# The main job, end to end on a fresh machine: set up, then classify real photos offline.
# Usage: bash scripts/main.sh [FOLDER]   (default: ../shared/datasets/imagenet-sample-100)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

photos=${1:-$IMGCLF_ROOT/../shared/datasets/imagenet-sample-100}
if [ ! -d "$photos" ]; then
  echo "No photo folder at $photos: pass one, e.g. bash scripts/main.sh ~/Pictures" >&2
  exit 1
fi
imgclf backbones
imgclf imagenet "$photos" --backbone efficientnet_lite0 --top-k 1
