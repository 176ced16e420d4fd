"""Reference peer for the sweep benchmark: one grid point the way the existing implementation runs
it, a process of its own per (shots, lr, lambda) as its shell scripts launch Dassl's train.py:
import torch + open_clip, build the model, read and few-shot-sample the image folder, stage 1
(one epoch, every block tensor), the inv-sqrt-v score and top-K per block, stage 2 from the
initial weights (selected tensors only, CE + lambda * (L1 img + L1 txt + KL) against a frozen copy
re-encoded every step), then the test set decoded and evaluated. Same sizes as our side: the mini
preset (32 px, width 128, 4+4 blocks), batch 32, stage 2 with 1 warm-up epoch then cosine.

Random weights and fp32 (the speed does not depend on the values). Prints one JSON line with the
in-process seconds; bench/run_bench.py times the whole process, imports included.

Usage: python bench/ref_sweep_point.py --root FOLDER --shots K [--seed S] [--lr LR] [--lmbd L]
       [--epochs E] [--k K] [--threads N]"""
import time

started = time.perf_counter()
import argparse, copy, json, math, os, random

import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

imported = time.perf_counter()
p = argparse.ArgumentParser()
p.add_argument("--root", required=True)
p.add_argument("--shots", type=int, required=True)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--lr", type=float, default=1e-7)
p.add_argument("--lmbd", type=float, default=1.0)
p.add_argument("--epochs", type=int, default=5)
p.add_argument("--k", type=int, default=6)
p.add_argument("--threads", type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
random.seed(a.seed)

model = open_clip.model.CLIP(
    embed_dim=128,
    vision_cfg=dict(image_size=32, patch_size=8, width=128, layers=4),
    text_cfg=dict(context_length=77, vocab_size=49408, width=128, heads=2, layers=4),
    quick_gelu=True,
)
initial = copy.deepcopy(model.state_dict())

# The dataset as Dassl builds it: class folders, a 50/20/30 train/val/test split per class,
# K train images per class sampled with Python's random.
classes = sorted(d for d in os.listdir(a.root) if os.path.isdir(os.path.join(a.root, d)))
train, test = [], []
for label, c in enumerate(classes):
    files = sorted(os.listdir(os.path.join(a.root, c)))
    rng = random.Random(1)
    rng.shuffle(files)
    n_train, n_val = round(len(files) * 0.5), round(len(files) * 0.2)
    items = [(os.path.join(a.root, c, f), label) for f in files]
    train += random.sample(items[:n_train], min(a.shots, n_train))
    test += items[n_train + n_val:]
mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
bicubic = transforms.InterpolationMode.BICUBIC
train_tf = transforms.Compose([transforms.RandomResizedCrop(32, scale=(0.08, 1.0), interpolation=bicubic),
                               transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize(mean, std)])
test_tf = transforms.Compose([transforms.Resize(32, interpolation=bicubic), transforms.CenterCrop(32),
                              transforms.ToTensor(), transforms.Normalize(mean, std)])


class Files(torch.utils.data.Dataset):
    def __init__(self, items, tf):
        self.items, self.tf = items, tf

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        return self.tf(Image.open(path).convert("RGB")), label


tokens = open_clip.tokenize([f"a photo of a {c.replace('_', ' ')}." for c in classes])
loader = torch.utils.data.DataLoader(Files(train, train_tf), batch_size=32, shuffle=True)


def logits(m, images):
    img = F.normalize(m.encode_image(images), dim=-1)
    txt = F.normalize(m.encode_text(tokens), dim=-1)
    return m.logit_scale.exp() * img @ txt.t(), img, txt


# Stage 1: every block tensor, one epoch, CE.
block_params = {n: q for n, q in model.named_parameters() if "resblocks" in n.split(".")}
for n, q in model.named_parameters():
    q.requires_grad = n in block_params
opt = torch.optim.AdamW(block_params.values(), lr=1e-5, weight_decay=1e-4)
for x, y in loader:
    loss = F.cross_entropy(logits(model, x)[0], y)
    opt.zero_grad(); loss.backward(); opt.step()

# Score: mean(1 / sqrt(exp_avg_sq + eps)) per tensor, top K per block.
blocks = {}
for n, q in block_params.items():
    parts = n.split(".")
    i = parts.index("resblocks")
    score = (1 / (opt.state[q]["exp_avg_sq"] + 1e-8).sqrt()).mean().item()
    blocks.setdefault(".".join(parts[: i + 2]), []).append((score, n))
chosen = {n for scored in blocks.values() for _, n in sorted(scored, reverse=True)[: a.k]}

# Stage 2: from the initial weights, the chosen tensors only, against a frozen copy.
model.load_state_dict(initial)
frozen = copy.deepcopy(model).eval()
for q in frozen.parameters():
    q.requires_grad = False
params = []
for n, q in model.named_parameters():
    q.requires_grad = n in chosen
    if q.requires_grad:
        params.append(q)
opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=1e-4)
steps_per_epoch = len(loader)


def rate(step):
    epoch = step / steps_per_epoch
    if epoch < 1:
        return (1e-9 + (a.lr - 1e-9) * epoch) / a.lr
    return 0.5 * (1 + math.cos(math.pi * (epoch - 1) / (a.epochs - 1)))


sched = torch.optim.lr_scheduler.LambdaLR(opt, rate)
for _ in range(a.epochs):
    for x, y in loader:
        lg, img, txt = logits(model, x)
        with torch.no_grad():
            lf, fi, ft = logits(frozen, x)
        loss = F.cross_entropy(lg, y) + a.lmbd * (F.l1_loss(img, fi) + F.l1_loss(txt, ft) + F.kl_div(
            F.log_softmax(lg, -1), F.log_softmax(lf, -1), reduction="sum", log_target=True) / lg.numel())
        opt.zero_grad(); loss.backward(); opt.step(); sched.step()

# Evaluation: the test images decoded and preprocessed, text encoded once.
model.eval()
correct = 0
with torch.no_grad():
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    for x, y in torch.utils.data.DataLoader(Files(test, test_tf), batch_size=64):
        pred = (F.normalize(model.encode_image(x), dim=-1) @ txt.t()).argmax(-1)
        correct += (pred == y).sum().item()
done = time.perf_counter()
print(json.dumps(dict(shots=a.shots, acc=correct / len(test), import_s=imported - started, work_s=done - imported,
                      selected=len(chosen))))
