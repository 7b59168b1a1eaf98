//! Envoy's Client Status Discovery Service (CSDS, `envoy.service.status.v3`), read-only over the
//! cache: for every connected node (or those matching the request's node matchers), one
//! `ClientConfig` with a `GenericXdsConfig` per resource its streams cover, its status derived
//! from what the stream was sent, ACKed and NACKed.
//!
//! `xds_config` is the resource as the cache holds it now; `version_info` is the version the
//! client last ACKed for the resource's type.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use envoy_types::pb::envoy::admin::v3::{ClientResourceStatus, UpdateFailureState};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::status::v3::client_config::GenericXdsConfig;
use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_server::{
    ClientStatusDiscoveryService, ClientStatusDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::status::v3::{
    ClientConfig, ClientStatusRequest, ClientStatusResponse, ConfigStatus,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::matcher::v3::{NodeMatcher, StringMatcher};
use envoy_types::pb::google::protobuf::Timestamp;
use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::cache::Cache;
use crate::resource::ResourceType;
use crate::snapshot::Snapshot;
use crate::status::{ProxyStatus, SyncState, TypeStatus};

/// The CSDS service over one cache.
#[derive(Clone, Debug)]
pub struct Csds {
    cache: Arc<Cache>,
    stop: watch::Receiver<bool>,
}

type ClientStatusStream =
    Pin<Box<dyn Stream<Item = Result<ClientStatusResponse, Status>> + Send + 'static>>;

// === impl Csds ===

impl Csds {
    /// CSDS over `cache`; streams end when `stop` turns true.
    pub fn new(cache: Arc<Cache>, stop: watch::Receiver<bool>) -> Self {
        Self { cache, stop }
    }

    /// The tonic service, ready for `Router::add_service`.
    pub fn into_server(self) -> ClientStatusDiscoveryServiceServer<Self> {
        ClientStatusDiscoveryServiceServer::new(self)
    }

    /// The status of every connected node the request's matchers select.
    pub fn client_status(
        &self,
        request: &ClientStatusRequest,
    ) -> Result<ClientStatusResponse, Status> {
        let mut nodes: BTreeMap<String, Vec<ProxyStatus>> = BTreeMap::new();
        for row in self.cache.proxies() {
            if matches_any(&request.node_matchers, &row.node_id)? {
                nodes.entry(row.node_id.clone()).or_default().push(row);
            }
        }
        let config = nodes
            .values()
            .map(|rows| self.client_config(rows, request.exclude_resource_contents))
            .collect();
        Ok(ClientStatusResponse { config })
    }

    fn client_config(&self, rows: &[ProxyStatus], exclude_contents: bool) -> ClientConfig {
        let mut generic_xds_configs = Vec::new();
        for row in rows {
            let snapshot = self.cache.get(&row.group);
            for status in &row.types {
                generic_xds_configs.extend(generic_configs(
                    status,
                    snapshot.as_deref(),
                    exclude_contents,
                ));
            }
        }
        let Some(first) = rows.first() else {
            return ClientConfig::default();
        };
        ClientConfig {
            node: Some(Node {
                id: first.node_id.clone(),
                cluster: first.group.clone(),
                user_agent_name: first.client.clone(),
                ..Default::default()
            }),
            generic_xds_configs,
            ..Default::default()
        }
    }
}

/// One entry per resource of the snapshot the stream's type covers.
fn generic_configs(
    status: &TypeStatus,
    snapshot: Option<&Snapshot>,
    exclude_contents: bool,
) -> Vec<GenericXdsConfig> {
    let Some(snapshot) = snapshot else {
        return Vec::new();
    };
    let state = status.sync_state(Some(snapshot));
    let config_status = match state {
        SyncState::NotSent => ConfigStatus::NotSent,
        SyncState::Synced => ConfigStatus::Synced,
        SyncState::Stale => ConfigStatus::Stale,
        SyncState::Nacked => ConfigStatus::Error,
    };
    let client_status = match state {
        SyncState::Nacked => ClientResourceStatus::Nacked,
        _ if status.acked_version.is_some() => ClientResourceStatus::Acked,
        _ => ClientResourceStatus::Requested,
    };
    let error_state = match (state, &status.last_nack) {
        (SyncState::Nacked, Some(nack)) => Some(UpdateFailureState {
            failed_configuration: None,
            last_update_attempt: Some(timestamp(nack.at)),
            details: nack.message.clone(),
            version_info: nack.version.clone(),
        }),
        _ => None,
    };
    status
        .covered(snapshot)
        .into_iter()
        .map(|resource| GenericXdsConfig {
            type_url: status.type_url.clone(),
            name: resource.name().to_string(),
            version_info: status.acked_version.clone().unwrap_or_default(),
            // Secrets hold private keys: their names and versions only, never their contents.
            xds_config: (!exclude_contents && status.type_url != ResourceType::Secret.type_url())
                .then(|| resource.to_any()),
            config_status: config_status as i32,
            client_status: client_status as i32,
            error_state: error_state.clone(),
            ..Default::default()
        })
        .collect()
}

fn timestamp(time: SystemTime) -> Timestamp {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or_default(),
    }
}

/// No matchers select every node; otherwise any matcher may select it.
fn matches_any(matchers: &[NodeMatcher], node_id: &str) -> Result<bool, Status> {
    if matchers.is_empty() {
        return Ok(true);
    }
    for matcher in matchers {
        if !matcher.node_metadatas.is_empty() {
            return Err(Status::invalid_argument(
                "node_matchers: node_metadatas is not supported; match on node_id",
            ));
        }
        let selected = match &matcher.node_id {
            Some(m) => string_matches(m, node_id)?,
            None => true,
        };
        if selected {
            return Ok(true);
        }
    }
    Ok(false)
}

fn string_matches(matcher: &StringMatcher, value: &str) -> Result<bool, Status> {
    let fold = |s: &str| {
        if matcher.ignore_case {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    };
    let value = fold(value);
    Ok(match &matcher.match_pattern {
        Some(MatchPattern::Exact(p)) => value == fold(p),
        Some(MatchPattern::Prefix(p)) => value.starts_with(&fold(p)),
        Some(MatchPattern::Suffix(p)) => value.ends_with(&fold(p)),
        Some(MatchPattern::Contains(p)) => value.contains(&fold(p)),
        Some(MatchPattern::SafeRegex(_) | MatchPattern::Custom(_)) => {
            return Err(Status::invalid_argument(
                "node_matchers: only exact, prefix, suffix and contains node_id matchers are supported",
            ));
        }
        None => true,
    })
}

#[tonic::async_trait]
impl ClientStatusDiscoveryService for Csds {
    type StreamClientStatusStream = ClientStatusStream;

    async fn stream_client_status(
        &self,
        request: Request<Streaming<ClientStatusRequest>>,
    ) -> Result<Response<ClientStatusStream>, Status> {
        let csds = self.clone();
        let mut stop = self.stop.clone();
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let responses = request
            .into_inner()
            .map(move |request| request.and_then(|r| csds.client_status(&r)))
            .take_until(Box::pin(stopped));
        Ok(Response::new(Box::pin(responses)))
    }

    async fn fetch_client_status(
        &self,
        request: Request<ClientStatusRequest>,
    ) -> Result<Response<ClientStatusResponse>, Status> {
        self.client_status(request.get_ref()).map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(id: &str) -> NodeMatcher {
        NodeMatcher {
            node_id: Some(StringMatcher {
                match_pattern: Some(MatchPattern::Exact(id.into())),
                ignore_case: false,
            }),
            node_metadatas: vec![],
        }
    }

    #[test]
    fn secrets_are_dumped_without_their_contents() {
        use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
        let mut b = Snapshot::builder();
        b.add_cluster(&crate::testing::cluster("a"))
            .add_load_assignment(&crate::testing::cla("a", 1))
            .add_secret(&Secret {
                name: "portolan-workload-cert".into(),
                r#type: None,
            });
        let snapshot = b.build().expect("consistent");
        let status = |ty: ResourceType| TypeStatus {
            type_url: ty.type_url().to_string(),
            sent_version: Some(snapshot.version(ty).to_string()),
            acked_version: Some(snapshot.version(ty).to_string()),
            last_nack: None,
            names: None,
        };
        let secrets = generic_configs(&status(ResourceType::Secret), Some(&snapshot), false);
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0].name, "portolan-workload-cert");
        assert!(
            secrets[0].xds_config.is_none(),
            "a private key never leaves"
        );
        let clusters = generic_configs(&status(ResourceType::Cluster), Some(&snapshot), false);
        assert!(clusters[0].xds_config.is_some());
    }

    #[test]
    fn node_matchers_select_by_id() {
        assert!(matches_any(&[], "a").expect("ok"));
        assert!(matches_any(&[exact("b"), exact("a")], "a").expect("ok"));
        assert!(!matches_any(&[exact("b")], "a").expect("ok"));
        let prefix = StringMatcher {
            match_pattern: Some(MatchPattern::Prefix("SIDE".into())),
            ignore_case: true,
        };
        assert!(string_matches(&prefix, "sidecar-1").expect("ok"));
        let regex = StringMatcher {
            match_pattern: Some(MatchPattern::SafeRegex(Default::default())),
            ignore_case: false,
        };
        assert!(string_matches(&regex, "x").is_err());
    }
}
