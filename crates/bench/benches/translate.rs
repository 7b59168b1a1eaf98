//! Criterion micro-benchmarks of the build path on a small synthetic world (issue #8):
//! `translate()` on one thread and as `portolan serve` calls it, the protobuf encode floor of
//! its output, and the full snapshot build. Small worlds keep `cargo bench --no-run` and
//! `cargo test --benches` quick; the big-world figures come from the `portolan-bench` binary
//! (`--scenarios translate`), which reports medians and the ratio to the floor.

#![forbid(unsafe_code)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use portolan_bench::WorldSpec;
use portolan_bench::build::{encode_all, snapshot};
use portolan_translate::{Options, ProxyGroup};
use std::hint::black_box;

/// Worlds: (services, endpoints); every 10th service has a mesh route (see `synth`).
const WORLDS: [(usize, usize); 2] = [(100, 1_000), (500, 5_000)];

fn build_path(c: &mut Criterion) {
    let (group, options) = (ProxyGroup::default(), Options::default());
    let mut g = c.benchmark_group("build_path");
    g.sample_size(20);
    for (services, endpoints) in WORLDS {
        let world = WorldSpec::new(services, endpoints).index().world();
        let id = format!("{services}svc_{endpoints}ep");
        let resources = portolan_translate::translate(&world, &group, &options);
        g.throughput(Throughput::Elements(services as u64));
        g.bench_function(BenchmarkId::new("translate_one_thread", &id), |b| {
            b.iter(|| portolan_translate::translate_on(black_box(&world), &group, &options, 1))
        });
        g.bench_function(BenchmarkId::new("translate", &id), |b| {
            b.iter(|| portolan_translate::translate(black_box(&world), &group, &options))
        });
        g.bench_function(BenchmarkId::new("encode_floor", &id), |b| {
            b.iter(|| encode_all(black_box(&resources)))
        });
        g.bench_function(BenchmarkId::new("snapshot", &id), |b| {
            b.iter(|| snapshot(black_box(&resources), None))
        });
    }
    g.finish();
}

criterion_group!(benches, build_path);
criterion_main!(benches);
