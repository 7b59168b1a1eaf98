//! Generated and example worlds through the whole build path, in one test binary: property
//! tests (any document goes through decode, validation, translation and snapshot assembly
//! without a panic) and Envoy's own `--mode validate` of what the examples and generated worlds
//! translate into.

#![forbid(unsafe_code)]

mod envoy_validate;
mod proptest_pipeline;
mod support;
