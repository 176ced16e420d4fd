"""Reference values for the training tests, from PyTorch.

usage: ref_train.py adamw OUT_DIR        torch.optim.AdamW over 50 recorded gradients
       ref_train.py losses OUT_DIR       CE, L1 and KL terms on fixed random features
       ref_train.py select OUT_DIR       a hand-made AdamW state for the mini preset and every rule's scores
"""
import json
import math
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

mode, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)


def adamw():
    shapes = {"a.weight": (7, 5), "b.bias": (11,), "c": (3, 4, 2)}
    for amsgrad in (False, True):
        params = {n: torch.randn(s, dtype=torch.float32, requires_grad=True) for n, s in shapes.items()}
        tensors = {f"init.{n}": p.detach().clone() for n, p in params.items()}
        opt = torch.optim.AdamW(list(params.values()), lr=3e-3, betas=(0.9, 0.999), eps=1e-8,
                                weight_decay=0.05, amsgrad=amsgrad, foreach=False)
        for step in range(50):
            for n, p in params.items():
                # Gradients spanning magnitudes, some tiny, as real ones do.
                g = torch.randn(p.shape) * (10.0 ** torch.randint(-6, 1, (1,)).item())
                tensors[f"grad{step}.{n}"] = g.clone()
                p.grad = g
            opt.step()
        for n, p in params.items():
            st = opt.state[p]
            tensors[f"final.{n}"] = p.detach().clone()
            tensors[f"exp_avg.{n}"] = st["exp_avg"].clone()
            tensors[f"exp_avg_sq.{n}"] = st["exp_avg_sq"].clone()
        save_file(tensors, f"{out}/adamw_{'amsgrad' if amsgrad else 'plain'}.safetensors")


def losses():
    img = torch.randn(8, 16)
    txt = torch.randn(5, 16)
    frozen_img = img + 0.1 * torch.randn(8, 16)
    frozen_txt = txt + 0.1 * torch.randn(5, 16)
    scale = torch.tensor(math.log(100.0))
    frozen_scale = torch.tensor(math.log(90.0))
    labels = torch.randint(0, 5, (8,))
    n = lambda x: x / x.norm(dim=-1, keepdim=True)
    logits = scale.exp() * n(img) @ n(txt).t()
    frozen_logits = frozen_scale.exp() * n(frozen_img) @ n(frozen_txt).t()
    ce = F.cross_entropy(logits, labels)
    l1_img = F.l1_loss(n(img), n(frozen_img))
    l1_txt = F.l1_loss(n(txt), n(frozen_txt))
    kl = F.kl_div(F.log_softmax(logits, dim=-1), F.log_softmax(frozen_logits, dim=-1),
                  reduction="sum", log_target=True) / logits.numel()
    total = ce + 0.5 * l1_img + 2.0 * l1_txt + 7.5 * kl
    save_file({
        "img": img, "txt": txt, "frozen_img": frozen_img, "frozen_txt": frozen_txt,
        "scale": scale.reshape(()), "frozen_scale": frozen_scale.reshape(()), "labels": labels.float(),
        "ce": ce.reshape(()), "l1_img": l1_img.reshape(()), "l1_txt": l1_txt.reshape(()),
        "kl": kl.reshape(()), "total": total.reshape(()),
    }, f"{out}/losses.safetensors")


def select():
    # The mini preset: 4 vision and 4 text blocks of width 128, MLP 512.
    fields = [("ln_1.weight", (128,)), ("ln_1.bias", (128,)), ("attn.in_proj_weight", (384, 128)),
              ("attn.in_proj_bias", (384,)), ("attn.out_proj.weight", (128, 128)),
              ("attn.out_proj.bias", (128,)), ("ln_2.weight", (128,)), ("ln_2.bias", (128,)),
              ("mlp.c_fc.weight", (512, 128)), ("mlp.c_fc.bias", (512,)),
              ("mlp.c_proj.weight", (128, 512)), ("mlp.c_proj.bias", (128,))]
    blocks = [f"visual.transformer.resblocks.{i}" for i in range(4)] + [f"transformer.resblocks.{i}" for i in range(4)]
    step, beta1, beta2, eps = 37, 0.9, 0.999, 1e-8
    state, initial, tuned = {}, {}, {}
    for b in blocks:
        for f, shape in fields:
            name = f"{b}.{f}"
            scale = 10.0 ** torch.empty(1).uniform_(-9, -3).item()
            state[f"{name}.exp_avg"] = torch.randn(shape) * scale ** 0.5
            state[f"{name}.exp_avg_sq"] = torch.rand(shape) * scale
            initial[name] = torch.randn(shape)
            tuned[name] = initial[name] + torch.randn(shape) * 10.0 ** torch.empty(1).uniform_(-6, -3).item()
    state["step"] = torch.tensor(float(step))
    save_file(state, f"{out}/adamw.safetensors")
    save_file(initial, f"{out}/initial.safetensors")
    save_file(tuned, f"{out}/tuned.safetensors")
    scores = {}
    for rule in ["inv-sqrt-v", "sqrt-v", "update", "weight-delta"]:
        per_block = {}
        for b in blocks:
            vals = []
            for f, _ in fields:
                name = f"{b}.{f}"
                m = state[f"{name}.exp_avg"].double()
                v = state[f"{name}.exp_avg_sq"].double()
                if rule == "inv-sqrt-v":
                    s = (1.0 / torch.sqrt(v + eps)).mean()
                elif rule == "sqrt-v":
                    s = torch.sqrt(v / (1 - beta2 ** step)).mean()
                elif rule == "update":
                    s = ((m / (1 - beta1 ** step)).abs() / (torch.sqrt(v / (1 - beta2 ** step)) + eps)).mean()
                else:
                    s = (tuned[name].double() - initial[name].double()).abs().mean()
                vals.append(s.item())
            order = sorted(range(len(vals)), key=lambda i: -vals[i])  # stable: ties keep order
            per_block[b] = {"scores": vals, "top6": [f"{b}.{fields[i][0]}" for i in order[:6]]}
        scores[rule] = per_block
    json.dump(scores, open(f"{out}/scores.json", "w"))


{"adamw": adamw, "losses": losses, "select": select}[mode]()
