//! The Kubernetes source: one kube-runtime watcher (list + watch, retried with backoff) per
//! watched kind and namespace, each driving a [`KindFeed`] into the sink
//! ([`portolan_model::source::SourceSink`]: in `portolan serve`, the pipeline's index writer).
//!
//! While the API server is away the watchers retry with client-go's backoff and the index
//! keeps the last known state; errors are logged, counted, and published in [`SourceState`]
//! (`/debug/sources`). [`KubernetesSource`] tells the sink it is synced once every watcher has
//! completed its first list, and down while any watcher's last request failed.

use crate::feed::KindFeed;
use crate::kinds;
use crate::view::ClusterView;
use futures::{Stream, StreamExt};
use kube::core::DynamicObject;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use portolan_api::Kind;
use portolan_model::source::{Source, SourceHealth, SourceSink};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The source of `portolan serve --kubernetes`: watchers of the watched kinds in the watched
/// namespaces, started by [`Source::run`].
pub struct KubernetesSource {
    client: Client,
    namespaces: Vec<String>,
    view: ClusterView,
    /// Every watcher's state, published while running.
    state: watch::Sender<SourceState>,
}

/// The state of every watcher, by reporter name (`kubernetes/Service`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SourceState {
    pub watchers: BTreeMap<String, WatcherState>,
}

/// One watcher: whether it has listed once, whether its last request worked, its errors.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WatcherState {
    pub synced: bool,
    pub up: bool,
    /// Watch and list errors so far (each retried with backoff).
    pub errors: u64,
    pub last_error: Option<String>,
}

/// The running watchers.
pub struct Watchers {
    pub state: watch::Receiver<SourceState>,
    tasks: Vec<JoinHandle<()>>,
}

// === impl SourceState ===

impl SourceState {
    /// Every watcher has completed its first list.
    pub fn synced(&self) -> bool {
        !self.watchers.is_empty() && self.watchers.values().all(|w| w.synced)
    }

    /// Every watcher's last request worked.
    pub fn up(&self) -> bool {
        self.watchers.values().all(|w| w.up)
    }

    /// `reporter: error` for each watcher that is down.
    pub fn errors(&self) -> Vec<String> {
        self.watchers
            .iter()
            .filter(|(_, w)| !w.up)
            .filter_map(|(name, w)| w.last_error.as_ref().map(|e| format!("{name}: {e}")))
            .collect()
    }
}

// === impl KubernetesSource ===

impl KubernetesSource {
    /// Watches `namespaces` (empty: all), recording custom resources in `view`.
    pub fn new(client: Client, namespaces: &[String], view: ClusterView) -> Self {
        Self {
            client,
            namespaces: namespaces.to_vec(),
            view,
            state: watch::Sender::new(SourceState::default()),
        }
    }

    /// Every watcher's state (`/debug/sources`, the status writer's wait for the first lists).
    pub fn state(&self) -> watch::Receiver<SourceState> {
        self.state.subscribe()
    }
}

impl Source for KubernetesSource {
    /// The watchers retry every failure with backoff: running never fails.
    type Error = std::convert::Infallible;

    /// Starts the watchers and reports their sync and health until dropped.
    async fn run(self, sink: Arc<dyn SourceSink>) -> Result<(), Self::Error> {
        let watchers = Watchers::spawn(self.client, &self.namespaces, sink.clone(), self.view);
        let mut state = watchers.state.clone();
        let mut synced = false;
        loop {
            let s = state.borrow_and_update().clone();
            if s.synced() && !synced {
                tracing::info!(watchers = s.watchers.len(), "Kubernetes source synced");
                synced = true;
                sink.synced();
            }
            sink.health(if s.up() {
                SourceHealth::up()
            } else {
                SourceHealth::down(s.errors().join("; "))
            });
            self.state.send_replace(s);
            if state.changed().await.is_err() {
                return Ok(());
            }
        }
    }
}

// === impl Watchers ===

impl Watchers {
    /// Starts one watcher per watched kind and namespace (`namespaces` empty: all).
    pub fn spawn(
        client: Client,
        namespaces: &[String],
        sink: Arc<dyn SourceSink>,
        view: ClusterView,
    ) -> Self {
        let scopes: Vec<Option<&str>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().map(|n| Some(n.as_str())).collect()
        };
        let all: &[Option<&str>] = &[None];
        let feeds: Vec<(KindFeed, Option<&str>)> = kinds::WATCHED
            .iter()
            .flat_map(|&kind| {
                let view = view.clone();
                let scopes = if kinds::cluster_scoped(kind) {
                    all
                } else {
                    &scopes[..]
                };
                scopes
                    .iter()
                    .map(move |&ns| (KindFeed::new(kind, ns, view.clone()), ns))
            })
            .collect();
        let initial = SourceState {
            watchers: feeds
                .iter()
                .map(|(feed, _)| (feed.reporter().to_string(), WatcherState::default()))
                .collect(),
        };
        let (state_tx, state) = watch::channel(initial);
        let tasks = feeds
            .into_iter()
            .map(|(feed, ns)| {
                let stream = watch_stream(client.clone(), feed.kind(), ns);
                tokio::spawn(run_feed(stream, feed, sink.clone(), state_tx.clone()))
            })
            .collect();
        Self { state, tasks }
    }

    /// Waits until every watcher has listed once.
    pub async fn synced(&mut self) {
        let _ = self.state.wait_for(SourceState::synced).await;
    }

    pub fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        self.abort();
    }
}

/// The list+watch stream of one kind in one namespace (or all), retried with backoff.
pub fn watch_stream(
    client: Client,
    kind: Kind,
    namespace: Option<&str>,
) -> impl Stream<Item = Result<Event<DynamicObject>, watcher::Error>> + Send + 'static {
    let resource = kinds::api_resource(kind);
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client, ns, &resource),
        None => Api::all_with(client, &resource),
    };
    let mut config = watcher::Config::default();
    if let Some(fields) = kinds::field_selector(kind) {
        config = config.fields(&fields);
    }
    watcher::watcher(api, config).default_backoff()
}

/// Drives one feed into the sink until its stream ends; the index keeps what it has through
/// errors.
pub async fn run_feed<S>(
    stream: S,
    mut feed: KindFeed,
    sink: Arc<dyn SourceSink>,
    state: watch::Sender<SourceState>,
) where
    S: Stream<Item = Result<Event<DynamicObject>, watcher::Error>>,
{
    let reporter = feed.reporter().to_string();
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                let handled = feed.handle(event);
                sink.write(&reporter, handled.changes);
                if handled.first_sync {
                    tracing::info!(watcher = %reporter, "listed");
                }
                let synced = feed.synced();
                state.send_if_modified(|s| {
                    let w = s.watchers.entry(reporter.clone()).or_default();
                    let before = w.clone();
                    w.synced = synced;
                    w.up = true;
                    *w != before
                });
            }
            Err(e) if kinds::optional(feed.kind()) && unavailable(&e).is_some() => {
                let why = unavailable(&e).unwrap_or_default();
                not_installed(&mut feed, &sink, &state, &reporter, why);
            }
            Err(e) => {
                tracing::warn!(watcher = %reporter, error = %e, "watch failed; keeping the last known state and retrying with backoff");
                state.send_modify(|s| {
                    let w = s.watchers.entry(reporter.clone()).or_default();
                    w.up = false;
                    w.errors += 1;
                    w.last_error = Some(e.to_string());
                });
            }
        }
    }
}

/// Why an optional kind's list cannot be had: 404 (its CRD is not installed) or 403 (the
/// RBAC of an older chart does not grant it). `None` for any other failure.
fn unavailable(e: &watcher::Error) -> Option<&'static str> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s)) => match s.code {
            404 => Some("not served (CRD not installed)"),
            403 => Some("forbidden (RBAC does not grant listing it)"),
            _ => None,
        },
        _ => None,
    }
}

/// An optional kind whose list cannot be had: an empty list (the feed syncs, and deletes what
/// it held if the CRD went away), the watcher counts as up; it keeps retrying with backoff.
fn not_installed(
    feed: &mut KindFeed,
    sink: &Arc<dyn SourceSink>,
    state: &watch::Sender<SourceState>,
    reporter: &str,
    why: &str,
) {
    if !feed.synced() {
        tracing::warn!(watcher = %reporter, reason = why, "cannot list; treated as empty until it can");
    }
    feed.handle(Event::Init);
    let handled = feed.handle(Event::InitDone);
    sink.write(reporter, handled.changes);
    state.send_modify(|s| {
        let w = s.watchers.entry(reporter.to_string()).or_default();
        w.synced = true;
        w.up = true;
        w.last_error = Some(why.to_string());
    });
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
