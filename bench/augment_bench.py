"""Training-image throughput, ours against torchvision + PIL with a 2-worker DataLoader, in one
run: decode + RandomResizedCrop(224, bicubic) + horizontal flip + normalise of the same 500 JPEG
photos (scikit-image's photos re-cut to 300-1000 px). Prints both rates and the ratio.

Each side decodes every file once and nothing is cached between rounds (each of our rounds is a
new process; each DataLoader pass opens the files again). The sides take turns, ROUNDS times
(default 3), so that a neighbour's load on a shared machine hits both alike; the ratio is that of
the medians. Ours runs twice per round: the streaming loader (`FileTrainSet`, decode when the batch
is built, the DataLoader's way of working; what a single-pass run such as stage 1's one epoch
uses, the headline) and decode-everything-first (`TrainSet`, what runs of several epochs use, so
that each file is still decoded once per run; holding all 500 decoded images costs page faults). Usage: python bench/augment_bench.py [ROUNDS]"""
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import skimage.data
import torch
from PIL import Image
from torchvision import transforms

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
photos_dir = os.path.dirname(skimage.data.__file__)
photos = [f for f in sorted(os.listdir(photos_dir)) if f.endswith((".png", ".jpg"))]
work = tempfile.mkdtemp()
rng = random.Random(0)
paths = []
for i in range(500):
    img = Image.open(os.path.join(photos_dir, photos[i % len(photos)])).convert("RGB")
    w, h = rng.randint(300, 1000), rng.randint(300, 1000)
    path = os.path.join(work, f"{i:03d}.jpg")
    img.resize((w, h), Image.BICUBIC).save(path, quality=90)
    paths.append(path)

transform = transforms.Compose([
    transforms.RandomResizedCrop(224, scale=(0.08, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
    transforms.RandomHorizontalFlip(),
    transforms.ToTensor(),
    transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
])


class Files(torch.utils.data.Dataset):
    def __len__(self):
        return len(paths)

    def __getitem__(self, i):
        return transform(Image.open(paths[i]).convert("RGB")), 0


loader = torch.utils.data.DataLoader(Files(), batch_size=32, num_workers=2, shuffle=False)
binary = os.path.join(root, "target/release/examples/augment_bench")


def theirs():
    start = time.perf_counter()
    n = sum(x.shape[0] for x, _ in loader)
    return n / (time.perf_counter() - start)


def ours(*flags):
    out = subprocess.run([binary, *flags] + paths, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["images_per_s"]


rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
runs = {"theirs": [], "ours": [], "ours_decoded": []}
load_start = os.getloadavg()
for r in range(rounds):
    runs["theirs"].append(theirs())
    runs["ours"].append(ours())
    runs["ours_decoded"].append(ours("--decoded"))
    print(f"  round {r + 1}: theirs {runs['theirs'][-1]:.1f}, ours {runs['ours'][-1]:.1f} "
          f"(decoded first {runs['ours_decoded'][-1]:.1f}) images/s", file=sys.stderr)
med = {k: statistics.median(v) for k, v in runs.items()}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"train-image pipeline, 500 JPEGs 300-1000 px, {os.cpu_count()} cores ({cpu}), median of {rounds} "
      f"rounds, load average {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f}")
print(f"  torchvision + PIL, DataLoader(num_workers=2):  {med['theirs']:7.1f} images/s")
print(f"  clip-ast streaming loader (single-pass runs):  {med['ours']:7.1f} images/s   ratio {med['ours'] / med['theirs']:.2f}x")
print(f"  clip-ast, all decoded first (multi-epoch runs): {med['ours_decoded']:5.1f} images/s   "
      f"ratio {med['ours_decoded'] / med['theirs']:.2f}x")
shutil.rmtree(work)
