#!/usr/bin/python3
"""PyTorch reference timing for adapters' LoRA training step (BenchmarkTrainStep).

Usage: /usr/bin/python3 adapters/testdata/torch_lora_bench.py [--batch 64] [--steps 200] [--blocks 1]

The same model and step as the Go benchmark: the top --blocks blocks of the committed ViT
(assets/vit-fmnist.onnx; weights read from its initializers, frozen), the final LayerNorm and the
CLS token (`features`), LoRA (rank 8, alpha 16) on the query and value weights of those blocks,
and a linear head (64 -> 10) trained with cross-entropy and Adam, from block inputs of shape
[batch, 17, 64] (the activation cache). Prints examples/s. Runs itself under Debian's OpenBLAS with
/usr/bin/python3 like scripts/vit/train_vit.py, on 2 threads.
"""
import argparse
import importlib.util
import os
import sys
import time

OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-pthread"


def _bootstrap():
    if os.environ.get("S3T_BENCH_BOOTSTRAPPED"):
        return
    env = dict(os.environ, S3T_BENCH_BOOTSTRAPPED="1")
    python = sys.executable
    if importlib.util.find_spec("torch") is None:
        python = "/usr/bin/python3"
    if os.path.isdir(OPENBLAS_DIR):
        env["LD_LIBRARY_PATH"] = OPENBLAS_DIR + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
        env["OPENBLAS_NUM_THREADS"] = "1"
    os.execve(python, [python] + sys.argv, env)


_bootstrap()

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "..", "assets", "vit-fmnist.onnx")


class LoRALinear(torch.nn.Module):
    def __init__(self, w, b, rank, alpha, gen):
        super().__init__()
        self.w, self.b = w, b
        out_f, in_f = w.shape
        bound = 1 / (in_f ** 0.5)
        self.A = torch.nn.Parameter(torch.empty(rank, in_f).uniform_(-bound, bound, generator=gen))
        self.B = torch.nn.Parameter(torch.zeros(out_f, rank))
        self.scale = alpha / rank

    def forward(self, x):
        return F.linear(x, self.w + self.scale * (self.B @ self.A), self.b)


class Block(torch.nn.Module):
    def __init__(self, p, i, rank, alpha, gen):
        super().__init__()
        pre = f"encoder.layer.{i}."
        g = lambda n: p[pre + n]
        self.ln1 = (g("layernorm_before.weight"), g("layernorm_before.bias"))
        self.ln2 = (g("layernorm_after.weight"), g("layernorm_after.bias"))
        self.q = LoRALinear(g("attention.attention.query.weight"), g("attention.attention.query.bias"), rank, alpha, gen)
        self.k = (g("attention.attention.key.weight"), g("attention.attention.key.bias"))
        self.v = LoRALinear(g("attention.attention.value.weight"), g("attention.attention.value.bias"), rank, alpha, gen)
        self.o = (g("attention.output.dense.weight"), g("attention.output.dense.bias"))
        self.fc1 = (g("intermediate.dense.weight"), g("intermediate.dense.bias"))
        self.fc2 = (g("output.dense.weight"), g("output.dense.bias"))

    def forward(self, x):
        n, t, d = x.shape
        h = F.layer_norm(x, (d,), *self.ln1, eps=1e-12)
        split = lambda y: y.view(n, t, 4, d // 4).transpose(1, 2)
        q, k, v = split(self.q(h)), split(F.linear(h, *self.k)), split(self.v(h))
        a = torch.softmax(q @ k.transpose(-1, -2) / (d // 4) ** 0.5, dim=-1) @ v
        x = x + F.linear(a.transpose(1, 2).reshape(n, t, d), *self.o)
        h = F.layer_norm(x, (d,), *self.ln2, eps=1e-12)
        return x + F.linear(F.gelu(F.linear(h, *self.fc1)), *self.fc2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--blocks", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--full", action="store_true",
                    help="run the whole ViT from pixels (patch embedding and every block, the lower ones frozen) "
                         "as a plain PyTorch fine-tune without an activation cache would; LoRA stays on the top "
                         "--blocks blocks")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(1)
    p = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in onnx.load(MODEL).graph.initializer}
    blocks = [Block(p, i, 8, 16, gen) for i in range(4 - args.blocks, 4)]
    frozen = [Block(p, i, 8, 16, gen) for i in range(0, 4 - args.blocks)] if args.full else []
    for b in frozen:
        for q in (b.q.A, b.q.B, b.v.A, b.v.B):
            q.requires_grad_(False)
    ln = (p["layernorm.weight"], p["layernorm.bias"])
    head = torch.nn.Linear(64, 10)
    params = [q for b in blocks for q in (b.q.A, b.q.B, b.v.A, b.v.B)] + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    x = torch.randn(args.batch, 17, 64, generator=gen)
    pixels = torch.rand(args.batch, 1, 28, 28, generator=gen)

    def embed(px):
        e = F.conv2d((px - p["embeddings.pixel_mean"]) / p["embeddings.pixel_std"],
                     p["embeddings.patch_embeddings.projection.weight"],
                     p["embeddings.patch_embeddings.projection.bias"], stride=7)
        e = e.flatten(2).transpose(1, 2)
        cls = p["embeddings.cls_token"].expand(px.shape[0], -1, -1)
        h = torch.cat([cls, e], dim=1) + p["embeddings.position_embeddings"]
        for b in frozen:
            h = b(h)
        return h
    y = torch.arange(args.batch) % 10

    def step():
        h = embed(pixels) if args.full else x
        for b in blocks:
            h = b(h)
        f = F.layer_norm(h, (64,), *ln, eps=1e-12)[:, 0]
        loss = F.cross_entropy(head(f), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(10):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    el = time.perf_counter() - t0
    print(f"torch {torch.__version__} threads={torch.get_num_threads()} full={args.full} blocks={args.blocks} batch={args.batch} "
          f"steps={args.steps} per-step={el / args.steps * 1e3:.2f}ms examples/s={args.steps * args.batch / el:.0f} "
          f"loss={loss.item():.4f}")


if __name__ == "__main__":
    main()
