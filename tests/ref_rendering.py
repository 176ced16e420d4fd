"""Reference for tests/foundation_data.rs: the renderings of docs/datasets.md written with numpy
and PIL, then torchvision's eval resize and centre crop.

Usage: ref_rendering.py DATASET_DIR SIZE OUT_DIR RENDERING=IMPATH,IMPATH,...  ...

IMPATH is `FILE#INDEX` into a (gzipped) IDX image file under DATASET_DIR. OUT_DIR/RENDERING.raw
receives, as raw uint8, every image of that group rendered at its own size as RGB [N, H, W, 3],
then every image rendered, resized (shorter side to SIZE, bicubic) and centre-cropped
[N, SIZE, SIZE, 3].
"""

import gzip
import struct
import sys

import numpy as np
from PIL import Image
from torchvision.transforms import CenterCrop, InterpolationMode, Resize


def read_idx(path):
    raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    n, h, w = struct.unpack(">III", raw[4:16])
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, h, w)


def blur(x):
    """Separable Gaussian, sigma 1, taps -3..3 normalised, edges extended; rows then columns."""
    k = np.exp(-(np.arange(-3, 4, dtype=np.float64) ** 2) / 2.0)
    k /= k.sum()
    h, w = x.shape
    padded = np.pad(x, ((0, 0), (3, 3)), mode="edge")
    rows = np.zeros_like(x)
    for i in range(7):
        rows = rows + k[i] * padded[:, i : i + w]
    padded = np.pad(rows, ((3, 3), (0, 0)), mode="edge")
    out = np.zeros_like(x)
    for i in range(7):
        out = out + k[i] * padded[i : i + h, :]
    return out


def render(grey, rendering):
    g = grey.astype(np.float64)
    if rendering == "original":
        return Image.fromarray(grey).convert("RGB")
    if rendering == "negative-blur":
        x = np.floor(blur(255.0 - g) + 0.5).clip(0, 255).astype(np.uint8)
        img = Image.fromarray(x).convert("RGB")
        w, h = img.size
        return img.resize((max(w // 2, 1), max(h // 2, 1)), Image.BICUBIC).resize((w, h), Image.BICUBIC)
    if rendering == "rotated":
        return Image.fromarray(np.ascontiguousarray(np.rot90(grey, k=-1))).convert("RGB")
    if rendering == "low-contrast":
        return Image.fromarray((85 + np.floor(g / 3 + 0.5)).astype(np.uint8)).convert("RGB")
    raise SystemExit(f"unknown rendering {rendering}")


def main():
    root, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    arrays = {}
    crop = [Resize(size, interpolation=InterpolationMode.BICUBIC), CenterCrop(size)]
    for group in sys.argv[4:]:
        rendering, impaths = group.split("=", 1)
        rendered, cropped = [], []
        for impath in impaths.split(","):
            file, index = impath.rsplit("#", 1)
            if file not in arrays:
                arrays[file] = read_idx(f"{root}/{file}")
            img = render(arrays[file][int(index)], rendering)
            rendered.append(np.asarray(img))
            for t in crop:
                img = t(img)
            cropped.append(np.asarray(img))
        with open(f"{out}/{rendering}.raw", "wb") as f:
            f.write(np.stack(rendered).tobytes())
            f.write(np.stack(cropped).tobytes())


main()
