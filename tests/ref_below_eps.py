"""Reference for stage 1's diagnostics, from PyTorch: per tensor of a saved AdamW state, the
fraction of `exp_avg_sq` entries below eps, and the step count.

usage: ref_below_eps.py ADAMW_SAFETENSORS EPS     prints {"step": N, "tensors": {name: fraction}}
"""
import json
import sys

from safetensors.torch import load_file

state = load_file(sys.argv[1])
eps = float(sys.argv[2])
suffix = ".exp_avg_sq"
tensors = {
    name[: -len(suffix)]: (v < eps).float().mean().item()
    for name, v in state.items()
    if name.endswith(suffix)
}
print(json.dumps({"step": state["step"].item(), "tensors": tensors}))
