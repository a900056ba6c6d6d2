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
set -euo pipefail

S3T_CACHE="${S3T_CACHE:-$HOME/.cache/s3t}"
ORT_VERSION=1.30.0
ORT_TGZ_SHA256=6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75
ORT_LIB_SHA256=ffb75a925ba05e47b235bb66e3e3911714a80b328a9c9425539feb204aa32a23
ORT_DIR="$S3T_CACHE/onnxruntime-$ORT_VERSION/lib"
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

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) ;;
  *) log "unsupported platform $(uname -s)/$(uname -m): s3t ships ONNX Runtime for Linux x86_64 only"; exit 1 ;;
esac

install_toolchain
install_go
install_onnxruntime
log "ok (cache: $S3T_CACHE)"
