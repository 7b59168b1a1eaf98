//! The trust state in a directory (`serve --ca-dir`): one file per data name of
//! [`TrustState::to_data`], keys with mode 0600, each replaced atomically.

use crate::authority::Authority;
use crate::error::CaError;
use crate::rotation::{CA_CERT, CA_KEY, DATA_NAMES, NEXT_KEY, TrustState};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

/// Reads the state in `dir`; `None` when it holds no root at all (neither `ca.crt` nor
/// `ca.key`).
pub fn load_dir(
    dir: &Path,
    trust_domain: &str,
    now: SystemTime,
) -> Result<Option<TrustState>, CaError> {
    if !dir.join(CA_CERT).exists() && !dir.join(CA_KEY).exists() {
        return Ok(None);
    }
    let mut data = BTreeMap::new();
    for name in DATA_NAMES {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                data.insert(name.to_string(), text);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CaError::Read { path, source }),
        }
    }
    TrustState::from_data(&data, trust_domain, now)
        .map(Some)
        .map_err(|e| in_dir(dir, e))
}

/// The state in `dir`, or a generated root written there when it holds none.
pub fn load_dir_or_generate(
    dir: &Path,
    trust_domain: &str,
    now: SystemTime,
) -> Result<TrustState, CaError> {
    if let Some(state) = load_dir(dir, trust_domain, now)? {
        return Ok(state);
    }
    let state = TrustState::new(Authority::generate(trust_domain, now)?, now);
    save_dir(dir, &state)?;
    Ok(state)
}

/// Writes `state` into `dir`: the signing root before anything that refers to it, names the
/// state has not removed last.
pub fn save_dir(dir: &Path, state: &TrustState) -> Result<(), CaError> {
    let write_err = |path: &Path, source| CaError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let data = state.to_data();
    for (name, text) in &data {
        let mode = if *name == CA_KEY || *name == NEXT_KEY {
            0o600
        } else {
            0o644
        };
        let path = dir.join(name);
        replace_file(dir, name, text, mode).map_err(|e| write_err(&path, e))?;
    }
    for name in DATA_NAMES.iter().filter(|n| !data.contains_key(*n)) {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(write_err(&path, e)),
        }
    }
    Ok(())
}

fn in_dir(dir: &Path, e: CaError) -> CaError {
    match e {
        CaError::InvalidRoot { what, message } => CaError::InvalidRoot {
            what: dir.join(what).display().to_string(),
            message,
        },
        other => other,
    }
}

/// Writes `name` in `dir` through a temporary file renamed over it.
fn replace_file(dir: &Path, name: &str, text: &str, mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))
}
