# syntax=docker/dockerfile:1
# Multi-stage build of s3t. The build stage installs ONNX Runtime exactly as `make deps` does
# (scripts/deps.sh: npm pack onnxruntime-node@1.30.0, tar out the Linux x64 library, check its
# SHA-256) and builds the binary with cgo; the runtime stage carries only the binary and the
# library.

FROM golang:1.26-bookworm AS build
ENV S3T_CACHE=/opt/s3t CGO_ENABLED=1
WORKDIR /src
COPY scripts/ scripts/
RUN scripts/deps.sh
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -o /out/s3t ./cmd/s3t

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/s3t --create-home s3t
COPY --from=build /opt/s3t/onnxruntime-1.30.0/lib/libonnxruntime.so.1 /usr/local/lib/libonnxruntime.so.1
COPY --from=build /out/s3t /usr/local/bin/s3t
ENV S3T_ORT_LIBRARY=/usr/local/lib/libonnxruntime.so.1 \
    LD_LIBRARY_PATH=/usr/local/lib
USER s3t
WORKDIR /var/lib/s3t
ENTRYPOINT ["/usr/local/bin/s3t"]
CMD ["--help"]
