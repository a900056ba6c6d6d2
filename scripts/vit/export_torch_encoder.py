#!/usr/bin/python3
"""Export a small, untrained torch nn.TransformerEncoder as an ONNX test fixture.

Usage (Debian 12 with python3-torch 1.13 and python3-onnx):

    /usr/bin/python3 scripts/vit/export_torch_encoder.py --out backbone/testdata

Writes, under --out:
    torch-encoder.onnx   the exported model (opset 14, dynamic batch axis)
    torch-encoder.json   provenance, a seeded input and torch's output for it

The model is what graph canonicalization must handle in a raw torch export: nn.TransformerEncoderLayer
keeps q/k/v packed in nn.MultiheadAttention's in_proj_weight (split by Slice at run time), and
torch computes the attention reshapes from Shape/Gather/Concat chains. It is exported with
do_constant_folding=False, so that every initializer keeps its torch parameter name and the packed
weights stay packed (with folding on, torch replaces each layer's in_proj_weight by three
transposed, renamed `onnx::MatMul_NNN` constants), and with no other clean-up.

torch 1.13 runs nn.TransformerEncoderLayer through a fused kernel (torch._transformer_encoder_layer_fwd,
which has no ONNX export) in eval mode when grad is off or no parameter requires grad. The export and
the reference output are therefore computed under torch.enable_grad() with parameters that require
grad, which selects the ordinary Python path (the same math: dropout is 0); the script then checks
that the graph holds only standard ONNX ops. The provenance also records how far the fused path's
output is from the reference.
"""

import argparse
import hashlib
import importlib.util
import json
import os
import sys

if __name__ == "__main__" and importlib.util.find_spec("torch") is None and sys.executable != "/usr/bin/python3":
    os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)  # `python3` without torch (pyenv)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

D_MODEL = 32
HEADS = 4
LAYERS = 2
FEEDFORWARD = 64
SEQ = 9
CLASSES = 5
OPSET = 14
EXPORT_BATCH = 3  # the batch of the tracing input
TEST_BATCH = 2  # the batch of the reference input: a different size exercises the dynamic axis


class Model(nn.Module):
    """A 2-layer post-norm transformer encoder on [N, 9, 32] embeddings with a linear head on token 0."""

    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, dim_feedforward=FEEDFORWARD, dropout=0.0,
                                           activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, norm=nn.LayerNorm(D_MODEL), enable_nested_tensor=False)
        self.head = nn.Linear(D_MODEL, CLASSES)

    def forward(self, x):
        return self.head(self.encoder(x)[:, 0])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="backbone/testdata", help="output folder")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = Model().eval()
    # nn.TransformerEncoder deep-copies one layer, so the layers start out identical, and LayerNorm
    # starts at ones and zeros; torch's exporter then merges equal initializers under one name.
    # Give every tensor its own seeded values so that each parameter keeps its own initializer.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim >= 2:
                nn.init.xavier_uniform_(param)
            elif name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "encoder.norm.weight":
                param.copy_(1 + 0.1 * torch.randn_like(param))
            else:
                param.copy_(0.1 * torch.randn_like(param))
    x = torch.randn(TEST_BATCH, SEQ, D_MODEL, generator=torch.Generator().manual_seed(args.seed + 1))
    assert all(p.requires_grad for p in model.parameters())

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "torch-encoder.onnx")
    with torch.enable_grad():  # keeps torch off the fused encoder-layer kernel (see the docstring)
        reference = model(x).detach()
        torch.onnx.export(
            model, torch.zeros(EXPORT_BATCH, SEQ, D_MODEL), path,
            input_names=["x"], output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET, do_constant_folding=False)
    with torch.no_grad():
        fused = model(x)  # eval + no grad: the fused fast path
    fused_diff = float((fused - reference).abs().max())

    import onnx
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    ops = {}
    for n in m.graph.node:
        if n.domain not in ("", "ai.onnx"):
            raise SystemExit(f"non-standard op {n.domain}::{n.op_type} in the export")
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    inits = {i.name for i in m.graph.initializer}
    params = {name for name, _ in model.named_parameters()}
    if inits != params:
        raise SystemExit(f"initializers differ from the parameters: missing {sorted(params - inits)}, "
                         f"extra {sorted(inits - params)}")

    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    info = {
        "name": "torch-encoder",
        "description": "untrained torch nn.TransformerEncoder (packed in_proj_weight), raw torch.onnx.export",
        "script": "scripts/vit/export_torch_encoder.py",
        "seed": args.seed,
        "torch_version": torch.__version__,
        "opset": OPSET,
        "onnx_sha256": digest,
        "onnx_bytes": os.path.getsize(path),
        "onnx_ops": dict(sorted(ops.items())),
        "architecture": {"d_model": D_MODEL, "nhead": HEADS, "num_layers": LAYERS,
                         "dim_feedforward": FEEDFORWARD, "activation": "gelu", "norm_first": False,
                         "batch_first": True, "final_norm": True, "seq_len": SEQ, "num_labels": CLASSES},
        "export": f"torch.onnx.export, do_constant_folding=False, traced at batch {EXPORT_BATCH} "
                  "under torch.enable_grad() (no fused encoder-layer kernel)",
        "fused_path_max_abs_diff": fused_diff,
        "input": {"name": "x", "shape": [TEST_BATCH, SEQ, D_MODEL], "dtype": "float32",
                  "data": x.flatten().tolist()},
        "output": {"name": "logits", "shape": [TEST_BATCH, CLASSES], "dtype": "float32",
                   "data": reference.flatten().tolist()},
    }
    with open(os.path.join(args.out, "torch-encoder.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print(f"wrote {path} ({info['onnx_bytes']} bytes); ops {info['onnx_ops']}; fused path differs by {fused_diff:.2e}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
