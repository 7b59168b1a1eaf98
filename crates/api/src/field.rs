//! Field paths (`spec.ports[0].port`) and the error that points at one.

use std::fmt;

/// A path to a field inside an object, rendered like `spec.http[1].route[0].weight`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(String);

// === impl FieldPath ===

impl FieldPath {
    /// The root of an object.
    pub fn root() -> Self {
        Self(String::new())
    }

    /// A path from its rendered form.
    pub fn parse(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// `self.name`.
    pub fn field(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// `self[i]`.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// `self[key]`, for maps such as labels.
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("<root>")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// One thing wrong with one field: what was wrong and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldError {
    pub path: FieldPath,
    pub message: String,
}

// === impl FieldError ===

impl FieldError {
    pub fn new(path: FieldPath, message: impl Into<String>) -> Self {
        Self {
            path,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for FieldError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nested_paths() {
        let p = FieldPath::root()
            .field("spec")
            .field("http")
            .index(1)
            .field("route")
            .index(0)
            .field("weight");
        assert_eq!(p.to_string(), "spec.http[1].route[0].weight");
        assert_eq!(FieldPath::root().to_string(), "<root>");
        assert_eq!(
            FieldPath::root()
                .field("metadata")
                .field("labels")
                .key("app")
                .as_str(),
            "metadata.labels[app]"
        );
    }
}
