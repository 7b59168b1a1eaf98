//! Resident memory: `portolan serve` turns transparent huge pages (THP) off for itself.
//!
//! mimalloc asks the kernel for huge pages on its arenas (`madvise(MADV_HUGEPAGE)`), so on a
//! kernel whose THP setting is `madvise` or `always` (the usual ones) a 2 MiB page becomes
//! resident as soon as one byte of it is touched, and stays resident while any of it is in
//! use. Portolan's heap is many small, long-lived objects (the config) spread over many such
//! pages: with no proxy connected and 10,000 Services, huge pages made the process 4 MiB
//! larger (70 against 66 MiB), and a group's build with its 900 MiB `config_dump` twice as slow
//! (faulting in and zeroing 2 MiB pages), start to ready no faster (BENCHMARKS.md, "Issue #24:
//! resident memory with no proxy"). Pages mimalloc touched before `main` stay huge; the
//! container image sets `MIMALLOC_ALLOW_THP=0` so that there are none.
//!
//! The switch is `prctl(PR_SET_THP_DISABLE)`, for the whole process (and inherited by its
//! children). Setting `MIMALLOC_ALLOW_THP` to a true value (`1`, `true`, `yes`, `on`) keeps
//! huge pages on, as mimalloc would have them.

use std::ffi::OsStr;

/// The environment variable that keeps transparent huge pages on (mimalloc's own option).
pub const ALLOW_THP_ENV: &str = "MIMALLOC_ALLOW_THP";

/// Turns transparent huge pages off for this process, unless [`ALLOW_THP_ENV`] asks for them.
/// Call it first thing, before the runtime and the config take memory. A kernel without THP
/// (or without the `prctl`) is not an error: there is nothing to turn off.
pub fn limit_huge_pages() {
    if keeps_huge_pages(std::env::var_os(ALLOW_THP_ENV).as_deref()) {
        tracing::debug!("{ALLOW_THP_ENV} is set: transparent huge pages stay on");
        return;
    }
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "transparent huge pages could not be turned off");
    }
}

/// Whether the value of [`ALLOW_THP_ENV`] asks for huge pages (as mimalloc reads its options:
/// `1`, `true`, `yes` or `on`, in any case).
fn keeps_huge_pages(value: Option<&OsStr>) -> bool {
    let Some(value) = value.and_then(OsStr::to_str) else {
        return false;
    };
    ["1", "true", "yes", "on"]
        .iter()
        .any(|on| value.trim().eq_ignore_ascii_case(on))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_pages_stay_on_only_when_asked_for() {
        for on in ["1", "true", "TRUE", "yes", "On", " 1 "] {
            assert!(keeps_huge_pages(Some(OsStr::new(on))), "{on:?}");
        }
        for off in ["0", "false", "no", "off", "", "2"] {
            assert!(!keeps_huge_pages(Some(OsStr::new(off))), "{off:?}");
        }
        assert!(!keeps_huge_pages(None));
    }
}
