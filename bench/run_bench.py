"""`make bench`: ours against PyTorch + open_clip, case by case, on this machine.

Each case runs the reference (bench/ref_stage2_step.py) and ours (target/release/examples/step_bench)
as separate processes, back to back, with the same preset, batch, class count, selected tensors
(one JSON list handed to both) and thread count. Every process times its own steps after warm-up
and reports the median step and its peak RSS (VmHWM). The table gives images/s, the ratio, the
matrix-product GFLOP each side's algorithm needs per step (counted, below) and the GFLOP/s that
makes, and peak RSS; bench/results.csv holds the same with the machine's CPU model and the date.

Then the mini-preset sweep: 5 shots x 5 lr x 3 lambda on a generated image folder, as one
`clip-ast run` of the grid (each split, stage-1 run and selection computed once per shot count)
against two naive sweeps that run each point's whole chain from nothing, as the existing
implementation reruns stage 1 per point: our binary with a fresh store per point (what caching
alone saves), and a Python process per point in PyTorch + open_clip (bench/ref_sweep_point.py,
the existing implementation's way), timed whole and without its imports (see run_sweep).

--precision bf16 rows run only where the CPU has bf16 matrix units (AVX512-BF16 or AMX): elsewhere
libtorch emulates bf16 products far slower than fp32 (the table says so, with both measured rates).

Usage: python bench/run_bench.py [--quick] [--threads N] [--only CASE...] [--no-sweep]
"""
import argparse, csv, datetime, json, os, platform, random, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
OURS = os.path.join(ROOT, "target/release/examples/step_bench")
BIN = os.path.join(ROOT, "target/release/clip-ast")
REF = os.path.join(ROOT, "bench/ref_stage2_step.py")

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--quick", action="store_true", help="one timed step per case, fewer eval images, a smaller sweep")
p.add_argument("--only", nargs="*", help="case names to run (default: all)")
p.add_argument("--no-sweep", action="store_true")
p.add_argument("--bf16", choices=["auto", "always", "never"], default="auto")
p.add_argument("--out", default=os.path.join(ROOT, "bench/results.csv"))
a = p.parse_args()


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags():
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def matmul_rates():
    """GFLOP/s of a 1024^3 product in fp32 and bf16 with the bench's thread count."""
    code = f"""
import torch, time
torch.set_num_threads({a.threads})
out = []
for dt in (torch.float32, torch.bfloat16):
    x = torch.randn(1024, 1024).to(dt); x @ x
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < 0.5 or n < 2: x @ x; n += 1
    out.append(2 * 1024**3 * n / (time.perf_counter() - t) / 1e9)
print(*out)"""
    fp32, bf16 = map(float, subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout.split())
    return fp32, bf16


# --- counted work -----------------------------------------------------------------------------
# Matrix products and attention only (2 FLOP per multiply-add); norms, activations and the optimizer
# are left out, so these are lower bounds of what each algorithm must do.
B16 = dict(vision=dict(width=768, mlp=3072, layers=12, tokens=197, patches=196, patch=16),
           text=dict(width=512, mlp=2048, layers=12), embed=512)
FIELDS = ["ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
          "attn.out_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
          "mlp.c_proj.weight", "mlp.c_proj.bias"]


def block_forward(w, m, tokens, rows):
    """One block over `tokens` keys/values with `rows` query rows (rows < tokens: ours, last block)."""
    return 2 * w * w * (rows + 2 * tokens) + 4 * rows * tokens * w + 2 * rows * w * w + 4 * rows * w * m


def block_backward(w, m, tokens, rows, selected, input_grad):
    f = 0
    if input_grad:  # gradient through the block to its input, attention backward twice its forward
        f += 2 * w * w * (rows + 2 * tokens) + 2 * rows * w * w + 4 * rows * w * m + 8 * rows * tokens * w
    if "attn.in_proj_weight" in selected: f += 2 * w * w * (rows + 2 * tokens)
    if "attn.out_proj.weight" in selected: f += 2 * rows * w * w
    if "mlp.c_fc.weight" in selected: f += 2 * rows * w * m
    if "mlp.c_proj.weight" in selected: f += 2 * rows * w * m
    return f


def tower(kind, seqs, tokens, last_rows, selected_by_block, backward, skip_blocks=0):
    """FLOPs of one tower over `seqs` sequences: forward, plus backward for the selected tensors."""
    c = B16[kind]
    w, m, L = c["width"], c["mlp"], c["layers"]
    f = 0
    if kind == "vision" and skip_blocks == 0:
        f += 2 * c["patches"] * 3 * c["patch"] ** 2 * w
    trained = [i for i in range(L) if selected_by_block.get(i)]
    lowest = min(trained) if trained else L
    for i in range(skip_blocks, L):
        rows = last_rows if i == L - 1 else tokens
        f += block_forward(w, m, tokens, rows)
        if backward and i >= lowest:
            f += block_backward(w, m, tokens, rows, selected_by_block.get(i, set()), i > lowest)
    return f * seqs


def by_block(selected, prefix):
    out = {}
    for n in selected:
        if n.startswith(prefix):
            i, field = n[len(prefix):].split(".", 1)
            out.setdefault(int(i), set()).add(field)
    return out


def counted_gflop(case, side, classes, batch, text_tokens, selected, eval_images):
    ours = side == "ours"
    T = B16["vision"]["tokens"]
    vrows = 1 if ours else T
    all_fields = {i: set(FIELDS) for i in range(12)}
    if case == "eval":
        f = tower("vision", eval_images, T, vrows, {}, False) + tower("text", classes, text_tokens, 1 if ours else text_tokens, {}, False)
    elif case == "stage1":
        f = tower("vision", batch, T, vrows, all_fields, True) + tower("text", classes, text_tokens, 1 if ours else text_tokens, all_fields, True)
    else:
        vis, txt = by_block(selected, "visual.transformer.resblocks."), by_block(selected, "transformer.resblocks.")
        trows = 1 if ours else text_tokens
        f = tower("vision", batch, T, vrows, vis, True) + tower("vision", batch, T, vrows, {}, False)
        f += tower("text", classes, text_tokens, trows, txt, True)
        if not ours:  # the frozen text tower every step; ours computes it once per run
            f += tower("text", classes, text_tokens, trows, {}, False)
    return f / 1e9


# --- running ----------------------------------------------------------------------------------
def run_json(cmd, timeout):
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
    line = [l for l in r.stdout.splitlines() if l.startswith("{")][-1]
    out = json.loads(line)
    out["process_s"] = time.perf_counter() - t
    return out


def selection_file(path, k=6, seed=0):
    rng = random.Random(seed)
    names = []
    for prefix in [f"visual.transformer.resblocks.{i}" for i in range(12)] + [f"transformer.resblocks.{i}" for i in range(12)]:
        names += rng.sample([f"{prefix}.{f}" for f in FIELDS], k)
    json.dump(names, open(path, "w"))
    return names


def main():
    started = datetime.datetime.now(datetime.timezone.utc)
    flags = cpu_flags()
    native_bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    fp32_rate, bf16_rate = matmul_rates()
    run_bf16 = a.bf16 == "always" or (a.bf16 == "auto" and native_bf16)
    load0 = os.getloadavg()
    work = tempfile.mkdtemp(prefix="clip-ast-bench-")
    sel_path = os.path.join(work, "selection.json")
    selected = selection_file(sel_path)
    steps, warmup = (1, 1) if a.quick else (2, 1)
    eval_images = 16 if a.quick else 32
    threads = ["--threads", str(a.threads)]
    cases = [
        ("stage2", 10), ("stage2", 100), ("stage1", 10), ("stage1", 100), ("eval", 10),
    ]
    rows = []
    print(f"clip-ast bench: ViT-B-16, random weights, {a.threads} threads, {cpu_model()}, "
          f"{os.cpu_count()} CPUs, {started:%Y-%m-%d %H:%M} UTC", flush=True)
    print(f"matmul 1024^3: fp32 {fp32_rate:.0f} GFLOP/s, bf16 {bf16_rate:.0f} GFLOP/s "
          f"(native bf16: {'yes' if native_bf16 else 'no'}); load average at start {load0[0]:.2f}", flush=True)
    for case, classes in cases:
        name = f"{case}-{classes}" if case != "eval" else "eval"
        if a.only and name not in a.only:
            continue
        batch = 8 if case != "eval" else 16
        common = ["--batch", str(batch), "--classes", str(classes), "--steps", str(steps), "--warmup", str(warmup),
                  *threads, "--eval-images", str(eval_images)]
        sel = ["--selection", sel_path] if case == "stage2" else []
        runs = [("reference", "fp32", [PY, REF, "--case", case, "--json", *common, *sel])]
        runs.append(("ours", "fp32", [OURS, "--case", case, "--precision", "fp32", *common, *sel]))
        if run_bf16:
            runs.append(("ours", "bf16", [OURS, "--case", case, "--precision", "bf16", *common, *sel]))
        results = {}
        for side, precision, cmd in runs:
            print(f"  {name} {side} {precision} ...", end="", flush=True)
            r = run_json(cmd, timeout=900)
            r["gflop"] = counted_gflop(case, side, classes, batch, r["text_positions"], selected, eval_images)
            r["gflop_per_s"] = r["gflop"] / r["median_s"]
            results[(side, precision)] = r
            print(f" {r['median_s']:.2f} s/step, {r['images_per_s']:.2f} img/s, {r['peak_rss_mb']:.0f} MB", flush=True)
        ref = results[("reference", "fp32")]
        for (side, precision), r in results.items():
            rows.append(dict(case=name, side=side, precision=precision, batch=batch, classes=classes,
                             images_per_step=eval_images if case == "eval" else batch, threads=r["threads"],
                             step_s_median=round(r["median_s"], 4), step_s_all=" ".join(f"{x:.3f}" for x in r["step_s"]),
                             images_per_s=round(r["images_per_s"], 3),
                             ratio_vs_reference=round(r["images_per_s"] / ref["images_per_s"], 3),
                             gflop_per_step=round(r["gflop"], 1), gflop_per_s=round(r["gflop_per_s"], 1),
                             peak_rss_mb=round(r["peak_rss_mb"]), text_positions=r["text_positions"]))
        if not run_bf16:
            rows.append(dict(case=name, side="ours", precision="bf16",
                             note=f"skipped: no native bf16 on this CPU (bf16 products {bf16_rate:.0f} GFLOP/s vs fp32 {fp32_rate:.0f})"))
    sweep = None if a.no_sweep or (a.only and "sweep" not in a.only) else run_sweep(work)
    load1 = os.getloadavg()
    meta = dict(cpu_model=cpu_model(), cpus=os.cpu_count(), date=f"{started:%Y-%m-%d}", native_bf16=native_bf16,
                matmul_fp32_gflops=round(fp32_rate), matmul_bf16_gflops=round(bf16_rate),
                load_avg_start=round(load0[0], 2), load_avg_end=round(load1[0], 2))
    if sweep:
        rows += sweep
    write_csv(rows, meta)
    print_table(rows, meta)
    shutil.rmtree(work, ignore_errors=True)


def write_csv(rows, meta):
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    keys += [k for k in meta if k not in keys]
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({**meta, **r})
    print(f"\nwrote {os.path.relpath(a.out, ROOT)}")


def print_table(rows, meta):
    print(f"\n{meta['cpu_model']}, {meta['cpus']} CPUs, {meta['date']}, {a.threads} threads; "
          f"load average {meta['load_avg_start']} → {meta['load_avg_end']} (shared machine: expect noise)")
    head = f"{'case':10} {'side':9} {'prec':5} {'img/s':>8} {'ratio':>6} {'GFLOP/step':>10} {'GFLOP/s':>8} {'RSS MB':>7}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        if r.get("case") == "sweep":
            continue
        if "note" in r:
            print(f"{r['case']:10} {r['side']:9} {r['precision']:5} {r['note']}")
            continue
        print(f"{r['case']:10} {r['side']:9} {r['precision']:5} {r['images_per_s']:8.2f} {r['ratio_vs_reference']:6.2f} "
              f"{r['gflop_per_step']:10.0f} {r['gflop_per_s']:8.0f} {r['peak_rss_mb']:7d}")
    for r in rows:
        if r.get("case") == "sweep":
            print(f"sweep {r['side']:>9}: {r['total_s']:.0f} s ({r['note']})")


# --- the sweep --------------------------------------------------------------------------------
SWEEP_TOML = """name = "bench-sweep"
[weights]
init = {{ preset = "mini", seed = 0 }}
[data]
dataset = "imagefolder"
root = "{root}"
shots = {shots}
seed = 1
[stage2]
lr = {lrs}
lambda = {lambdas}
epochs = {epochs}
warmup_epochs = 1
"""


def run_sweep(work):
    """Ours: `clip-ast run` over the whole grid with one store, so each split, stage-1 run and
    selection is computed once per shot count. Naive: every point from nothing (a fresh store)
    as the existing implementation reruns stage 1 per point, each point a `clip-ast run` of its
    own; run for real once per shot count and counted 15 times, since a point's work does not
    depend on its lr or lambda."""
    shots = [1, 2, 4] if a.quick else [1, 2, 4, 8, 16]
    lrs = [5e-8, 1e-7, 5e-7, 1e-6, 5e-6]
    lambdas = [0, 1, 10]
    epochs = 5
    data = os.path.join(work, "folder")
    make_folder(data, classes=10, per_class=40)
    env = dict(os.environ, XDG_CACHE_HOME=os.path.join(work, "xdg"))

    def run_pipeline(name, shots, lrs, lambdas, store):
        path = os.path.join(work, f"{name}.toml")
        open(path, "w").write(SWEEP_TOML.format(root=data, shots=json.dumps(shots), lrs=json.dumps(lrs),
                                                lambdas=json.dumps(lambdas), epochs=epochs))
        t = time.perf_counter()
        # mini's small products gain nothing from a second thread
        r = subprocess.run([BIN, "run", path, "--store", store, "--out", os.path.join(work, f"{name}-out"),
                            "--threads", "1", "--quiet"], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"clip-ast run {name}: {r.stderr[-1500:]}")
        return time.perf_counter() - t

    points = len(shots) * len(lrs) * len(lambdas)
    print(f"  sweep: mini preset, {len(shots)} shots x {len(lrs)} lr x {len(lambdas)} lambda = {points} points, "
          f"stage 2 {epochs} epochs ...", flush=True)
    cached = run_pipeline("cached", shots, lrs, lambdas, os.path.join(work, "store"))
    per_shot = {}
    for shot in shots:
        per_shot[shot] = run_pipeline(f"naive-{shot}", [shot], [lrs[2]], [lambdas[1]], os.path.join(work, f"fresh-{shot}"))
    naive = sum(per_shot[s] * len(lrs) * len(lambdas) for s in shots)
    # The existing implementation's way: a Python process per point (import torch + open_clip,
    # model, dataset, stage 1, score, stage 2, test), timed whole and without its imports.
    ref_whole, ref_work = {}, {}
    for shot in shots:
        t = time.perf_counter()
        r = subprocess.run([PY, os.path.join(ROOT, "bench/ref_sweep_point.py"), "--root", data, "--shots", str(shot),
                            "--lr", str(lrs[2]), "--lmbd", str(lambdas[1]), "--epochs", str(epochs), "--threads", "1"],
                           capture_output=True, text=True, check=True)
        ref_whole[shot] = time.perf_counter() - t
        ref_work[shot] = json.loads(r.stdout.strip().splitlines()[-1])["work_s"]
    per_point = len(lrs) * len(lambdas)
    reference = sum(ref_whole.values()) * per_point
    reference_work = sum(ref_work.values()) * per_point
    print(f"  sweep: cached {cached:.0f} s; naive (ours, fresh store per point) {naive:.0f} s, ratio {cached / naive:.2f}; "
          f"PyTorch per point {reference:.0f} s, ratio {cached / reference:.2f} "
          f"({reference_work:.0f} s without imports, ratio {cached / reference_work:.2f})", flush=True)
    counted = f"run once per shot count and counted x{per_point}"
    per = lambda d: ", ".join(f"{s}: {t:.1f} s" for s, t in d.items())
    base = dict(case="sweep", precision="fp32", classes=10, threads=1)
    return [
        dict(base, side="cached", total_s=round(cached, 1), ratio_vs_naive=round(cached / naive, 3),
             note=f"{points} points, 1 clip-ast run (--jobs 1)"),
        dict(base, side="naive", total_s=round(naive, 1), ratio_vs_naive=1.0,
             note=f"per point a clip-ast run with a fresh store, {counted} ({per(per_shot)})"),
        dict(base, side="reference", total_s=round(reference, 1), ratio_vs_naive=round(reference / naive, 3),
             note=f"per point a Python process, bench/ref_sweep_point.py, {counted} ({per(ref_whole)}); "
                  f"cached/reference {cached / reference:.3f}"),
        dict(base, side="ref-work", total_s=round(reference_work, 1), ratio_vs_naive=round(reference_work / naive, 3),
             note=f"the same without the per-process imports ({per(ref_work)}); cached/ref-work {cached / reference_work:.3f}"),
    ]


def make_folder(root, classes, per_class):
    """Class folders of noisy images around one colour per class: 48x48 PNGs."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = os.path.join(root, f"class_{c}")
        os.makedirs(d)
        base = rng.integers(0, 256, 3)
        for i in range(per_class):
            img = np.clip(base + rng.normal(0, 60, (48, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(d, f"{i}.png"))


if __name__ == "__main__":
    main()
