#!/usr/bin/env bash
# What checkpointing costs a training stage: one mini-preset stage 2 (16 images, batch 4, so
# 4 steps per epoch, EPOCHS epochs, one thread) with checkpoints off, at their default spacing
# (an epoch-end save at most every 30 s), and at every epoch end (spacing 0: the most writing).
#
#   bash bench/checkpoint_cost.sh setup            make the inputs under $DIR (default /tmp/ckpt-bench)
#   bash bench/checkpoint_cost.sh run off|default|every
#                                                  one stage-2 run (its artifact removed first)
#   bash bench/checkpoint_cost.sh [ROUNDS]         setup, then ROUNDS (default 5) rounds of the
#                                                  three in turn; median wall seconds of each
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/target/release/clip-ast}
DIR=${DIR:-/tmp/ckpt-bench}
EPOCHS=${EPOCHS:-100}
export XDG_CACHE_HOME=$DIR/cache

setup() {
  mkdir -p "$DIR"
  if [ ! -d "$DIR/data" ]; then
    .venv/bin/python - "$DIR/data" <<'EOF'
import random, sys
from pathlib import Path
import numpy as np
from PIL import Image
rng = np.random.default_rng(7)
for name, c in [("red", (220, 30, 30)), ("green", (30, 200, 40)), ("blue", (40, 40, 220)), ("yellow", (230, 220, 30))]:
    d = Path(sys.argv[1]) / name
    d.mkdir(parents=True, exist_ok=True)
    for i in range(10):
        px = np.clip(np.array(c) + rng.uniform(-50, 50, (40, 48, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(px).save(d / f"{i:02}.png")
EOF
  fi
  local q=(--store "$DIR/store" --threads 1 --quiet)
  local s w t l
  s=$("$BIN" "${q[@]}" split --dataset imagefolder --root "$DIR/data" --shots 4 --seed 1 --image-size 32)
  w=$("$BIN" "${q[@]}" init-weights --preset mini --seed 0)
  t=$("$BIN" "${q[@]}" stage1 --split "$s" --weights "$w" --batch-size 4 --lr 1e-4)
  l=$("$BIN" "${q[@]}" select --stage1 "$t" --k 3 2>/dev/null)
  printf '%s\n' "$s" "$w" "$l" > "$DIR/inputs"
}

run() {
  mapfile -t in < "$DIR/inputs"
  case "$1" in
    off) export CLIP_AST_CHECKPOINT=off ;;
    default) ;;
    every) export CLIP_AST_CHECKPOINT_SPACING=0 ;;
    *) echo "error: run off|default|every" >&2; exit 2 ;;
  esac
  rm -rf "$DIR/store/stage2" "$DIR/store/tmp/checkpoints"
  exec "$BIN" --store "$DIR/store" --threads 1 --quiet stage2 --split "${in[0]}" --weights "${in[1]}" \
    --selection "${in[2]}" --epochs "$EPOCHS" --warmup-epochs 1 --batch-size 4 --lr 1e-3 >/dev/null
}

case "${1:-}" in
  setup) setup ;;
  run) run "$2" ;;
  *)
    setup
    rounds=${1:-5}
    declare -A times
    for _ in $(seq "$rounds"); do
      for mode in off default every; do
        start=$(date +%s.%N)
        (run "$mode")
        times[$mode]+="$(echo "$(date +%s.%N) - $start" | bc) "
      done
    done
    for mode in off default every; do
      median=$(printf '%s\n' ${times[$mode]} | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
      echo "$mode: median ${median}s of $rounds (${times[$mode]% })"
    done
    ;;
esac
