//! A sink that hands what a source reports to the test: changes on a channel, health and sync
//! on watches.

use portolan_model::source::{Changes, SourceHealth, SourceSink};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// The test's end of a [`ChannelSink`].
pub struct Reported {
    pub changes: mpsc::UnboundedReceiver<Changes>,
    pub health: watch::Receiver<SourceHealth>,
    pub synced: watch::Receiver<bool>,
}

pub struct ChannelSink {
    changes: mpsc::UnboundedSender<Changes>,
    health: watch::Sender<SourceHealth>,
    synced: watch::Sender<bool>,
}

impl ChannelSink {
    pub fn new() -> (Arc<Self>, Reported) {
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let (health, health_rx) = watch::channel(SourceHealth::up());
        let (synced, synced_rx) = watch::channel(false);
        let sink = Arc::new(Self {
            changes,
            health,
            synced,
        });
        let reported = Reported {
            changes: changes_rx,
            health: health_rx,
            synced: synced_rx,
        };
        (sink, reported)
    }
}

impl SourceSink for ChannelSink {
    fn write(&self, reporter: &str, changes: Changes) -> bool {
        assert_eq!(reporter, portolan_files::REPORTER);
        let changed = !changes.is_empty();
        let _ = self.changes.send(changes);
        changed
    }

    fn health(&self, health: SourceHealth) {
        self.health.send_replace(health);
    }

    fn synced(&self) {
        self.synced.send_replace(true);
    }
}
