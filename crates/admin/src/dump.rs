//! `portolan config-dump` output: the ConfigDump response as one JSON document, each resource's
//! JSON parsed back so it nests.

use serde_json::{Value, json};

use crate::proto::{ConfigDumpResponse, ResourceDump, TypeDump, TypeStatus};

/// The dump as JSON: `{node_id, group, types: [{type_url, version, status, resources}]}`.
pub fn to_json(dump: &ConfigDumpResponse) -> Value {
    json!({
        "node_id": dump.node_id,
        "group": dump.group,
        "types": dump.types.iter().map(type_json).collect::<Vec<_>>(),
    })
}

fn type_json(dump: &TypeDump) -> Value {
    json!({
        "type_url": dump.type_url,
        "version": dump.version,
        "status": dump.status.as_ref().map(status_json),
        "resources": dump.resources.iter().map(resource_json).collect::<Vec<_>>(),
    })
}

fn status_json(status: &TypeStatus) -> Value {
    json!({
        "sent_version": status.sent_version,
        "acked_version": status.acked_version,
        "current_version": status.current_version,
        "last_nack": status.last_nack.as_ref().map(|n| json!({
            "version": n.version,
            "message": n.message,
            "at": n.at,
        })),
    })
}

fn resource_json(resource: &ResourceDump) -> Value {
    let body = serde_json::from_str(&resource.json).unwrap_or(Value::String(resource.json.clone()));
    json!({"name": resource.name, "version": resource.version, "resource": body})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_nest_as_json() {
        let dump = ConfigDumpResponse {
            node_id: "n".into(),
            group: "g".into(),
            types: vec![TypeDump {
                type_url: "t".into(),
                version: "1".into(),
                status: None,
                resources: vec![ResourceDump {
                    name: "a".into(),
                    version: "v".into(),
                    json: r#"{"name":"a"}"#.into(),
                }],
            }],
        };
        let value = to_json(&dump);
        assert_eq!(value["types"][0]["resources"][0]["resource"]["name"], "a");
        assert_eq!(value["types"][0]["status"], Value::Null);
        assert_eq!(value["group"], "g");
    }
}
