"""Load a `clip-ast export` folder in open_clip and in transformers and report what they compute.

usage: ref_export.py SPEC.json

SPEC: {"export": DIR, "images": [paths], "prompts": [texts], "test_images": [paths],
       "builtin": open_clip model name or null}
The images go through open_clip's transform built from the folder's preprocess_cfg; the same
pixels feed the transformers model, so the two libraries see identical input. Prints JSON:
features of both libraries (to compare with clip-ast's `embed`), token ids, the classifier's
predictions on the test images, and how CLIPProcessor's pixels differ from open_clip's.
"""
import json
import os
import sys
import tempfile

import open_clip
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import CLIPModel, CLIPProcessor

torch.set_num_threads(1)
spec = json.load(open(sys.argv[1]))
d = spec["export"]
out = {}


def features(x):
    # transformers 5 returns an output object from get_*_features, 4 a tensor.
    return x if torch.is_tensor(x) else x.pooler_output


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


# open_clip, from the folder, and by name with pretrained=FILE (a built-in name where the
# architecture is one, else the folder's model_cfg registered under a name of our own).
oc, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{d}")
oc.eval()
name = spec.get("builtin")
with tempfile.TemporaryDirectory() as tmp:
    if not name:
        name = "clip-ast-export-under-test"
        cfg = json.load(open(os.path.join(d, "open_clip_config.json")))["model_cfg"]
        path = os.path.join(tmp, name + ".json")
        json.dump(cfg, open(path, "w"))
        open_clip.add_model_config(path)
    by_name, _, _ = open_clip.create_model_and_transforms(name, pretrained=os.path.join(d, "open_clip_model.safetensors"))
a, b = oc.state_dict(), by_name.state_dict()
out["open_clip_by_name_equal"] = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
out["open_clip_quick_gelu"] = json.load(open(os.path.join(d, "open_clip_config.json")))["model_cfg"].get("quick_gelu", False)

hf = CLIPModel.from_pretrained(d).eval()
processor = CLIPProcessor.from_pretrained(d)
out["hf_hidden_act"] = hf.config.vision_config.hidden_act

pil = [Image.open(p).convert("RGB") for p in spec["images"]]
pixels = torch.stack([preprocess(im) for im in pil])
oc_ids = open_clip.get_tokenizer(f"local-dir:{d}")(spec["prompts"])
context = oc_ids.shape[1]
hf_text = processor.tokenizer(spec["prompts"], padding="max_length", max_length=context, return_tensors="pt")


def through_eos(ids):
    # open_clip pads with 0, transformers with <|endoftext|>: compare up to the first end token.
    return [row[: row.index(49407) + 1] for row in ids.tolist()]


out["token_ids_equal"] = through_eos(oc_ids) == through_eos(hf_text["input_ids"])

with torch.no_grad():
    out["open_clip"] = {"image": oc.encode_image(pixels).tolist(), "text": oc.encode_text(oc_ids).tolist()}
    out["hf"] = {
        "image": features(hf.get_image_features(pixel_values=pixels)).tolist(),
        "text": features(hf.get_text_features(**hf_text)).tolist(),
    }
    hf_pixels = processor(images=pil, return_tensors="pt")["pixel_values"]
    out["processor_pixel_max_abs"] = float((hf_pixels - pixels).abs().max())

    # The exported classifier on the test images, in each library.
    clf = load_file(os.path.join(d, "classifier.safetensors"))
    classes = json.load(open(os.path.join(d, "classes.json")))
    emb, scale = clf["class_embeddings"], clf["logit_scale"].exp()
    test = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in spec.get("test_images", [])] or [pixels[0]])
    for lib, encode in [("open_clip", oc.encode_image), ("hf", lambda x: features(hf.get_image_features(pixel_values=x)))]:
        logits = scale * unit(encode(test)) @ emb.T
        out[lib]["predictions"] = logits.argmax(-1).tolist()
        top2 = logits.topk(min(2, logits.shape[1]), -1).values
        out[lib]["smallest_margin"] = float((top2[:, 0] - top2[:, -1]).min())
    # The classifier is the model's own prompt embeddings.
    prompt_ids = open_clip.get_tokenizer(f"local-dir:{d}")([p[0] for p in classes["prompts"]])
    out["classifier_vs_prompts_max_abs"] = float((unit(oc.encode_text(prompt_ids)) - emb).abs().max())

print(json.dumps(out))
