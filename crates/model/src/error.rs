//! Configuration errors as users see them: where, which object, which field, what is wrong.

use portolan_api::{FieldError, ObjectRef};
use std::fmt;

/// A rejected document or object. Kept in the World so `/debug/config-errors`, logs and
/// `portolan validate` all tell the same story.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConfigError {
    /// Where it came from: `path/to/file.yaml#2` (document index), or a source name.
    pub location: String,
    /// The object, when it could be identified.
    pub object: Option<ObjectRef>,
    /// The field path and message; the path is root for whole-document errors.
    pub error: FieldError,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.location)?;
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        write!(f, "{}", self.error)
    }
}

impl serde::Serialize for ConfigError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ConfigError", 5)?;
        st.serialize_field("location", &self.location)?;
        st.serialize_field("object", &self.object.as_ref().map(ToString::to_string))?;
        st.serialize_field("field", self.error.path.as_str())?;
        st.serialize_field("message", &self.error.message)?;
        st.serialize_field("error", &self.to_string())?;
        st.end()
    }
}
