# syntax=docker/dockerfile:1
# Multi-stage build of s3t. The build stage installs ONNX Runtime exactly as `make deps` does
# (scripts/deps.sh: npm pack onnxruntime-node@1.30.0, tar out the Linux x64 library, check its
# SHA-256; S3T_DEPS_DATA=0 leaves out the data sets only the tests read) and builds the binary
# with cgo; the runtime stage carries only the binary and the library.
#
#   docker build --build-arg S3T_VERSION=$(git describe --tags --always --dirty) -t s3t .
#   docker run -d --name s3t --stop-timeout 45 -p 8080:8080 -v s3t-data:/var/lib/s3t/data \
#     -v /etc/s3t/keys:/etc/s3t/keys:ro s3t serve --addr 0.0.0.0:8080 --keys /etc/s3t/keys
#
# The data directory is the volume /var/lib/s3t/data (S3T_DATA), owned by the user s3t (uid and
# gid 10001; chown a bind-mounted folder to it). The server answers SIGTERM by finishing the
# requests in flight (up to 30 s) and then its training jobs (up to --jobs-stop-timeout, 10 s):
# give it a stop timeout over 40 s (docker's default is 10 s, then SIGKILL). Probes: GET
# /healthz (liveness) and /readyz (readiness), no key needed.

FROM golang:1.26-bookworm AS build
ENV S3T_CACHE=/opt/s3t CGO_ENABLED=1
WORKDIR /src
COPY scripts/ scripts/
RUN S3T_DEPS_DATA=0 scripts/deps.sh
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The version s3t --version, the start log, GET /v2 and s3t_build_info report (make build
# passes git describe); empty: the commit, when the build context holds .git.
ARG S3T_VERSION=
RUN go build -trimpath -ldflags "-X github.com/s3t-dev/s3t/internal/buildinfo.version=${S3T_VERSION}" -o /out/s3t ./cmd/s3t

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 s3t \
 && useradd --system --uid 10001 --gid s3t --home-dir /var/lib/s3t --create-home s3t \
 && install -d -o s3t -g s3t -m 0700 /var/lib/s3t/data
COPY --from=build /opt/s3t/onnxruntime-1.30.0/lib/libonnxruntime.so.1 /usr/local/lib/libonnxruntime.so.1
COPY --from=build /out/s3t /usr/local/bin/s3t
ENV S3T_ORT_LIBRARY=/usr/local/lib/libonnxruntime.so.1 \
    LD_LIBRARY_PATH=/usr/local/lib \
    S3T_DATA=/var/lib/s3t/data
USER s3t
WORKDIR /var/lib/s3t
VOLUME /var/lib/s3t/data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/s3t"]
CMD ["--help"]
