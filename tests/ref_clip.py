"""Reference features for the model-parity tests, computed with open_clip and transformers.

usage: ref_clip.py OUT_DIR PRESET   (PRESET: mini | ViT-B-32)

Writes, in OUT_DIR:
  images/*.png            inputs at exactly the model's image size (so preprocessing is exact)
  texts.json              the prompts
  openai.safetensors      open_clip state dict (OpenAI naming), random weights
  expected.safetensors    open_clip's image_features, text_features, logit_scale
  openai_fp16.pt          the same weights rounded to fp16, as a TorchScript archive (OpenAI's format)
  expected_fp16.safetensors  open_clip's features for the fp16-rounded weights (in fp32)
  hf/model.safetensors, hf/config.json   a transformers CLIPModel with random weights
  expected_hf.safetensors  its features
"""
import json
import os
import sys

import numpy as np
import open_clip
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel

out, preset = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(out, "images"), exist_ok=True)
torch.manual_seed(0)

ARCH = {
    "mini": dict(embed=128, image=32, patch=8, vwidth=128, vlayers=4, twidth=128, tlayers=4),
    "ViT-B-32": dict(embed=512, image=224, patch=32, vwidth=768, vlayers=12, twidth=512, tlayers=12),
}[preset]


def perturb(model):
    # Default inits leave biases at 0 and norms at 1, which would hide a bias or norm wired to
    # the wrong place; give every tensor its own random values.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                p.fill_(2.5)
            else:
                p.add_(torch.randn_like(p) * 0.02)


def open_clip_model():
    a = ARCH
    return open_clip.model.CLIP(
        embed_dim=a["embed"],
        vision_cfg=dict(image_size=a["image"], patch_size=a["patch"], width=a["vwidth"], layers=a["vlayers"]),
        text_cfg=dict(context_length=77, vocab_size=49408, width=a["twidth"], heads=a["twidth"] // 64, layers=a["tlayers"]),
        quick_gelu=True,
    ).eval()


texts = [
    "a photo of a cat.",
    "a photo of a golden retriever, a type of pet.",
    "A centered satellite photo of Annual Crop Land.",
    "bubbly texture.",
    "a photo of a person doing Apply Eye Makeup.",
]
json.dump(texts, open(os.path.join(out, "texts.json"), "w"))

size = ARCH["image"]
rng = np.random.default_rng(0)
image_paths = []
for i in range(4):
    # Smooth random images: a low-resolution random field upscaled, so they look like content.
    small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((size, size), Image.BILINEAR)
    path = os.path.join(out, "images", f"img{i}.png")
    img.save(path)
    image_paths.append(path)

preprocess = open_clip.image_transform(size, is_train=False)
pixels = torch.stack([preprocess(Image.open(p)) for p in image_paths])
tokens = open_clip.tokenize(texts)


def features(model):
    with torch.no_grad():
        return {
            "image_features": model.encode_image(pixels).contiguous(),
            "text_features": model.encode_text(tokens).contiguous(),
            "logit_scale": model.logit_scale.detach().clone().reshape(()),
        }


model = open_clip_model()
perturb(model)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, "openai.safetensors"))
save_file(features(model), os.path.join(out, "expected.safetensors"))

# OpenAI's archives hold fp16 weights in TorchScript; the expected values come from the same
# fp16-rounded weights computed in fp32, which is what an importer that widens to fp32 computes.
with torch.no_grad():
    for p in model.parameters():
        p.copy_(p.half().float())
save_file(features(model), os.path.join(out, "expected_fp16.safetensors"))
scripted = torch.jit.script(model.half())
scripted.save(os.path.join(out, "openai_fp16.pt"))

a = ARCH
config = CLIPConfig(
    text_config=dict(hidden_size=a["twidth"], intermediate_size=4 * a["twidth"], num_attention_heads=a["twidth"] // 64,
                     num_hidden_layers=a["tlayers"], max_position_embeddings=77, vocab_size=49408,
                     projection_dim=a["embed"]),
    vision_config=dict(hidden_size=a["vwidth"], intermediate_size=4 * a["vwidth"], num_attention_heads=a["vwidth"] // 64,
                       num_hidden_layers=a["vlayers"], image_size=a["image"], patch_size=a["patch"],
                       projection_dim=a["embed"]),
    projection_dim=a["embed"],
)
hf = CLIPModel(config).eval()
perturb(hf)
hf.save_pretrained(os.path.join(out, "hf"), safe_serialization=True)
with torch.no_grad():
    save_file({
        "image_features": hf.get_image_features(pixel_values=pixels).pooler_output.contiguous(),
        "text_features": hf.get_text_features(input_ids=tokens).pooler_output.contiguous(),
        "logit_scale": hf.logit_scale.detach().clone().reshape(()),
    }, os.path.join(out, "expected_hf.safetensors"))
print(json.dumps({"images": image_paths, "texts": texts}))
