# s3t: exact-unlearning model server. `make test` and `make demo` are the two commands a newcomer runs.
SHELL := /usr/bin/env bash

# Downloads and installed third-party pieces (ONNX Runtime, Go when the machine lacks 1.26, data).
S3T_CACHE ?= $(HOME)/.cache/s3t
export S3T_CACHE
# The ONNX Runtime shared library that the `backbone` package loads.
S3T_ORT_LIBRARY ?= $(S3T_CACHE)/onnxruntime-1.30.0/lib/libonnxruntime.so.1
export S3T_ORT_LIBRARY
# scripts/deps.sh installs Go here only when the machine has no Go >= 1.26.
export PATH := $(S3T_CACHE)/go/bin:$(PATH)
export CGO_ENABLED := 1

GO ?= go
BIN := bin/s3t
TESTFLAGS ?= -count=1 -timeout 30m

.PHONY: all deps build test test-short vet bench demo generate clean

all: build

## deps: install everything s3t needs on Debian 12 (idempotent, cached in $(S3T_CACHE))
deps:
	@scripts/deps.sh

## build: build bin/s3t, its version (s3t --version) from git describe
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo devel)
build: deps
	$(GO) build -ldflags "-X github.com/s3t-dev/s3t/internal/buildinfo.version=$(VERSION)" -o $(BIN) ./cmd/s3t

## vet: go vet and gofmt check
vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## test: install deps, then run vet and the whole test suite, on SQLite and on a throwaway
## PostgreSQL 15 cluster (scripts/pg.sh: installed from apt when missing, on 127.0.0.1, removed
## at the end). S3T_TEST_DATABASE_URL=postgres://... uses that server instead; S3T_TEST_PG=0 runs
## on SQLite only. S3 tests run against an in-process S3 server (gofakes3) and need nothing.
S3T_TEST_PG ?= 1
test: deps vet
	@set -euo pipefail; \
	if [ -z "$${S3T_TEST_DATABASE_URL:-}" ] && [ "$(S3T_TEST_PG)" != 0 ]; then \
	  pgdir=$$(mktemp -d "$${TMPDIR:-/tmp}/s3t-pg.XXXXXX"); \
	  trap 'scripts/pg.sh stop "$$pgdir"' EXIT; trap 'exit 130' INT TERM; \
	  S3T_TEST_DATABASE_URL=$$(scripts/pg.sh start "$$pgdir"); export S3T_TEST_DATABASE_URL; \
	fi; \
	echo "test: PostgreSQL at $${S3T_TEST_DATABASE_URL:-(none: SQLite only)}"; \
	$(GO) test $(TESTFLAGS) ./...; \
	echo "test: scripts/tracestat (a module of its own: the trace reader of s3t bench serve --trace)"; \
	(cd scripts/tracestat && $(GO) vet ./... && $(GO) test $(TESTFLAGS) ./...); \
	echo "test: adapters with the plain-Go kernels only (-tags purego, as on CPUs without AVX2/FMA)"; \
	$(GO) test $(TESTFLAGS) -tags purego ./adapters/; \
	if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw bmi2 /proc/cpuinfo && \
	   grep -qw f16c /proc/cpuinfo && grep -qw movbe /proc/cpuinfo; then \
	  echo "test: adapters built for GOAMD64=v3, where the compiler may fuse multiply-adds (plain Go and vector kernels)"; \
	  GOAMD64=v3 $(GO) test $(TESTFLAGS) ./adapters/ && GOAMD64=v3 $(GO) test $(TESTFLAGS) -tags purego ./adapters/; \
	fi

## bench: run the Go benchmarks
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./...

## demo: set up and run the main job on the embedded defaults
demo: build
	./$(BIN) demo

## generate: regenerate committed generated code
generate:
	$(GO) generate ./...

clean:
	rm -rf bin
