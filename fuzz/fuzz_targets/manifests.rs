//! Fuzz target: any bytes as a manifest file, through decode, validation, conversion, index,
//! translation, snapshot and JSON rendering (`portolan_pipeline::fuzzing::manifest_bytes`).
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run manifests fuzz/corpus/manifests examples/bookinfo examples/routing`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    portolan_pipeline::fuzzing::manifest_bytes(data);
});
