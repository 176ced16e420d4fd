"""Reference for evaluating an ImageNet-A/R-style split over its class subset, with open_clip.

usage: ref_subset_eval.py OUT_DIR TEST_IMAGES CLASSES_JSON SUBSET_JSON

  TEST_IMAGES   a split's test_images.safetensors (uint8 NHWC `images`, `labels` over the subset)
  CLASSES_JSON  all class names of the source dataset, in its label order
  SUBSET_JSON   the source labels of the subset's classes, in the subset's label order

Writes OUT_DIR/openai.safetensors (a random mini open_clip model, OpenAI naming) and prints JSON:
the accuracy when each image is classified among the subset's names only (`acc_subset`) and
among all names (`acc_all`), how many images are right among the subset but wrong among all,
and the smallest top-1 margin among the subset logits (how far from a tie the answer is).
"""
import json
import os
import sys

import open_clip
import torch
from safetensors.torch import load_file, save_file

out, test_path, classes_path, subset_path = sys.argv[1:5]
classes = json.load(open(classes_path))
subset = json.load(open(subset_path))
torch.manual_seed(0)

model = open_clip.model.CLIP(
    embed_dim=128,
    vision_cfg=dict(image_size=32, patch_size=8, width=128, layers=4),
    text_cfg=dict(context_length=77, vocab_size=49408, width=128, heads=2, layers=4),
    quick_gelu=True,
).eval()
with torch.no_grad():
    # Random values everywhere (default inits leave biases at 0), logit scale e^2.5.
    for name, p in model.named_parameters():
        if name.endswith("logit_scale"):
            p.fill_(2.5)
        else:
            p.add_(torch.randn_like(p) * 0.02)
os.makedirs(out, exist_ok=True)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, "openai.safetensors"))

test = load_file(test_path)
mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
pixels = (test["images"].permute(0, 3, 1, 2).float() / 255.0 - mean) / std
labels = test["labels"].tolist()

with torch.no_grad():
    image = model.encode_image(pixels)
    text = model.encode_text(open_clip.tokenize([f"a photo of a {c}." for c in classes]))
    image = image / image.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    logits = model.logit_scale.exp() * image @ text.T

among_all = logits.argmax(-1).tolist()
sub_logits = logits[:, subset]
among_subset = sub_logits.argmax(-1).tolist()
top2 = sub_logits.topk(2, dim=-1).values
right_subset = [p == l for p, l in zip(among_subset, labels)]
right_all = [p == subset[l] for p, l in zip(among_all, labels)]
print(json.dumps({
    "n": len(labels),
    "acc_subset": sum(right_subset) / len(labels),
    "acc_all": sum(right_all) / len(labels),
    "right_in_subset_wrong_in_all": sum(s and not a for s, a in zip(right_subset, right_all)),
    "min_margin": (top2[:, 0] - top2[:, 1]).min().item(),
}))
