//! Parsing one manifest file: YAML documents separated by `---`, or JSON; `kind: List`
//! expanded; each document decoded, validated and converted into a model object.
//!
//! Parsing is pure (bytes in, [`ParsedFile`] out); what to do with the result across scans is
//! [`crate::source`]'s business. Document indices are 0-based and count every `---`-separated
//! document, empty ones included, so `file.yaml#2` is the third document a user sees.

use portolan_api::{DecodeError, FieldError, FieldPath, ObjectRef, Resource};
use portolan_model::{ConfigError, Object, convert};
use serde_json::Value;
use std::fmt;

/// Where a document is: `mesh/reviews.yaml#2`, plus the item index inside a `kind: List`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Location {
    pub file: String,
    pub doc: usize,
    pub item: Option<usize>,
}

/// What one document (or one list item) amounts to. Kept for every document of every file
/// until the file changes, so as small as a valid one needs (16 bytes): the rare invalid
/// ones are boxed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Outcome {
    /// Valid: the object to apply (its `Arc` shared with the index and the source's record
    /// of what it applied).
    Valid(Object),
    /// Identifiable but invalid: the object keeps its last good version.
    Invalid(Box<Invalid>),
    /// Not even identifiable (no name, not a mapping): just an error.
    Unidentified(Box<FieldError>),
}

/// An identifiable document that did not decode or validate.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Invalid {
    pub object: ObjectRef,
    pub errors: Vec<FieldError>,
}

/// One decoded document of a kind Portolan reads.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Document {
    pub location: Location,
    pub outcome: Outcome,
}

/// Everything read from one file.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ParsedFile {
    pub documents: Vec<Document>,
    /// Errors that make the file unreliable as a whole (syntax errors, unreadable file):
    /// while there are any, the objects the file defined before are kept.
    pub file_errors: Vec<ConfigError>,
}

// === impl Location ===

impl Location {
    fn new(file: &str, doc: usize, item: Option<usize>) -> Self {
        Self {
            file: file.to_string(),
            doc,
            item,
        }
    }

    /// `file#doc`, plus ` items[i]` for a list item: where a duplicate was first defined.
    pub fn describe(&self) -> String {
        match self.item {
            Some(i) => format!("{self} items[{i}]"),
            None => self.to_string(),
        }
    }

    /// The field path prefix of the document inside its file (`items[i]` for list items).
    fn prefix(&self, path: FieldPath) -> FieldPath {
        let Some(i) = self.item else {
            return path;
        };
        let item = FieldPath::root().field("items").index(i);
        if path.is_root() {
            item
        } else {
            FieldPath::parse(format!("{}.{}", item.as_str(), path.as_str()))
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.file, self.doc)
    }
}

// === impl Outcome ===

impl Outcome {
    /// The object this document defines (valid or not), when it can be identified.
    pub fn object_ref(&self) -> Option<ObjectRef> {
        match self {
            Outcome::Valid(o) => Some(o.object_ref()),
            Outcome::Invalid(invalid) => Some(invalid.object.clone()),
            Outcome::Unidentified(_) => None,
        }
    }
}

// === impl Document ===

impl Document {
    /// The errors of this document as users see them.
    pub fn errors(&self) -> Vec<ConfigError> {
        let location = self.location.to_string();
        let mk = |object: Option<&ObjectRef>, e: &FieldError| ConfigError {
            location: location.clone(),
            object: object.cloned(),
            error: FieldError::new(self.location.prefix(e.path.clone()), e.message.clone()),
        };
        match &self.outcome {
            Outcome::Valid(_) => Vec::new(),
            Outcome::Invalid(invalid) => invalid
                .errors
                .iter()
                .map(|e| mk(Some(&invalid.object), e))
                .collect(),
            Outcome::Unidentified(e) => vec![mk(None, e)],
        }
    }
}

// === impl ParsedFile ===

impl ParsedFile {
    /// A file that could not be read at all.
    pub fn unreadable(file: &str, message: impl Into<String>) -> Self {
        Self {
            documents: Vec::new(),
            file_errors: vec![file_error(file.to_string(), message)],
        }
    }

    /// Whether the file failed as a whole (its previous objects are kept).
    pub fn is_broken(&self) -> bool {
        !self.file_errors.is_empty()
    }

    /// Every object the file defines, valid or not.
    pub fn object_refs(&self) -> impl Iterator<Item = ObjectRef> + '_ {
        self.documents.iter().filter_map(|d| d.outcome.object_ref())
    }
}

fn file_error(location: String, message: impl Into<String>) -> ConfigError {
    ConfigError {
        location,
        object: None,
        error: FieldError::new(FieldPath::root(), message),
    }
}

/// Parses a file's bytes. `file` is the name used in locations; a name ending `.json` is read
/// as JSON, anything else as YAML.
pub(crate) fn parse(file: &str, bytes: &[u8]) -> ParsedFile {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return ParsedFile::unreadable(file, "not UTF-8 text");
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parsed = ParsedFile::default();
    let values = if file.ends_with(".json") {
        json_values(file, text, &mut parsed.file_errors)
    } else {
        yaml_values(file, text, &mut parsed.file_errors)
    };
    for (doc, value) in values {
        for (item, value) in expand_list(value) {
            let location = Location::new(file, doc, item);
            if let Some(outcome) = decode(&location, value) {
                parsed.documents.push(Document { location, outcome });
            }
        }
    }
    // Kept until the file changes: no spare room.
    parsed.documents = convert::exact(parsed.documents);
    parsed
}

/// JSON: one value, or several concatenated; each is a document.
fn json_values(file: &str, text: &str, errors: &mut Vec<ConfigError>) -> Vec<(usize, Value)> {
    let mut values = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    for (doc, value) in stream.enumerate() {
        match value {
            Ok(v) => values.push((doc, v)),
            Err(e) => {
                let location = Location::new(file, doc, None).to_string();
                errors.push(file_error(location, format!("JSON syntax error: {e}")));
                break;
            }
        }
    }
    values
}

/// YAML: split into `---` documents (so indices count empty documents too and a syntax
/// error names the right line of the file), each parsed on its own.
fn yaml_values(file: &str, text: &str, errors: &mut Vec<ConfigError>) -> Vec<(usize, Value)> {
    let mut values = Vec::new();
    let mut doc = 0;
    for piece in split_documents(text) {
        let options = serde_saphyr::options! { with_snippet: false };
        match serde_saphyr::from_multiple_with_options::<Value>(piece.text, options) {
            // Comments or blank lines before the first `---` are not a document.
            Ok(docs) if docs.is_empty() && piece.leading => {}
            Ok(docs) => {
                let n = docs.len().max(1);
                values.extend(docs.into_iter().enumerate().map(|(i, v)| (doc + i, v)));
                doc += n;
            }
            Err(e) => {
                let location = Location::new(file, doc, None).to_string();
                errors.push(file_error(location, yaml_error(&e, piece.first_line)));
                doc += 1;
            }
        }
    }
    values
}

/// A YAML syntax error, with the line and column in the whole file (not in the piece).
fn yaml_error(e: &serde_saphyr::Error, first_line: usize) -> String {
    let options = serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
        line_offset: first_line as u64,
    };
    format!("YAML syntax error: {}", e.render_with_options(options))
}

/// One `---`-separated piece of a YAML stream.
#[derive(Debug, PartialEq)]
struct Piece<'a> {
    text: &'a str,
    /// Lines before this piece in the file.
    first_line: usize,
    /// The text before the first `---` marker.
    leading: bool,
}

/// Splits a YAML stream at document markers: a line that is `---`, or `---` followed by
/// a space or tab, at column 0 (YAML forbids such lines inside content).
fn split_documents(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 0, 0);
    for (line_no, line) in text.split_inclusive('\n').enumerate() {
        if is_marker(line) && line_no > 0 {
            pieces.push(Piece {
                text: &text[start..offset],
                first_line: start_line,
                leading: pieces.is_empty() && !is_marker(text),
            });
            start = offset;
            start_line = line_no;
        }
        offset += line.len();
    }
    pieces.push(Piece {
        text: &text[start..],
        first_line: start_line,
        leading: pieces.is_empty() && !is_marker(text),
    });
    pieces
}

fn is_marker(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

/// Expands `kind: List` (and typed lists such as `ServiceList`) into their items; anything
/// else is one document. A null document expands to nothing.
fn expand_list(value: Value) -> Vec<(Option<usize>, Value)> {
    if value.is_null() {
        return Vec::new();
    }
    let Some(item_kind) = list_item_kind(&value) else {
        return vec![(None, value)];
    };
    let api_version = value.get("apiVersion").cloned();
    let Some(Value::Array(items)) = value.get("items").cloned() else {
        return vec![(None, value)];
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            // Typed lists from the API server leave kind and apiVersion out of their items.
            if let (Some(kind), Value::Object(map)) = (&item_kind, &mut item) {
                map.entry("kind")
                    .or_insert_with(|| Value::from(kind.as_str()));
                if let Some(v) = &api_version {
                    map.entry("apiVersion").or_insert_with(|| v.clone());
                }
            }
            (Some(i), item)
        })
        .collect()
}

/// `Some(None)` for `kind: List`, `Some(Some(kind))` for a typed list (`ServiceList`).
fn list_item_kind(value: &Value) -> Option<Option<String>> {
    let kind = value.get("kind")?.as_str()?;
    if !value.get("items").is_some_and(Value::is_array) {
        return None;
    }
    match kind {
        "List" => Some(None),
        "ServiceList" | "EndpointSliceList" | "EndpointsList" => {
            Some(kind.strip_suffix("List").map(str::to_string))
        }
        _ => None,
    }
}

/// Decodes, validates and converts one document; `None` for kinds Portolan does not read.
fn decode(location: &Location, value: Value) -> Option<Outcome> {
    let resource = match Resource::decode(value) {
        Ok(Some(r)) => r,
        Ok(None) => {
            tracing::debug!(%location, "skipping a document of a kind Portolan does not read");
            return None;
        }
        Err(DecodeError::Invalid { object, error }) => {
            return Some(Outcome::Invalid(Box::new(Invalid {
                object,
                errors: vec![error],
            })));
        }
        Err(DecodeError::MissingField(path)) => {
            let e = FieldError::new(path, "required field is missing or not a string");
            return Some(Outcome::Unidentified(Box::new(e)));
        }
        Err(e @ DecodeError::NotAnObject) => {
            return Some(Outcome::Unidentified(Box::new(FieldError::new(
                FieldPath::root(),
                e.to_string(),
            ))));
        }
    };
    let errors = portolan_api::validate::validate(&resource);
    if errors.is_empty() {
        Some(Outcome::Valid(convert::to_object(&resource)))
    } else {
        Some(Outcome::Invalid(Box::new(Invalid {
            object: resource.object_ref(),
            errors,
        })))
    }
}

#[cfg(test)]
#[path = "document_tests.rs"]
mod tests;
