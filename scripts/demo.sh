#!/usr/bin/env bash
# `make demo` until the Fashion-MNIST demo lands: the most complete job clip-ast does today.
# It builds a ViT-B/16 with RANDOM weights (no pretrained CLIP can be downloaded here) and
# classifies real photos zero-shot. The machinery is real (the model matches open_clip to
# 1e-6); the predictions are chance, because the weights have learned nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/clip-ast
WORK=${DEMO_DIR:-demo-output}
PHOTOS=$(.venv/bin/python -c 'import os, skimage.data as d; print(os.path.dirname(d.__file__))')
mkdir -p "$WORK"
if [ ! -d "$WORK/vit-b-16-random" ]; then
  "$BIN" init-weights --preset ViT-B-16 --seed 0 --out "$WORK/vit-b-16-random" >/dev/null
fi
echo "Zero-shot classification of scikit-image's photos with a random-weight ViT-B/16"
echo "(chance is 1/6 per image: expect arbitrary predictions until real weights are imported):"
echo
time "$BIN" zero-shot --weights "$WORK/vit-b-16-random" --template "a photo of a {}." \
  --class cat --class astronaut --class cup_of_coffee --class rocket --class motorcycle --class horse \
  --image "$PHOTOS/chelsea.png" --image "$PHOTOS/astronaut.png" --image "$PHOTOS/coffee.png" \
  --image "$PHOTOS/rocket.jpg" --image "$PHOTOS/motorcycle_left.png" --image "$PHOTOS/horse.png"
echo
echo "With real weights: clip-ast import-weights ViT-B-16.pt --out vit-b-16 (OpenAI's archive),"
echo "then pass --weights vit-b-16 to the same command."
