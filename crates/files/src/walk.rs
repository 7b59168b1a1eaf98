//! Listing the manifest files under a directory: recursive, sorted, skipping hidden files and
//! directories and anything not named `.yaml`, `.yml` or `.json` (editor backups and swap
//! files such as `x.yaml~`, `.x.yaml.swp` or `#x.yaml#` never match).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// What a walk found.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// `(path relative to the root with '/' separators, full path)`, sorted.
    pub files: Vec<(String, PathBuf)>,
    /// Subdirectories that could not be read: `(relative path, why)`.
    pub unreadable: Vec<(String, String)>,
    /// A symbolic link was met (outside hidden directories, which are not walked).
    pub links: bool,
}

/// Whether a file name is a manifest Portolan reads.
pub(crate) fn is_manifest(name: &str) -> bool {
    !name.starts_with('.')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Lists `root`. Fails only when `root` itself cannot be read.
pub(crate) fn list(root: &Path) -> std::io::Result<Listing> {
    let entries = read_sorted(root)?;
    let mut walk = Walk::default();
    if let Ok(canonical) = root.canonicalize() {
        walk.seen.insert(canonical);
    }
    walk.entries("", entries);
    walk.listing.files.sort();
    Ok(walk.listing)
}

#[derive(Default)]
struct Walk {
    listing: Listing,
    /// Directories already walked (canonical), so symlink loops end.
    seen: HashSet<PathBuf>,
}

// === impl Walk ===

impl Walk {
    fn entries(&mut self, prefix: &str, entries: Vec<(String, PathBuf)>) {
        for (name, path) in entries {
            if name.starts_with('.') {
                continue;
            }
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if path.is_symlink() {
                self.listing.links = true;
            }
            // Follows symlinks (ConfigMap volumes are made of them); a dangling one is skipped.
            match fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => self.dir(rel, &path),
                Ok(meta) if meta.is_file() && is_manifest(&name) => {
                    self.listing.files.push((rel, path))
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(path = %path.display(), error = %e, "skipping"),
            }
        }
    }

    fn dir(&mut self, rel: String, path: &Path) {
        if let Ok(canonical) = path.canonicalize()
            && !self.seen.insert(canonical)
        {
            return;
        }
        match read_sorted(path) {
            Ok(entries) => self.entries(&rel, entries),
            Err(e) => self.listing.unreadable.push((rel, e.to_string())),
        }
    }
}

/// The entries of one directory with UTF-8 names, sorted by name.
fn read_sorted(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        match entry.file_name().into_string() {
            Ok(name) => entries.push((name, entry.path())),
            Err(name) => tracing::debug!(?name, "skipping a file whose name is not UTF-8"),
        }
    }
    entries.sort();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names() {
        for ok in ["a.yaml", "a.yml", "a.json", "x.y.yaml"] {
            assert!(is_manifest(ok), "{ok}");
        }
        for skip in [
            ".a.yaml",
            "a.yaml~",
            ".a.yaml.swp",
            "#a.yaml#",
            "a.txt",
            "a.yaml.tmp",
        ] {
            assert!(!is_manifest(skip), "{skip}");
        }
    }

    #[test]
    fn lists_nested_files_sorted_and_skips_hidden() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("mesh/deep")).expect("mkdir");
        fs::create_dir_all(root.join(".git")).expect("mkdir");
        for f in [
            "b.yaml",
            "a.json",
            "mesh/deep/c.yml",
            ".git/x.yaml",
            ".hidden.yaml",
            "n.txt",
        ] {
            fs::write(root.join(f), "").expect("write");
        }
        let listing = list(root).expect("lists");
        let names: Vec<_> = listing.files.iter().map(|(rel, _)| rel.as_str()).collect();
        assert_eq!(names, ["a.json", "b.yaml", "mesh/deep/c.yml"]);
    }

    #[test]
    fn a_missing_root_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(list(&dir.path().join("nope")).is_err());
    }
}
