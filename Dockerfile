# syntax=docker/dockerfile:1
# Portolan's container image: the `portolan` binary on distroless/cc (glibc and libgcc, no
# shell, no package manager), run as the unprivileged user 65532.
#   docker build -t portolan:0.1.0 .
# The chart (charts/portolan) runs it with `serve --kubernetes`.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds; the binary is copied out of the
# cached target/ so the next stage can take it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p portolan --bin portolan \
    && install -D -m 0755 target/release/portolan /out/portolan

FROM gcr.io/distroless/cc-debian12:nonroot
# glibc keeps the freed buffers of large syncs resident; with a fixed mmap threshold they go back
# to the OS (Portolan's RSS per connected proxy about halves: see docs/operations.md, Scaling).
ENV GLIBC_TUNABLES=glibc.malloc.mmap_threshold=65536
COPY --from=builder /out/portolan /usr/local/bin/portolan
USER 65532:65532
EXPOSE 18000 18080 18443
ENTRYPOINT ["/usr/local/bin/portolan"]
CMD ["serve", "--kubernetes"]
