"""References for the activation tests: open_clip folders as its hub export writes them, one
model with exact GELU (LAION's configs, which leave `quick_gelu` out) and one with QuickGELU.

usage: ref_activation.py OUT_DIR

Writes, in OUT_DIR:
  images/*.png                        inputs at exactly the model's image size (32 px)
  gelu/open_clip_model.safetensors    a mini open_clip CLIP with GELU, random weights
  gelu/open_clip_config.json          written by open_clip's own save_config_for_hf
  quick_gelu/...                      the same with quick_gelu = true
  NAME_expected.safetensors           image_features, text_features, logit_scale of the model
                                      open_clip itself loads from the folder ("local-dir:")
  NAME_zero_shot.json                 zero-shot probabilities per image for CLASSES
and prints {"images": [...], "texts": [...], "classes": [...]} as its last line.
"""
import json
import os
import sys

import numpy as np
import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.push_to_hf_hub import save_config_for_hf
from PIL import Image
from safetensors.torch import save_file
from pathlib import Path

out = Path(sys.argv[1])
(out / "images").mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)

MINI = dict(
    embed_dim=128,
    vision_cfg=dict(image_size=32, patch_size=8, width=128, layers=4),
    text_cfg=dict(context_length=77, vocab_size=49408, width=128, heads=2, layers=4),
)
TEXTS = ["a photo of a cat.", "bubbly texture.", "A centered satellite photo of Annual Crop Land."]
CLASSES = ["cat", "golden_retriever", "annual_crop_land"]

rng = np.random.default_rng(0)
image_paths = []
for i in range(3):
    small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    path = out / "images" / f"img{i}.png"
    Image.fromarray(small).resize((32, 32), Image.BILINEAR).save(path)
    image_paths.append(str(path))
preprocess = open_clip.image_transform(32, is_train=False)
pixels = torch.stack([preprocess(Image.open(p)) for p in image_paths])


def export(name, model_cfg):
    """Save a random model the way open_clip's hub export does, then load it back with open_clip."""
    folder = out / name
    folder.mkdir()
    model = open_clip.model.CLIP(**model_cfg).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            # Every tensor its own values (default inits leave biases 0), logit scale ln(100).
            p.copy_(torch.full_like(p, 4.6052) if pname == "logit_scale" else p + torch.randn_like(p) * 0.02)
    model.visual.image_mean, model.visual.image_std = OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "open_clip_model.safetensors")
    save_config_for_hf(model, folder / "open_clip_config.json", model_cfg)

    loaded = open_clip.create_model(f"local-dir:{folder}").eval()
    uses_quick = isinstance(loaded.visual.transformer.resblocks[0].mlp.gelu, open_clip.transformer.QuickGELU)
    assert uses_quick == model_cfg.get("quick_gelu", False), f"{name}: open_clip built the other activation"
    tokens = open_clip.tokenize(TEXTS)
    prompts = open_clip.tokenize([f"a photo of a {c.replace('_', ' ')}." for c in CLASSES])
    with torch.no_grad():
        image_features = loaded.encode_image(pixels)
        save_file({
            "image_features": image_features.contiguous(),
            "text_features": loaded.encode_text(tokens).contiguous(),
            "logit_scale": loaded.logit_scale.detach().clone().reshape(()),
        }, out / f"{name}_expected.safetensors")
        img = image_features / image_features.norm(dim=-1, keepdim=True)
        txt = loaded.encode_text(prompts)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        probs = (loaded.logit_scale.exp() * img @ txt.T).softmax(dim=-1)
    json.dump(probs.tolist(), open(out / f"{name}_zero_shot.json", "w"))


export("gelu", dict(MINI))  # LAION's configs have no quick_gelu: open_clip's default, GELU
export("quick_gelu", dict(MINI, quick_gelu=True))
print(json.dumps({"images": image_paths, "texts": TEXTS, "classes": CLASSES}))
