"""Reference for tests/preprocess_parity.rs: open_clip 3.3.0's eval preprocessing on real photos.

Usage: ref_preprocess.py OUT_DIR

Writes the fixture images (scikit-image's sample photos plus re-saved variants covering sizes,
orientations and pixel formats) to OUT_DIR/img/, and OUT_DIR/ref.safetensors holding, per file
name NAME:
  NAME/decoded   uint8 [H, W, 3]     Image.open().convert('RGB')
  NAME/crop      uint8 [224, 224, 3] Resize(224, BICUBIC) + CenterCrop(224) of that, on PIL
  NAME/norm      f32 [3, 224, 224]   the full open_clip transform of the RGB image
  NAME/raw_norm  f32 [3, 224, 224]   the transform on the image as opened (open_clip 3.3.0 itself
                                     converts to RGB only after resizing, see below)
Prints a JSON manifest (one entry per image) on stdout.
"""

import json
import os
import struct
import sys
import zlib

import numpy as np
import open_clip
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision.transforms import CenterCrop, InterpolationMode, Normalize, Resize, ToTensor

SIZE = 224
SKIMAGE_DATA = os.path.join(os.path.dirname(__import__("skimage").__file__), "data")


def write_png16(path, arr):
    """16-bit PNG written by hand (PIL cannot save 16-bit colour): grey, grey+alpha, RGB or RGBA
    for 1, 2, 3 or 4 channels."""
    h, w = arr.shape[:2]
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = arr.astype(">u2").reshape(h, -1).tobytes()
    stride = len(rows) // h
    raw = b"".join(b"\x00" + rows[i * stride:(i + 1) * stride] for i in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw)))
        f.write(chunk(b"IEND", b""))


def make_fixtures(img_dir):
    """Returns [(file name, category)]; category groups the parity bounds in the Rust test."""
    def src(name):
        return Image.open(os.path.join(SKIMAGE_DATA, name))

    out = []

    def save(im, name, category, **kw):
        im.save(os.path.join(img_dir, name), **kw)
        out.append((name, category))

    # The sample photos as shipped (PNG: RGB and grey; JPEG: 4:4:4 and 4:2:0).
    for name in [
        "astronaut.png", "coffee.png", "chelsea.png", "motorcycle_left.png", "ihc.png",
        "camera.png", "moon.png", "gravel.png", "brick.png", "grass.png", "coins.png",
        "cell.png", "clock_motion.png", "page.png", "text.png", "microaneurysms.png",
        "rocket.jpg", "retina.jpg", "hubble_deep_field.jpg",
    ]:
        with open(os.path.join(SKIMAGE_DATA, name), "rb") as f:
            data = f.read()
        with open(os.path.join(img_dir, name), "wb") as f:
            f.write(data)
        out.append((name, "jpeg" if name.endswith(".jpg") else "png"))

    astronaut = src("astronaut.png").convert("RGB")
    coffee = src("coffee.png").convert("RGB")
    chelsea = src("chelsea.png").convert("RGB")
    moto = src("motorcycle_right.png").convert("RGB")
    rocket = src("rocket.jpg").convert("RGB")
    camera = src("camera.png").convert("L")

    # Sizes: portrait/landscape, odd differences (half-to-even crop offsets), upscaling.
    save(coffee.crop((150, 0, 450, 400)).resize((300, 700), Image.LANCZOS), "coffee_portrait_300x700.png", "png")
    save(moto.crop((0, 0, 741, 333)), "moto_landscape_741x333.png", "png")
    save(chelsea.resize((200, 133), Image.LANCZOS), "chelsea_small_200x133.png", "png")
    save(astronaut.crop((100, 50, 327, 512)), "astronaut_227x462.png", "png")
    save(astronaut.resize((1000, 650), Image.LANCZOS), "astronaut_1000x650_q90.jpg", "jpeg", quality=90)
    save(moto.crop((200, 0, 533, 500)).resize((333, 999), Image.BILINEAR), "moto_333x999_444.jpg", "jpeg",
         quality=95, subsampling=0)
    save(rocket.crop((230, 0, 410, 400)), "rocket_180x400.jpg", "jpeg", quality=85)
    save(src("ihc.png").convert("RGB").resize((801, 467), Image.LANCZOS), "ihc_801x467_progressive.jpg",
         "jpeg", quality=80, progressive=True)
    save(coffee, "coffee_422.jpg", "jpeg", quality=75, subsampling=1)
    # Pixel formats.
    save(camera, "camera_grey.jpg", "jpeg_grey", quality=90)
    save(coffee.convert("L").crop((0, 0, 599, 401)), "coffee_grey_599x401.png", "png")
    rgba = astronaut.resize((450, 600), Image.LANCZOS).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((450, 600)))
    save(rgba, "astronaut_rgba_450x600.png", "png_alpha")
    la = camera.convert("LA")
    la.putalpha(Image.linear_gradient("L").rotate(90).resize(camera.size))
    save(la, "camera_la.png", "png_alpha")
    save(coffee.convert("P", palette=Image.ADAPTIVE, colors=64), "coffee_palette.png", "png_palette")
    save(coffee.convert("P", palette=Image.ADAPTIVE, colors=16), "coffee_palette_4bit.png", "png_palette",
         bits=4)
    save(src("page.png").convert("1"), "page_1bit.png", "png_lowbit")
    save(coffee.convert("CMYK"), "coffee_cmyk.jpg", "jpeg_cmyk", quality=90)
    save(chelsea.convert("CMYK"), "chelsea_cmyk.jpg", "jpeg_cmyk", quality=95)
    # PNG content behind a .jpg name: both PIL and load_rgb sniff the bytes.
    save(chelsea.crop((0, 0, 400, 300)), "chelsea_png_named.jpg", "png", format="PNG")

    rng = np.random.default_rng(0)
    # Noise makes every rounding difference visible; the sizes cover both pass orders of Pillow
    # 13's resampler, passes skipped because one side is already 224, upscaling and identity.
    for w, h in [(225, 1000), (1000, 225), (300, 700), (230, 231), (231, 230), (224, 300),
                 (300, 224), (100, 60), (60, 500), (2000, 300), (224, 224), (7, 3)]:
        noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        save(Image.fromarray(noise), f"noise_{w}x{h}.png", "png_noise")
    a16 = np.asarray(moto.resize((640, 432), Image.LANCZOS), dtype=np.uint16) * 257
    a16 = a16 + rng.integers(0, 257, a16.shape, dtype=np.uint16)
    write_png16(os.path.join(img_dir, "moto_rgb16.png"), a16)
    out.append(("moto_rgb16.png", "png16"))
    alpha16 = rng.integers(0, 65536, a16.shape[:2] + (1,), dtype=np.uint16)
    write_png16(os.path.join(img_dir, "moto_rgba16.png"), np.concatenate([a16, alpha16], axis=2))
    out.append(("moto_rgba16.png", "png16"))
    la16 = np.stack([np.asarray(camera, dtype=np.uint16) * 257, np.full(camera.size[::-1], 40000, np.uint16)], 2)
    write_png16(os.path.join(img_dir, "camera_la16.png"), la16)
    out.append(("camera_la16.png", "png16"))
    # PIL opens 16-bit grey as mode I;16 and clamps it to 255 in convert('RGB'); values up to
    # 510 exercise that clamp without turning the whole photo white.
    g16 = np.asarray(camera, dtype=np.uint16) * 2
    write_png16(os.path.join(img_dir, "camera_grey16.png"), g16)
    out.append(("camera_grey16.png", "png16"))
    return out


def main():
    out_dir = sys.argv[1]
    img_dir = os.path.join(out_dir, "img")
    os.makedirs(img_dir, exist_ok=True)
    fixtures = make_fixtures(img_dir)

    transform = open_clip.image_transform(SIZE, is_train=False)
    # Guard the assumptions the Rust side is built on.
    steps = transform.transforms
    assert isinstance(steps[0], Resize) and steps[0].size == SIZE, steps
    assert steps[0].interpolation == InterpolationMode.BICUBIC and steps[0].max_size is None
    assert isinstance(steps[1], CenterCrop) and list(steps[1].size) == [SIZE, SIZE]
    assert isinstance(steps[3], ToTensor) and isinstance(steps[4], Normalize)
    assert tuple(steps[4].mean) == open_clip.OPENAI_DATASET_MEAN
    assert tuple(steps[4].std) == open_clip.OPENAI_DATASET_STD
    crop_only = steps[0:2]

    tensors = {}
    manifest = []
    for name, category in fixtures:
        path = os.path.join(img_dir, name)
        with Image.open(path) as im:
            im.load()
            mode, (w, h) = im.mode, im.size
            rgb = im.convert("RGB")
            raw_norm = transform(im)
        crop = rgb
        for step in crop_only:
            crop = step(crop)
        norm = transform(rgb)
        tensors[f"{name}/decoded"] = torch.from_numpy(np.array(rgb, dtype=np.uint8))
        tensors[f"{name}/crop"] = torch.from_numpy(np.array(crop, dtype=np.uint8))
        tensors[f"{name}/norm"] = norm.contiguous()
        tensors[f"{name}/raw_norm"] = raw_norm.contiguous()
        manifest.append({
            "name": name,
            "category": category,
            "mode": mode,
            "width": w,
            "height": h,
            "raw_vs_rgb_first": float((raw_norm - norm).abs().max()),
        })
    save_file(tensors, os.path.join(out_dir, "ref.safetensors"))
    json.dump(manifest, sys.stdout)


if __name__ == "__main__":
    main()
