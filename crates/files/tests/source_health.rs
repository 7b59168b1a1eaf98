//! The watched directory goes away and comes back: the last good objects stay (nothing is
//! deleted), the source reports itself down with the reason, and once the directory is back
//! the source is up again and edits flow. Waits are bounded polls, never fixed sleeps.

mod support;

use portolan_files::FileSource;
use portolan_model::source::{Source, SourceHealth};
use std::time::Duration;
use support::ChannelSink;
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(15);

fn service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{port: {port}}}]}}\n"
    )
}

async fn health_becomes(rx: &mut watch::Receiver<SourceHealth>, up: bool) -> SourceHealth {
    tokio::time::timeout(WAIT, rx.wait_for(|h| h.up == up))
        .await
        .expect("health changed in time")
        .expect("watch running")
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_directory_is_reported_down_keeps_objects_and_recovers() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("config");
    let away = parent.path().join("config-away");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("a.yaml"), service("a", 80)).expect("write");

    let (sink, mut reported) = ChannelSink::new();
    let (rx, health) = (&mut reported.changes, &mut reported.health);
    let task = tokio::spawn(FileSource::new(&dir).run(sink));
    let initial = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("initial scan in time")
        .expect("initial scan");
    assert_eq!(initial.apply.len(), 1);
    assert!(health.borrow().up);
    // The source says it synced right after it wrote the initial scan.
    tokio::time::timeout(WAIT, reported.synced.wait_for(|s| *s))
        .await
        .expect("synced once the initial scan is written")
        .expect("sink alive");

    std::fs::rename(&dir, &away).expect("rename away");
    let down = health_becomes(health, false).await;
    let why = down.error.expect("a reason");
    assert!(why.contains("config"), "{why}");
    // Nothing was sent while the directory is gone: no deletes of the last good objects.
    while let Ok(changes) = rx.try_recv() {
        assert!(changes.delete.is_empty(), "deleted {:?}", changes.delete);
    }

    // Back, with an edit made meanwhile: the source is up again and the edit flows.
    std::fs::write(away.join("b.yaml"), service("b", 81)).expect("write");
    std::fs::rename(&away, &dir).expect("rename back");
    assert!(health_becomes(health, true).await.error.is_none());
    let changes = tokio::time::timeout(WAIT, async {
        loop {
            let c = rx.recv().await.expect("watch running");
            assert!(c.delete.is_empty(), "deleted {:?}", c.delete);
            if !c.apply.is_empty() {
                return c;
            }
        }
    })
    .await
    .expect("the edit arrives in time");
    let names: Vec<String> = changes.apply.iter().map(|o| o.object_ref().name).collect();
    assert_eq!(names, ["b"]);

    // And later edits are watched again (the watcher was set up anew).
    std::fs::write(dir.join("c.yaml"), service("c", 82)).expect("write");
    let later = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the later edit arrives in time")
        .expect("watch running");
    let names: Vec<String> = later.apply.iter().map(|o| o.object_ref().name).collect();
    assert_eq!(names, ["c"]);
    task.abort();
}
