#!/usr/bin/env bash
# The main job, end to end on a fresh machine: set up, train on real photos, write the
# evaluation report, then predict.
# Usage: bash scripts/main.sh [DATA_FOLDER]   (default: ../shared/datasets/hymenoptera;
#        without it, the PyTorch tutorial's public copy is downloaded when online)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$IMGCLF_ROOT"

data=${1:-$IMGCLF_ROOT/../shared/datasets/hymenoptera}
if [ ! -d "$data" ]; then
  data=$(python "$IMGCLF_ROOT/scripts/fetch_hymenoptera.py")
fi
data=$(cd "$data" && pwd)
out=models/hymenoptera
imgclf train "$data" --backbone efficientnet_lite0 --out "$out"
imgclf evaluate "$out" "$data" --report "$out/report.html"
echo
echo "Predictions for a few validation photos the model did not train on:"
imgclf predict "$out/model.imgclf" $(ls "$data"/val/ants/*.jpg | head -3) \
  $(ls "$data"/val/bees/*.jpg | head -3) --top-k 2
strangers=$IMGCLF_ROOT/../shared/datasets/imagenet-sample-100
if [ -d "$strangers" ]; then
  echo
  echo "Pictures of neither ants nor bees (the model should call them unknown):"
  imgclf predict "$out/model.imgclf" "$strangers"/n03868242_oxcart.JPEG \
    "$strangers"/n02077923_sea_lion.JPEG "$strangers"/n01440764_tench.JPEG
fi
