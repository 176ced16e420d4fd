"""Reference peer: CLIP-AST steps as a PyTorch + open_clip user would write them.

Copied from ../shared/bench/ref_stage2_step.py (the stage-2 step: the unofficial implementation's
logic, trainable image+text towers re-encoded every step, frozen copy re-encoded every step for the
self-consistency loss, AdamW on the selected tensors) and extended in the same style with
  --case stage1  every block tensor of both towers trainable, CE only, AdamW lr 1e-5;
  --case eval    test-set features and logits under no_grad, text encoded once, as Dassl's test();
  --selection F  a JSON list of the tensors stage 2 tunes, so that both sides tune the same ones;
  --json         one JSON line (per-step seconds, median, peak RSS) for bench/run_bench.py.
Random weights: speed does not depend on their values."""
import argparse, copy, json, random, statistics, time
import torch, torch.nn.functional as F, open_clip

p = argparse.ArgumentParser()
p.add_argument("--case", default="stage2", choices=["stage1", "stage2", "eval"])
p.add_argument("--model", default="ViT-B-16")
p.add_argument("--batch", type=int, default=8)
p.add_argument("--classes", type=int, default=10)
p.add_argument("--k", type=int, default=6)
p.add_argument("--selection", help="JSON list of tensor names to tune in stage 2 (default: K random per block)")
p.add_argument("--steps", type=int, default=3)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--eval-images", type=int, default=64)
p.add_argument("--device", default="cpu")
p.add_argument("--bf16", action="store_true", help="torch.autocast to bfloat16 around the forward (fp32 weights and optimizer)")
p.add_argument("--json", action="store_true")
a = p.parse_args()
if a.threads: torch.set_num_threads(a.threads)
dev = torch.device(a.device)
torch.manual_seed(0); random.seed(0)
# QuickGELU, as OpenAI's CLIP that the existing implementation tunes (and our presets) use.
model = open_clip.create_model(a.model, pretrained=None, force_quick_gelu=True).float().to(dev)
tok = open_clip.get_tokenizer(a.model)
texts = tok([f"a photo of a class{i}." for i in range(a.classes)]).to(dev)
x = torch.randn(a.batch, 3, 224, 224, device=dev); y = torch.randint(0, a.classes, (a.batch,), device=dev)


def autocast():
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16)


def sync():
    if dev.type == "cuda": torch.cuda.synchronize()


if a.case == "stage2":
    frozen = copy.deepcopy(model).eval()
    for q in frozen.parameters(): q.requires_grad = False
    if a.selection:
        chosen = set(json.load(open(a.selection)))
    else:
        blocks = {}
        for n, q in model.named_parameters():
            parts = n.split(".")
            if "resblocks" in parts:
                i = parts.index("resblocks")
                blocks.setdefault(".".join(parts[: i + 2]), []).append(n)
        chosen = set()
        for names in blocks.values(): chosen.update(random.sample(names, min(a.k, len(names))))
    params = []
    for n, q in model.named_parameters():
        q.requires_grad = n in chosen
        if q.requires_grad: params.append(q)
    assert len(params) == len(chosen), "selection names a tensor open_clip does not have"
    opt = torch.optim.AdamW(params, lr=1e-6, weight_decay=1e-4)

    def step():
        with autocast():
            img = model.encode_image(x); txt = model.encode_text(texts)
            with torch.no_grad():
                fi = frozen.encode_image(x); ft = frozen.encode_text(texts)
        img, txt, fi, ft = (F.normalize(t.float(), dim=-1) for t in (img, txt, fi, ft))
        s = model.logit_scale.exp(); lg = s * img @ txt.t(); lf = s * fi @ ft.t()
        loss = F.cross_entropy(lg, y) + F.l1_loss(img, fi) + F.l1_loss(txt, ft) + F.kl_div(
            F.log_softmax(lg, -1), F.log_softmax(lf, -1), reduction="sum", log_target=True) / lg.numel()
        opt.zero_grad(); loss.backward(); opt.step()
elif a.case == "stage1":
    params = []
    for n, q in model.named_parameters():
        q.requires_grad = "resblocks" in n.split(".")
        if q.requires_grad: params.append(q)
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=1e-4)

    def step():
        with autocast():
            img = model.encode_image(x); txt = model.encode_text(texts)
        img, txt = (F.normalize(t.float(), dim=-1) for t in (img, txt))
        loss = F.cross_entropy(model.logit_scale.exp() * img @ txt.t(), y)
        opt.zero_grad(); loss.backward(); opt.step()
else:
    model.eval()
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073), device=dev).view(1, 3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711), device=dev).view(1, 3, 1, 1)
    g = torch.Generator().manual_seed(1)
    test = torch.randint(0, 256, (a.eval_images, 224, 224, 3), dtype=torch.uint8, generator=g)

    def evaluate(images):
        with torch.no_grad(), autocast():
            txt = F.normalize(model.encode_text(texts).float(), dim=-1)
            s = model.logit_scale.exp(); preds = []
            for i in range(0, len(images), a.batch):
                b = (images[i:i + a.batch].to(dev).permute(0, 3, 1, 2).float() / 255 - mean) / std
                preds.append((s * F.normalize(model.encode_image(b).float(), dim=-1) @ txt.t()).argmax(-1).cpu())
            return torch.cat(preds)

    def step(): evaluate(test)

times = []
for _ in range(a.warmup): evaluate(test[: a.batch]) if a.case == "eval" else step()
for _ in range(a.steps):
    sync(); t = time.perf_counter(); step(); sync(); times.append(time.perf_counter() - t)
dt = sum(times)
n = a.eval_images if a.case == "eval" else a.batch
if a.json:
    rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
    med = statistics.median(times)
    print(json.dumps(dict(side="reference", case=a.case, preset=a.model, batch=a.batch, classes=a.classes,
                          precision="autocast-bf16" if a.bf16 else "fp32", threads=torch.get_num_threads(),
                          device=a.device, step_s=times, median_s=med, images_per_s=n / med,
                          text_positions=texts.shape[1], peak_rss_mb=rss,
                          trainable=sum(q.numel() for q in params) if a.case != "eval" else 0)))
else:
    print(f"case={a.case} model={a.model} bf16={a.bf16} batch={a.batch} classes={a.classes} threads={torch.get_num_threads()} "
          f"s/step={dt/a.steps:.3f} img/s={n*a.steps/dt:.2f}")
