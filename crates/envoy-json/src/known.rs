//! Whether the descriptor knows every field of a decoded message, through nested messages,
//! lists, maps and `Any`s (whose payload is decoded with its `@type`).

use crate::{JsonError, decode};
use prost_reflect::{DynamicMessage, MapKey, ReflectMessage, Value};

const ANY: &str = "google.protobuf.Any";

/// Fails on the first field, at any depth, that `msg`'s descriptor does not know.
pub(crate) fn check(msg: &DynamicMessage) -> Result<(), JsonError> {
    check_at(msg, &mut Vec::new())
}

fn check_at(msg: &DynamicMessage, path: &mut Vec<String>) -> Result<(), JsonError> {
    let desc = msg.descriptor();
    if let Some(unknown) = msg.unknown_fields().next() {
        return Err(JsonError::UnknownField {
            type_name: desc.full_name().to_string(),
            number: unknown.number(),
            path: display(path, desc.full_name()),
        });
    }
    if desc.full_name() == ANY {
        return check_any(msg, path);
    }
    for (field, value) in msg.fields() {
        path.push(field.name().to_string());
        check_value(value, path)?;
        path.pop();
    }
    Ok(())
}

fn check_value(value: &Value, path: &mut Vec<String>) -> Result<(), JsonError> {
    match value {
        Value::Message(msg) => check_at(msg, path),
        Value::List(items) => items.iter().try_for_each(|item| check_value(item, path)),
        Value::Map(entries) => entries.iter().try_for_each(|(key, item)| {
            path.push(format!("[{}]", key_text(key)));
            let checked = check_value(item, path);
            path.pop();
            checked
        }),
        _ => Ok(()),
    }
}

/// Decodes the payload of an `Any` with its `@type` and checks it.
fn check_any(any: &DynamicMessage, path: &mut Vec<String>) -> Result<(), JsonError> {
    let any = any
        .transcode_to::<envoy_types::pb::google::protobuf::Any>()
        .map_err(|source| JsonError::Decode {
            type_name: ANY.to_string(),
            source,
        })?;
    let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
    let inner = decode(type_name, &any.value)?;
    path.push(format!("({type_name})"));
    let checked = check_at(&inner, path);
    path.pop();
    checked
}

fn key_text(key: &MapKey) -> String {
    match key {
        MapKey::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn display(path: &[String], root: &str) -> String {
    if path.is_empty() {
        root.to_string()
    } else {
        path.join(".")
    }
}
