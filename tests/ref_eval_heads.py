"""Reference for CoOp's base-to-novel scores and the val accuracy of an `all` split.

Usage: ref_eval_heads.py CLIP_AST WEIGHTS SPLIT_DIR WORK_DIR

Takes the model's features of the split's test and val images and of one prompt per class
from `clip-ast embed` (the model outputs), and does everything else here, independently of
the eval stage: the prompts, the cosine logits, and the scores. Base accuracy classifies base
test images (the first ceil(n/2) labels) among the base class names only, new accuracy new
test images among the new names only (CoOp's definition); the "halves" are the N-way
classifier's accuracy on each half, printed so a test can check the fixture tells them apart.
Prints one JSON object.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file


def embed(clip_ast, weights, images, texts, out):
    args = [clip_ast, "embed", "--weights", weights, "--out", out, "--threads", "1", "--quiet"]
    for path in images:
        args += ["--image", path]
    for text in texts:
        args += ["--text", text]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    tensors = load_file(out)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
    return unit(tensors["image_features"].astype(np.float64)), unit(tensors["text_features"].astype(np.float64))


def rate(hits):
    return float(np.mean(hits)) if len(hits) else None


def main():
    clip_ast, weights, split_dir, work = sys.argv[1:5]
    with open(os.path.join(split_dir, "split.json")) as f:
        split = json.load(f)
    names = split["classnames"]
    prompts = [split["template"].replace("{}", name.replace("_", " "), 1) for name in names]
    n_base = math.ceil(len(names) / 2)

    def scores(items, tag):
        paths = [os.path.join(split["image_dir"], impath) for impath, _, _ in items]
        labels = np.array([label for _, label, _ in items])
        image, text = embed(clip_ast, weights, paths, prompts, os.path.join(work, f"{tag}.safetensors"))
        logits = image @ text.T
        all_way = logits.argmax(1)
        base, new = labels < n_base, labels >= n_base
        among_base = logits[:, :n_base].argmax(1)
        among_new = logits[:, n_base:].argmax(1) + n_base
        return {
            "acc": rate(all_way == labels),
            "base": rate((among_base == labels)[base]),
            "new": rate((among_new == labels)[new]),
            "halves_base": rate((all_way == labels)[base]),
            "halves_new": rate((all_way == labels)[new]),
            "n": len(items),
        }

    test = scores(split["test"], "test")
    val = scores(split["val"], "val")
    print(json.dumps({"test": test, "val": val}))


if __name__ == "__main__":
    main()
