#!/usr/bin/env bash
# Training throughput of one S3T stage (stage 1: the ViT's top block with LoRA on query/value and
# a linear head, trunk activations from the activation cache, batch 64) in s3t's GoMLX engine and
# in PyTorch 1.13 (adapters/testdata/torch_lora_bench.py: the same model, step and batch), run
# alternately in the same time window so that both see the same machine load.
#
# Usage: scripts/bench/stage_vs_torch.sh [RUNS]     (default 5; run from the repository root)
#
# Builds s3t into a temporary directory twice: the default build (AVX2/FMA kernels on amd64 CPUs
# that have them) and -tags purego (the plain-Go kernels only).
# Prints every run, then the medians and the ratio to PyTorch. Environment: SAMPLES (default
# 2048), BATCH (64), TORCH_STEPS (200), PYTHON (/usr/bin/python3, which has torch).
set -euo pipefail
runs=${1:-5}
samples=${SAMPLES:-2048}
batch=${BATCH:-64}
steps=${TORCH_STEPS:-200}
python=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

go build -o "$tmp/s3t-default" ./cmd/s3t
go build -tags purego -o "$tmp/s3t-purego" ./cmd/s3t
variants=(default purego)

stage() { # binary -> examples/s of the cached stage
	"$1" bench train --only stage --samples "$samples" --batch "$batch" --json |
		python3 -c 'import json,sys; print(round(next(r["examples_per_second"] for r in json.load(sys.stdin)["results"] if r["cache"])))'
}
torch() {
	"$python" adapters/testdata/torch_lora_bench.py --batch "$batch" --steps "$steps" |
		sed -n 's/.*examples\/s=\([0-9]*\).*/\1/p'
}

declare -A all
for i in $(seq "$runs"); do
	line="run $i: torch $(torch | tee -a "$tmp/torch")"
	for v in "${variants[@]}"; do
		x=$(stage "$tmp/s3t-$v")
		echo "$x" >>"$tmp/$v"
		line+="  s3t-$v $x"
	done
	echo "$line examples/s"
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
t=$(median "$tmp/torch")
echo "median over $runs runs (examples/s): torch $t"
for v in "${variants[@]}"; do
	m=$(median "$tmp/$v")
	echo "  s3t-$v $m  ratio $(awk -v a="$m" -v b="$t" 'BEGIN {printf "%.2f", a/b}')x"
done
