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
# Portolan allocates with mimalloc, which returns freed memory to the OS this many ms later: long
# enough not to slow a snapshot build (0 or 10 ms made a 10k-Service cold build 1.4-1.7x slower
# here), short enough that the buffers of a large sync do not stay resident (1,000 Services and
# 2,000 proxies: about 0.65 GiB against 0.85 GiB without it; docs/operations.md, Scaling).
ENV MIMALLOC_PURGE_DELAY=250
# No transparent huge pages, from the first allocation on: `portolan serve` turns them off itself,
# but only after the few that mimalloc touched before `main` (about 5 MiB more resident at 10,000
# Services; BENCHMARKS.md, "Issue #24: resident memory with no proxy").
ENV MIMALLOC_ALLOW_THP=0
COPY --from=builder /out/portolan /usr/local/bin/portolan
USER 65532:65532
EXPOSE 18000 18080 18443
ENTRYPOINT ["/usr/local/bin/portolan"]
CMD ["serve", "--kubernetes"]
