#!/usr/bin/env bash
# `clip-ast embed` against open_clip for 8 photos + 5 prompts on a random ViT-B-16, same
# weights file, same machine, one after the other. Prints wall seconds of each.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/clip-ast
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PHOTOS=$(.venv/bin/python -c 'import os, skimage.data as d; print(os.path.dirname(d.__file__))')
IMAGES=(astronaut.png coffee.png chelsea.png rocket.jpg motorcycle_left.png retina.jpg hubble_deep_field.jpg gravel.png)
TEXTS=("a photo of a cat." "a photo of a rocket." "a photo of a cup of coffee." "a photo of an astronaut." "a photo of a motorcycle.")
W=$("$BIN" init-weights --preset ViT-B-16 --store "$WORK/store" --quiet)
args=(); json_images="["; for i in "${IMAGES[@]}"; do args+=(--image "$PHOTOS/$i"); json_images+="\"$PHOTOS/$i\","; done
json_images="${json_images%,}]"
json_texts=$(printf '%s\n' "${TEXTS[@]}" | .venv/bin/python -c 'import json,sys; print(json.dumps(sys.stdin.read().splitlines()))')
for t in "${TEXTS[@]}"; do args+=(--text "$t"); done
start=$(date +%s.%N)
"$BIN" embed --weights "$W" "${args[@]}" --out "$WORK/ours.safetensors" >/dev/null
ours=$(echo "$(date +%s.%N) - $start" | bc)
ref=$(.venv/bin/python bench/ref_embed.py "$W/model.safetensors" "$WORK/ref.safetensors" "$json_images" "$json_texts")
echo "embed, ViT-B-16, 8 images + 5 texts, $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
printf 'clip-ast embed (whole process): %.2f s\n' "$ours"
echo "open_clip (python process, parts): $ref"
