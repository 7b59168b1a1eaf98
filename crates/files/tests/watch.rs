//! The files source running with the real file-system watcher: the initial scan arrives
//! first (then the source is synced), then changes on disk arrive as they happen. Waits are
//! bounded polls of the channel, never fixed sleeps.

mod support;

use portolan_files::FileSource;
use portolan_model::source::{Changes, Source};
use std::path::Path;
use std::time::Duration;
use support::ChannelSink;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);

fn service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{port: {port}}}]}}\n"
    )
}

fn names(objects: &Changes) -> Vec<String> {
    objects.apply.iter().map(|o| o.object_ref().name).collect()
}

/// Receives until a Changes satisfies `want`, failing after [`WAIT`].
async fn recv_until(
    rx: &mut mpsc::UnboundedReceiver<Changes>,
    want: impl Fn(&Changes) -> bool,
) -> Changes {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let next = tokio::time::timeout_at(deadline, rx.recv()).await;
        let changes = next
            .expect("timed out waiting for changes")
            .expect("watch ended");
        if want(&changes) {
            return changes;
        }
    }
}

/// Writes through a temporary hidden file and a rename, as editors and `kubectl cp` do.
fn write_atomic(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(tmp, dir.join(name)).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_the_initial_scan_then_every_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.yaml"), service("a", 80)).expect("write");
    let (sink, mut reported) = ChannelSink::new();
    let rx = &mut reported.changes;
    let task = tokio::spawn(FileSource::new(dir.path()).run(sink));

    let initial = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("initial scan")
        .expect("sent");
    assert_eq!(names(&initial), ["a"]);
    // The source says it synced right after it wrote the initial scan.
    tokio::time::timeout(WAIT, reported.synced.wait_for(|s| *s))
        .await
        .expect("synced once the initial scan is written")
        .expect("sink alive");
    assert!(reported.health.borrow().up);

    std::fs::write(dir.path().join("b.yaml"), service("b", 80)).expect("write");
    let c = recv_until(rx, |c| !c.apply.is_empty()).await;
    assert_eq!(names(&c), ["b"]);
    assert!(c.delete.is_empty());

    write_atomic(dir.path(), "a.yaml", &service("a", 0));
    let c = recv_until(rx, |c| !c.errors.is_empty()).await;
    assert!(
        c.is_empty(),
        "an invalid edit keeps the last good object: {c:?}"
    );

    std::fs::remove_file(dir.path().join("b.yaml")).expect("remove");
    let c = recv_until(rx, |c| !c.delete.is_empty()).await;
    assert_eq!(
        c.delete.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["b"]
    );

    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_the_last_good_state_while_the_directory_is_gone() {
    let parent = tempfile::tempdir().expect("tempdir");
    let dir = parent.path().join("config");
    let away = parent.path().join("away");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("a.yaml"), service("a", 80)).expect("write");
    let (sink, mut reported) = ChannelSink::new();
    let rx = &mut reported.changes;
    let task = tokio::spawn(FileSource::new(&dir).run(sink));
    let initial = tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("initial scan")
        .expect("sent");
    assert_eq!(names(&initial), ["a"]);

    // The directory is moved away (the old watch follows it there) and a new directory takes
    // its place: the watcher must follow the path, and nothing is deleted in between.
    let next = parent.path().join("next");
    std::fs::create_dir(&next).expect("mkdir");
    std::fs::write(next.join("a.yaml"), service("a", 80)).expect("write");
    std::fs::write(next.join("b.yaml"), service("b", 80)).expect("write");
    std::fs::rename(&dir, &away).expect("move away");
    std::fs::write(away.join("ignored.yaml"), service("ignored", 80)).expect("write");
    std::fs::rename(&next, &dir).expect("move the new one in");

    let c = recv_until(rx, |c| !c.is_empty()).await;
    assert_eq!(names(&c), ["b"]);
    assert!(
        c.delete.is_empty(),
        "nothing was deleted while the directory was away: {c:?}"
    );

    // and changes in the new directory are seen
    std::fs::write(dir.join("c.yaml"), service("c", 80)).expect("write");
    let c = recv_until(rx, |c| !c.is_empty()).await;
    assert_eq!(names(&c), ["c"]);
    task.abort();
}

#[tokio::test]
async fn a_missing_directory_fails_the_initial_scan() {
    let parent = tempfile::tempdir().expect("tempdir");
    let (sink, reported) = ChannelSink::new();
    let result = FileSource::new(parent.path().join("missing"))
        .run(sink)
        .await;
    assert!(result.is_err());
    assert!(!*reported.synced.borrow(), "never synced");
}

/// A settle far longer than the test's wait: only a change known complete is read in time.
const LONG_SETTLE: Duration = Duration::from_secs(120);

/// A source on an empty directory with [`LONG_SETTLE`], its initial scan received.
async fn watching_with_a_long_settle() -> (
    tempfile::TempDir,
    support::Reported,
    tokio::task::JoinHandle<Result<(), portolan_files::FilesError>>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sink, mut reported) = ChannelSink::new();
    let source = FileSource::new(dir.path()).with_settle(LONG_SETTLE);
    let task = tokio::spawn(source.run(sink));
    recv_until(&mut reported.changes, |_| true).await;
    (dir, reported, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_closed_by_its_writer_is_read_without_the_settle() {
    let (dir, mut reported, task) = watching_with_a_long_settle().await;
    let rx = &mut reported.changes;

    // Written and closed (std::fs::write): complete, read at once, not after 120 s.
    std::fs::write(dir.path().join("a.yaml"), service("a", 80)).expect("write");
    let c = recv_until(rx, |c| !c.apply.is_empty()).await;
    assert_eq!(names(&c), ["a"]);
    // Renamed into place: complete too.
    write_atomic(dir.path(), "b.yaml", &service("b", 80));
    let c = recv_until(rx, |c| !c.apply.is_empty()).await;
    assert_eq!(names(&c), ["b"]);
    // Removed.
    std::fs::remove_file(dir.path().join("a.yaml")).expect("remove");
    let c = recv_until(rx, |c| !c.delete.is_empty()).await;
    assert_eq!(c.delete.len(), 1);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_still_open_for_writing_is_read_once_its_writer_closes_it() {
    use std::io::Write;
    let (dir, mut reported, task) = watching_with_a_long_settle().await;
    let rx = &mut reported.changes;

    // Half a document, then a pause longer than the default settle, then the rest: the
    // half is never read (it would be an invalid document or a Service without its ports).
    let content = service("a", 80);
    let (first, rest) = content.split_at(content.len() / 2);
    let mut file = std::fs::File::create(dir.path().join("a.yaml")).expect("create");
    file.write_all(first.as_bytes()).expect("write");
    file.flush().expect("flush");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        rx.try_recv().is_err(),
        "nothing is read while the file is open for writing"
    );
    file.write_all(rest.as_bytes()).expect("write");
    drop(file);
    let c = recv_until(rx, |c| !c.is_empty() || !c.errors.is_empty()).await;
    assert_eq!(names(&c), ["a"], "{c:?}");
    assert!(c.errors.is_empty(), "the complete file only: {c:?}");
    task.abort();
}
