"""open_clip's side of the embed benchmark: load safetensors weights, preprocess the images
with open_clip's transform, encode images and texts; prints the seconds each part took."""
import json
import sys
import time

t0 = time.perf_counter()
import open_clip
import torch
from PIL import Image
from safetensors.torch import load_file

weights, out = sys.argv[1], sys.argv[2]
images = json.loads(sys.argv[3])
texts = json.loads(sys.argv[4])
t_import = time.perf_counter()
model = open_clip.create_model("ViT-B-16-quickgelu")
model.load_state_dict(load_file(weights))
model.eval()
t_load = time.perf_counter()
preprocess = open_clip.image_transform(224, is_train=False)
with torch.no_grad():
    pixels = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in images])
    img = model.encode_image(pixels)
    txt = model.encode_text(open_clip.tokenize(texts))
t_end = time.perf_counter()
print(json.dumps({"import_s": t_import - t0, "load_s": t_load - t_import, "compute_s": t_end - t_load,
                  "total_s": t_end - t0, "threads": torch.get_num_threads()}))
