"""Training-image throughput, ours against torchvision + PIL with a 2-worker DataLoader, in one
run: decode + RandomResizedCrop(224, bicubic) + horizontal flip + normalise of the same 500 JPEG
photos (scikit-image's photos re-cut to 300-1000 px). Prints both rates and the ratio."""
import json
import os
import random
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
start = time.perf_counter()
n = sum(x.shape[0] for x, _ in loader)
theirs = n / (time.perf_counter() - start)

binary = os.path.join(root, "target/release/examples/augment_bench")
ours = json.loads(subprocess.run([binary] + paths, check=True, capture_output=True, text=True).stdout)["images_per_s"]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"train-image pipeline, 500 JPEGs 300-1000 px, {os.cpu_count()} cores ({cpu})")
print(f"  torchvision + PIL, DataLoader(num_workers=2): {theirs:7.1f} images/s")
print(f"  clip-ast (rayon):                             {ours:7.1f} images/s   ratio {ours / theirs:.2f}x")
