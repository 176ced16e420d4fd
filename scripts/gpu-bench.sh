#!/usr/bin/env bash
# Ours against PyTorch + open_clip on a lent NVIDIA GPU: first CUDA output against CPU output
# for the same inputs, then stage-2 and stage-1 steps of ViT-B-16 at batch 32 with 100 classes,
# ours in fp32 and --precision bf16 beside the reference in fp32 and under torch.autocast(bf16).
#
# How to run it:
#   1. Here (the CPU machine), after any change:
#        bash scripts/gpu-bench.sh prepare
#      builds target/release/clip-ast and target/release/examples/step_bench, and downloads
#      into target/gpu-wheels the wheels open_clip needs that /opt/torch/.venv lacks:
#      open_clip_torch 3.3.0, ftfy 6.3.1 and wcwidth 0.9.4 (that venv already has torch 2.11,
#      torchvision, timm, regex, tqdm, huggingface_hub and safetensors).
#   2. On the device, through the device tool's `run`:
#        command:   bash scripts/gpu-bench.sh
#        carry:     ["target/release/clip-ast", "target/release/examples/step_bench",
#                    "target/gpu-wheels"]
#        timeout_s: 330
#      The binaries were linked against this machine's .venv; there they load torch 2.11 from
#      /opt/torch/.venv (LD_LIBRARY_PATH is set below to its torch/lib and nvidia/*/lib).
#      It prints a table and leaves gpu-bench.txt and gpu-results.csv in $OUT (or ./gpu-out).
#      About 2-3 minutes of device time after the machine's start; 5 minutes at most.
#
# Exit status: non-zero when CUDA and CPU features differ by more than 1e-4 relative.
#
# A smoke test of the script itself on a machine without a GPU (CPU against CPU, tiny steps):
#   PY=.venv/bin/python DEVICE=cpu PRECISIONS=fp32 BATCH=2 CLASSES=4 STEPS=1 WARMUP=0 bash scripts/gpu-bench.sh
# (bf16 is left out there: CPUs without bf16 matrix units emulate it, minutes per step.)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

if [[ "${1:-}" == prepare ]]; then
    export VIRTUAL_ENV=$ROOT/.venv PATH=$ROOT/.venv/bin:$PATH LIBTORCH_USE_PYTORCH=1
    cargo build --release --bin clip-ast --example step_bench
    mkdir -p target/gpu-wheels
    .venv/bin/python -m pip download -q --no-deps --only-binary=:all: -d target/gpu-wheels \
        open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
    ls -l target/release/clip-ast target/release/examples/step_bench target/gpu-wheels
    exit 0
fi

OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-bench.txt") 2>&1

# torch 2.11 of the device's venv, or whichever python3 holds torch.
PY=${PY:-/opt/torch/.venv/bin/python3}
[[ -x $PY ]] || PY=$(command -v python3)
SITE=$($PY -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
LIBS="$SITE/torch/lib"
for d in "$SITE"/nvidia/*/lib "$SITE"/nvidia/*/*/lib; do [[ -d $d ]] && LIBS="$LIBS:$d"; done
export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if [[ -d target/gpu-wheels ]] && ! $PY -c 'import open_clip' 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu-bench-site target/gpu-wheels/*.whl
    export PYTHONPATH=/tmp/gpu-bench-site${PYTHONPATH:+:$PYTHONPATH}
fi
BIN=target/release/clip-ast
STEP=target/release/examples/step_bench
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'); $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
echo "   torch $($PY -c 'import torch; print(torch.__version__, torch.version.cuda)') from $SITE; CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

# 1. CUDA against CPU: the same random ViT-B-16 weights, images and prompts through `embed`.
$PY - "$WORK" <<'EOF'
import sys, numpy as np
from PIL import Image
rng = np.random.default_rng(0)
for i in range(4):
    small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    Image.fromarray(small).resize((256, 224), Image.BILINEAR).save(f"{sys.argv[1]}/img{i}.png")
EOF
W=$($BIN init-weights --preset ViT-B-16 --seed 3 --store "$WORK/store" --quiet)
args=(--weights "$W" --store "$WORK/store" --quiet)
for i in 0 1 2 3; do args+=(--image "$WORK/img$i.png"); done
for t in "a photo of a cat." "a centered satellite photo of annual crop land." "bubbly texture."; do args+=(--text "$t"); done
$BIN embed "${args[@]}" --device cpu --out "$WORK/cpu.safetensors" >/dev/null
$BIN embed "${args[@]}" --device "${DEVICE:-cuda}" --out "$WORK/cuda.safetensors" >/dev/null
agree=0
$PY - "$WORK" <<'EOF' || agree=1
import sys
from safetensors.numpy import load_file
cpu, cuda = (load_file(f"{sys.argv[1]}/{d}.safetensors") for d in ("cpu", "cuda"))
worst = 0.0
for k in ("image_features", "text_features"):
    err = abs(cuda[k] - cpu[k]).max() / abs(cpu[k]).max()
    worst = max(worst, err)
    print(f"== CUDA vs CPU, fp32, ViT-B-16 {k}: max relative difference {err:.2e}")
print("== agreement within 1e-4:", "yes" if worst < 1e-4 else "NO")
sys.exit(0 if worst < 1e-4 else 1)
EOF

# 2. Steps: the same selection (6 random tensors per block, 144 in all) for both sides.
$PY - "$WORK/selection.json" <<'EOF'
import json, random, sys
fields = ["ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
          "attn.out_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
          "mlp.c_proj.weight", "mlp.c_proj.bias"]
rng, names = random.Random(0), []
for p in [f"visual.transformer.resblocks.{i}" for i in range(12)] + [f"transformer.resblocks.{i}" for i in range(12)]:
    names += rng.sample([f"{p}.{f}" for f in fields], 6)
json.dump(names, open(sys.argv[1], "w"))
EOF
common=(--batch "${BATCH:-32}" --classes "${CLASSES:-100}" --steps "${STEPS:-10}" --warmup "${WARMUP:-3}" --device "${DEVICE:-cuda}")
: >"$WORK/runs.jsonl"
run() { # label, command...
    local label=$1; shift
    if out=$("$@" 2>"$WORK/err"); then
        echo "$out" | grep '^{' | tail -1 | $PY -c 'import json,sys; r=json.loads(sys.stdin.read()); r["label"]=sys.argv[1]; print(json.dumps(r))' "$label" >>"$WORK/runs.jsonl"
        echo "   $label: $(tail -1 "$WORK/runs.jsonl" | $PY -c 'import json,sys; r=json.loads(sys.stdin.read()); print("%.1f ms/step, %.1f img/s, peak RSS %.0f MB" % (r["median_s"]*1e3, r["images_per_s"], r["peak_rss_mb"]))')"
    else
        echo "   $label: FAILED: $(tail -3 "$WORK/err")"
    fi
}
for case in stage2 stage1; do
    sel=(); [[ $case == stage2 ]] && sel=(--selection "$WORK/selection.json")
    run "$case reference fp32" $PY bench/ref_stage2_step.py --case $case --json "${common[@]}" "${sel[@]}"
    run "$case ours fp32" $STEP --case $case --precision fp32 "${common[@]}" "${sel[@]}"
    [[ ${PRECISIONS:-fp32 bf16} == *bf16* ]] || continue
    run "$case reference autocast-bf16" $PY bench/ref_stage2_step.py --case $case --json --bf16 "${common[@]}" "${sel[@]}"
    run "$case ours bf16" $STEP --case $case --precision bf16 "${common[@]}" "${sel[@]}"
done

GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || echo unknown)
$PY - "$WORK/runs.jsonl" "$OUT/gpu-results.csv" "$GPU" <<'EOF'
import csv, json, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
by = {r["label"]: r for r in runs}
print(f"\nViT-B-16, batch {runs[0]['batch']}, {runs[0]['classes']} classes, 144 tensors tuned in stage 2, {sys.argv[3]}")
print(f"{'case':8} {'side':10} {'precision':14} {'ms/step':>8} {'img/s':>8} {'vs ref fp32':>11} {'vs ref autocast':>15}")
rows = []
for r in runs:
    case, side, prec = r["label"].split(" ")
    f32, ac = by.get(f"{case} reference fp32"), by.get(f"{case} reference autocast-bf16")
    v32 = r["images_per_s"] / f32["images_per_s"] if f32 else float("nan")
    vac = r["images_per_s"] / ac["images_per_s"] if ac else float("nan")
    print(f"{case:8} {side:10} {prec:14} {r['median_s']*1e3:8.1f} {r['images_per_s']:8.1f} {v32:11.2f} {vac:15.2f}")
    rows.append(dict(gpu=sys.argv[3], case=case, side=side, precision=prec, batch=r["batch"], classes=r["classes"],
                     step_s_median=r["median_s"], images_per_s=r["images_per_s"], ratio_vs_reference_fp32=v32,
                     ratio_vs_reference_autocast=vac, peak_rss_mb=r.get("peak_rss_mb")))
with open(sys.argv[2], "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["gpu"])
    w.writeheader(); w.writerows(rows)
EOF
exit $agree
