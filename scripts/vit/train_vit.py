#!/usr/bin/python3
"""Train and export s3t's default backbone: a small ViT pretrained on Fashion-MNIST.

Usage (Debian 12 with python3-torch 1.13, python3-onnx, python3-numpy, dataset-fashion-mnist):

    /usr/bin/python3 scripts/vit/train_vit.py --out assets

Writes, under --out:
    vit-fmnist.onnx            the exported model (opset 14, dynamic batch axis)
    vit-fmnist.json            provenance: script, seed, epochs, torch version, accuracy, sha256, ...
    vit-fmnist-reference.json  torch's logits and features for the first 16 test images

The model follows the Hugging Face ViT module layout (separate query/key/value Linear layers,
`encoder.layer.{i}.attention.attention.query`, ...) so that its ONNX initializers carry those names.
It reads pixels in [0, 1], shape [N, 1, 28, 28]; the dataset normalization is part of the graph.
Outputs: `logits` [N, 10] and `features` [N, 64] (the final-LayerNorm CLS vector a task head reads).

The export keeps every weight initializer under its torch parameter name: it runs with
do_constant_folding=False, so a Linear's weight stays as the torch tensor [out, in] behind a
Transpose node instead of being folded into a renamed `onnx::MatMul_NNN` constant. The graph has no
Shape/Gather/Concat shape arithmetic: reshapes use constant shapes with -1 for the batch axis, and the
CLS token is added by padding instead of concatenating an expanded token (each pad is exported as one
Pad with constant pads by a custom symbolic; torch 1.13's own builds the pads at run time).

Training is CPU-only on 2 threads and deterministic given --seed on a given machine setup (same
torch, same BLAS). The script runs itself under Debian's OpenBLAS when libopenblas0-pthread is
installed (about 8x faster than the reference BLAS that Debian's torch otherwise uses); the
provenance records which BLAS it loaded.
"""

import argparse
import gzip
import hashlib
import importlib.util
import json
import math
import os
import struct
import sys
import time

# Debian's python3-torch links the system libblas.so.3, which is the slow reference BLAS unless an
# optimized one is selected with update-alternatives. When Debian's OpenBLAS (libopenblas0-pthread) is
# installed, run on it without touching the system setting: re-exec with it first on the library
# path, one BLAS thread (torch's own 2 threads do the rest; one BLAS thread is also deterministic).
# `python3` may also be a Python without torch (pyenv); then re-exec with Debian's /usr/bin/python3.
OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-pthread"


def _bootstrap():
    if os.environ.get("S3T_VIT_BOOTSTRAPPED"):
        return
    env = dict(os.environ, S3T_VIT_BOOTSTRAPPED="1")
    python = sys.executable
    if importlib.util.find_spec("torch") is None:
        python = "/usr/bin/python3"
    if os.path.isdir(OPENBLAS_DIR):
        env["LD_LIBRARY_PATH"] = OPENBLAS_DIR + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
        env["OPENBLAS_NUM_THREADS"] = "1"
    os.execve(python, [python] + sys.argv, env)


if __name__ == "__main__":
    _bootstrap()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def loaded_blas():
    """The BLAS shared library this process loaded (for the provenance)."""
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.rsplit("/", 1)[-1]}
    return sorted(libs)


# Fashion-MNIST training-set pixel statistics (pixels scaled to [0, 1]), baked into the graph.
FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530

IMAGE = 28
PATCH = 7
TOKENS = (IMAGE // PATCH) ** 2 + 1  # 16 patches + CLS
WIDTH = 64
HEADS = 4
MLP = 128
LAYERS = 4
CLASSES = 10
OPSET = 14
REFERENCE_IMAGES = 16


def read_idx(path):
    """Reads a gzipped IDX file into a uint8 numpy array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    if magic >> 8 != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {body.size} bytes of data, header says {dims}")
    return body.reshape(dims)


def load_fashion_mnist(root):
    def images(name):
        return torch.from_numpy(read_idx(os.path.join(root, name)).copy()).float().div_(255.0).unsqueeze(1)

    def labels(name):
        return torch.from_numpy(read_idx(os.path.join(root, name)).astype(np.int64))

    return (images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz"),
            images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz"))


class PatchEmbeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.projection = nn.Conv2d(1, WIDTH, kernel_size=PATCH, stride=PATCH)

    def forward(self, x):  # [N, 1, 28, 28] -> [N, 16, WIDTH]
        x = self.projection(x)
        return x.reshape(-1, WIDTH, TOKENS - 1).transpose(1, 2)


class Embeddings(nn.Module):
    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.patch_embeddings = PatchEmbeddings()
        self.position_embeddings = nn.Parameter(torch.zeros(1, TOKENS, WIDTH))
        self.register_buffer("pixel_mean", torch.tensor(FMNIST_MEAN))
        self.register_buffer("pixel_std", torch.tensor(FMNIST_STD))

    def forward(self, pixel_values):
        x = (pixel_values - self.pixel_mean) / self.pixel_std
        patches = self.patch_embeddings(x)
        # Same as concatenating the CLS token in front of the patches, without needing the batch
        # size: pad a zero token in front of the patches, and add the CLS token at position 0.
        tokens = F.pad(patches, (0, 0, 1, 0))
        cls = F.pad(self.cls_token, (0, 0, 0, TOKENS - 1))
        return tokens + cls + self.position_embeddings


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.query = nn.Linear(WIDTH, WIDTH)
        self.key = nn.Linear(WIDTH, WIDTH)
        self.value = nn.Linear(WIDTH, WIDTH)

    def heads(self, x):  # [N, T, WIDTH] -> [N, HEADS, T, WIDTH/HEADS]
        return x.reshape(-1, TOKENS, HEADS, WIDTH // HEADS).transpose(1, 2)

    def forward(self, x):
        q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(WIDTH // HEADS)
        probs = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v)
        return ctx.transpose(1, 2).reshape(-1, TOKENS, WIDTH)


class SelfOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(WIDTH, WIDTH)

    def forward(self, x):
        return self.dense(x)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = SelfAttention()
        self.output = SelfOutput()

    def forward(self, x):
        return self.output(self.attention(x))


class Intermediate(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(WIDTH, MLP)

    def forward(self, x):
        return F.gelu(self.dense(x))


class Output(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = nn.Linear(MLP, WIDTH)

    def forward(self, x):
        return self.dense(x)


class Layer(nn.Module):
    """One pre-LayerNorm transformer block, Hugging Face ViTLayer naming."""

    def __init__(self):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(WIDTH, eps=1e-12)
        self.attention = Attention()
        self.layernorm_after = nn.LayerNorm(WIDTH, eps=1e-12)
        self.intermediate = Intermediate()
        self.output = Output()

    def forward(self, x):
        x = x + self.attention(self.layernorm_before(x))
        return x + self.output(self.intermediate(self.layernorm_after(x)))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.ModuleList([Layer() for _ in range(LAYERS)])

    def forward(self, x):
        for layer in self.layer:
            x = layer(x)
        return x


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = Embeddings()
        self.encoder = Encoder()
        self.layernorm = nn.LayerNorm(WIDTH, eps=1e-12)
        self.classifier = nn.Linear(WIDTH, CLASSES)
        self.apply(self._init)
        nn.init.trunc_normal_(self.embeddings.cls_token, std=0.02)
        nn.init.trunc_normal_(self.embeddings.position_embeddings, std=0.02)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, pixel_values):
        x = self.encoder(self.embeddings(pixel_values))
        features = self.layernorm(x)[:, 0]
        return self.classifier(features), features


def augment(x, gen):
    """Random horizontal flip and a random shift of up to 2 pixels (zero padding), per image."""
    n = x.shape[0]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = 2
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    base = torch.arange(IMAGE)
    rows = (dy[:, None] + base)[:, :, None]  # [n, 28, 1]
    cols = (dx[:, None] + base)[:, None, :]  # [n, 1, 28]
    return xp[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


@torch.no_grad()
def predict(model, images, batch=1000):
    logits = []
    for i in range(0, images.shape[0], batch):
        logits.append(model(images[i:i + batch])[0])
    return torch.cat(logits)


def train(model, train_x, train_y, args):
    gen = torch.Generator().manual_seed(args.seed)
    steps_per_epoch = math.ceil(train_x.shape[0] / args.batch)
    total = steps_per_epoch * args.epochs
    warmup = min(steps_per_epoch, total // 2)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embeddings" in name and "projection" not in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)

    def lr_factor(s):  # linear warmup for one epoch, then cosine decay to 0
        if s < warmup:
            return (s + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    step = 0
    for epoch in range(args.epochs):
        model.train()
        t0 = time.time()
        order = torch.randperm(train_x.shape[0], generator=gen)
        seen, correct, loss_sum = 0, 0, 0.0
        for i in range(0, order.numel(), args.batch):
            idx = order[i:i + args.batch]
            x, y = augment(train_x[idx], gen), train_y[idx]
            logits, _ = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            seen += y.numel()
            loss_sum += loss.item() * y.numel()
            correct += (logits.argmax(1) == y).sum().item()
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss_sum / seen:.4f} train acc {correct / seen:.4f} "
              f"({time.time() - t0:.1f}s)", file=sys.stderr, flush=True)


def _constant_pad_symbolic(g, input, padding, value=None):
    """ONNX symbolic for aten::constant_pad_nd that emits one Pad with a constant pads tensor.

    torch 1.13's own symbolic builds the pads at run time (Shape, ConstantOfShape, Concat, Slice,
    Cast) and relies on constant folding to clean that up, which this export turns off.
    """
    from torch.onnx import symbolic_helper, symbolic_opset11

    pad = symbolic_helper._maybe_get_const(padding, "is")
    rank = symbolic_helper._get_tensor_rank(input)
    if not isinstance(pad, list) or rank is None:
        return symbolic_opset11.constant_pad_nd(g, input, padding, value)
    begins, ends = [0] * rank, [0] * rank
    for i in range(len(pad) // 2):  # torch lists (begin, end) pairs from the last dimension back
        begins[rank - 1 - i], ends[rank - 1 - i] = pad[2 * i], pad[2 * i + 1]
    pads = g.op("Constant", value_t=torch.tensor(begins + ends, dtype=torch.int64))
    value = symbolic_helper._if_scalar_type_as(symbolic_helper._maybe_get_scalar(value), input)
    return g.op("Pad", input, pads, value, mode_s="constant")


def _pad_symbolic(g, input, pad, mode, value):
    """ONNX symbolic for aten::pad (what F.pad traces to): constant mode as above."""
    from torch.onnx import symbolic_helper, symbolic_opset11

    if symbolic_helper._parse_arg(mode, "s") != "constant":
        return symbolic_opset11.pad(g, input, pad, mode, value)
    return _constant_pad_symbolic(g, input, pad, value)


def export(model, path):
    model.eval()
    torch.onnx.register_custom_op_symbolic("aten::constant_pad_nd", _constant_pad_symbolic, OPSET)
    torch.onnx.register_custom_op_symbolic("aten::pad", _pad_symbolic, OPSET)
    dummy = torch.zeros(2, 1, IMAGE, IMAGE)
    torch.onnx.export(
        model, dummy, path,
        input_names=["pixel_values"], output_names=["logits", "features"],
        dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
        opset_version=OPSET, do_constant_folding=False, export_params=True)

    import onnx
    m = onnx.load(path)
    # torch names the CLS slice's width after the Gather that produced it; it is the fixed width.
    for out in m.graph.output:
        if out.name == "features":
            dim = out.type.tensor_type.shape.dim[1]
            dim.Clear()
            dim.dim_value = WIDTH
    m.producer_name, m.producer_version = "pytorch", torch.__version__
    onnx.save(m, path)
    onnx.checker.check_model(m, full_check=True)
    params = {name for name, _ in model.named_parameters()}
    inits = {i.name for i in m.graph.initializer}
    missing = sorted(params - inits)
    if missing:
        raise SystemExit(f"export renamed or dropped parameters: {missing}")
    renamed = sorted(n for n in inits if n.startswith("onnx::"))
    if renamed:
        raise SystemExit(f"export produced anonymous initializers: {renamed}")
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return ops


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="assets", help="output folder")
    p.add_argument("--data", default=os.environ.get("S3T_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"),
                   help="folder with the Fashion-MNIST IDX .gz files")
    p.add_argument("--seed", type=int, default=20240623)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    train_x, train_y, test_x, test_y = load_fashion_mnist(args.data)
    model = ViT()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"ViT: {n_params} parameters; train {tuple(train_x.shape)}, test {tuple(test_x.shape)}",
          file=sys.stderr, flush=True)

    t0 = time.time()
    train(model, train_x, train_y, args)
    train_seconds = time.time() - t0

    model.eval()
    logits = predict(model, test_x)
    pred = logits.argmax(1)
    correct = int((pred == test_y).sum())
    top2 = logits.topk(2, dim=1).values
    margin = float((top2[:, 0] - top2[:, 1]).min())
    print(f"test accuracy {correct / test_y.numel():.4f} ({correct}/{test_y.numel()}), "
          f"trained in {train_seconds:.0f}s", file=sys.stderr, flush=True)

    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "vit-fmnist.onnx")
    ops = export(model, onnx_path)

    with torch.no_grad():
        ref_logits, ref_features = model(test_x[:REFERENCE_IMAGES])
    reference = {
        "dataset": "fashion-mnist",
        "split": "test",
        "first": REFERENCE_IMAGES,
        "labels": test_y[:REFERENCE_IMAGES].tolist(),
        "logits": ref_logits.tolist(),
        "features": ref_features.tolist(),
    }
    with open(os.path.join(args.out, "vit-fmnist-reference.json"), "w") as f:
        json.dump(reference, f)
        f.write("\n")

    info = {
        "name": "vit-fmnist",
        "description": "Small ViT pretrained on Fashion-MNIST (Hugging Face ViT module naming)",
        "script": "scripts/vit/train_vit.py",
        "command": "/usr/bin/python3 scripts/vit/train_vit.py --out " + args.out,
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch,
        "learning_rate": args.lr,
        "weight_decay": args.weight_decay,
        "label_smoothing": args.label_smoothing,
        "augmentation": "random horizontal flip, random shift up to 2 pixels",
        "threads": args.threads,
        "blas": loaded_blas(),
        "torch_version": torch.__version__,
        "opset": OPSET,
        "train_seconds": round(train_seconds, 1),
        "parameters": n_params,
        "architecture": {
            "image_size": IMAGE, "channels": 1, "patch_size": PATCH, "tokens": TOKENS,
            "hidden_size": WIDTH, "num_attention_heads": HEADS, "intermediate_size": MLP,
            "num_hidden_layers": LAYERS, "num_labels": CLASSES, "layer_norm": "pre", "activation": "gelu",
            "layer_norm_eps": 1e-12,
        },
        "test_set": "fashion-mnist t10k (10,000 images)",
        "test_accuracy": correct / test_y.numel(),
        "test_correct": correct,
        "test_total": int(test_y.numel()),
        "test_min_top2_margin": margin,
        "onnx_file": "vit-fmnist.onnx",
        "onnx_sha256": sha256(onnx_path),
        "onnx_bytes": os.path.getsize(onnx_path),
        "onnx_ops": dict(sorted(ops.items())),
        "export": "torch.onnx.export, do_constant_folding=False: every weight initializer keeps its torch "
                  "parameter name (Linear weights are [out, in] and feed a Transpose node)",
        "input": {
            "name": "pixel_values", "shape": [-1, 1, IMAGE, IMAGE], "dtype": "float32",
            "range": [0.0, 1.0],
            "normalization": {"mean": FMNIST_MEAN, "std": FMNIST_STD, "in_graph": True,
                              "formula": "(pixel_values - mean) / std"},
        },
        "outputs": [
            {"name": "logits", "shape": [-1, CLASSES], "dtype": "float32"},
            {"name": "features", "shape": [-1, WIDTH], "dtype": "float32",
             "description": "final-LayerNorm CLS vector (classifier input)"},
        ],
        "labels": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
        "shapes": "-1 is the dynamic batch axis (dim_param \"batch\" in the ONNX file)",
        "reference_file": "vit-fmnist-reference.json",
        "reference_images": REFERENCE_IMAGES,
    }
    with open(os.path.join(args.out, "vit-fmnist.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    print(f"wrote {onnx_path} ({info['onnx_bytes']} bytes, sha256 {info['onnx_sha256']})", file=sys.stderr)


if __name__ == "__main__":
    main()
