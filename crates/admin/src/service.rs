//! The `portolan.admin.v1.Admin` service: read-only views of the xDS cache's status table and
//! snapshots.

use std::sync::Arc;

use portolan_xds::{Cache, ProxyStatus, ResourceType, Snapshot, TypeStatus};
use serde_json::json;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::proto::admin_server::{Admin, AdminServer};
use crate::proto::{
    ConfigDumpRequest, ConfigDumpResponse, ProxyStatusRequest, ProxyStatusResponse, ResourceDump,
    TypeDump,
};
use crate::redact::redact_secrets;

/// The admin API over one cache.
#[derive(Clone, Debug)]
pub struct AdminService {
    cache: Arc<Cache>,
}

// === impl AdminService ===

impl AdminService {
    pub fn new(cache: Arc<Cache>) -> Self {
        Self { cache }
    }

    /// The tonic service, ready for `Router::add_service`.
    pub fn into_server(self) -> AdminServer<Self> {
        AdminServer::new(self)
    }

    /// Every connected stream (of `node_id` when not empty), sorted by node id then stream.
    pub fn proxy_status(&self, node_id: &str) -> ProxyStatusResponse {
        let mut rows: Vec<ProxyStatus> = self
            .cache
            .proxies()
            .into_iter()
            .filter(|row| node_id.is_empty() || row.node_id == node_id)
            .collect();
        rows.sort_by(|a, b| (&a.node_id, &a.stream).cmp(&(&b.node_id, &b.stream)));
        let streams = rows
            .iter()
            .map(|row| convert::proxy_stream(row, self.cache.get(&row.group).as_deref()))
            .collect();
        ProxyStatusResponse { streams }
    }

    /// The resources of the proxy's group and the proxy's state per type; `NOT_FOUND` when no
    /// stream of that node is connected.
    pub fn config_dump(&self, node_id: &str) -> Result<ConfigDumpResponse, Status> {
        let rows: Vec<ProxyStatus> = self
            .cache
            .proxies()
            .into_iter()
            .filter(|row| row.node_id == node_id)
            .collect();
        let Some(first) = rows.first() else {
            return Err(Status::not_found(format!(
                "no connected proxy with node id {node_id:?}"
            )));
        };
        let group = first.group.clone();
        let snapshot = self.cache.get(&group);
        let types = ResourceType::SERVED
            .into_iter()
            .map(|ty| type_dump(ty, &rows, snapshot.as_deref()))
            .collect();
        Ok(ConfigDumpResponse {
            node_id: node_id.to_string(),
            group,
            types,
        })
    }
}

/// One type of the group's snapshot, with the first status any of the node's streams has for it.
fn type_dump(ty: ResourceType, rows: &[ProxyStatus], snapshot: Option<&Snapshot>) -> TypeDump {
    let status: Option<&TypeStatus> = rows
        .iter()
        .flat_map(|row| &row.types)
        .find(|t| t.type_url == ty.type_url());
    let resources = snapshot
        .map(|s| s.resources(ty).values().map(|r| resource_dump(r)).collect())
        .unwrap_or_default();
    TypeDump {
        type_url: ty.type_url().to_string(),
        version: snapshot
            .map(|s| s.version(ty).to_string())
            .unwrap_or_default(),
        status: status.map(|t| convert::type_status(t, snapshot)),
        resources,
    }
}

fn resource_dump(resource: &portolan_xds::Resource) -> ResourceDump {
    let mut body = portolan_envoy_json::any_to_json(&resource.to_any())
        .unwrap_or_else(|e| json!({"error": e.to_string()}));
    redact_secrets(&mut body);
    ResourceDump {
        name: resource.name().to_string(),
        version: resource.version().to_string(),
        json: body.to_string(),
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn proxy_status(
        &self,
        request: Request<ProxyStatusRequest>,
    ) -> Result<Response<ProxyStatusResponse>, Status> {
        Ok(Response::new(AdminService::proxy_status(
            self,
            &request.get_ref().node_id,
        )))
    }

    async fn config_dump(
        &self,
        request: Request<ConfigDumpRequest>,
    ) -> Result<Response<ConfigDumpResponse>, Status> {
        AdminService::config_dump(self, &request.get_ref().node_id).map(Response::new)
    }
}
