//! A watched directory re-reads only the files its events name: whatever the edits (a file
//! written twice at once, renames, an editor's write-to-temp-then-rename, directories deleted,
//! moved in or out, symbolic links), the world the sink is left with equals a fresh full scan of
//! the directory. Real files, the real notify watcher; waits are bounded polls, never sleeps.

mod support;

use portolan_api::ObjectRef;
use portolan_files::FileSource;
use portolan_model::Object;
use portolan_model::source::{Changes, Source};
use std::collections::BTreeMap;
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

fn write(dir: &Path, rel: &str, content: &str) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, content).expect("write");
}

/// What the sink was told, applied in order.
#[derive(Default)]
struct World {
    objects: BTreeMap<ObjectRef, Object>,
    last: Changes,
}

impl World {
    fn apply(&mut self, changes: Changes) {
        for object in &changes.apply {
            self.objects.insert(object.object_ref(), object.clone());
        }
        for object in &changes.delete {
            self.objects.remove(object);
        }
        self.last = changes;
    }
}

/// The objects a fresh full scan of `dir` finds.
fn fresh(dir: &Path) -> BTreeMap<ObjectRef, Object> {
    let changes = FileSource::new(dir).rescan().expect("fresh scan");
    changes
        .apply
        .into_iter()
        .map(|o| (o.object_ref(), o))
        .collect()
}

/// A running source over `dir` and the world its sink holds.
struct Watched {
    rx: mpsc::UnboundedReceiver<Changes>,
    world: World,
    task: tokio::task::JoinHandle<Result<(), portolan_files::FilesError>>,
}

impl Watched {
    async fn start(dir: &Path) -> Self {
        let (sink, reported) = ChannelSink::new();
        let mut rx = reported.changes;
        let task = tokio::spawn(FileSource::new(dir).run(sink));
        let initial = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("initial scan")
            .expect("sent");
        let mut synced = reported.synced;
        tokio::time::timeout(WAIT, synced.wait_for(|s| *s))
            .await
            .expect("synced after the initial scan")
            .expect("sink alive");
        assert!(reported.health.borrow().up);
        let mut world = World::default();
        world.apply(initial);
        Self { rx, world, task }
    }

    /// Receives until the world equals `want`, failing after [`WAIT`].
    async fn until(&mut self, want: &BTreeMap<ObjectRef, Object>) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while &self.world.objects != want {
            let next = tokio::time::timeout_at(deadline, self.rx.recv()).await;
            let Ok(Some(changes)) = next else {
                panic!(
                    "the world never became {want:?}; it is {:?}",
                    self.world.objects
                );
            };
            self.world.apply(changes);
        }
    }

    /// Receives until the world equals a fresh full scan of `dir` (taken now).
    async fn until_fresh(&mut self, dir: &Path) {
        let want = fresh(dir);
        self.until(&want).await;
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn names(objects: &BTreeMap<ObjectRef, Object>) -> Vec<&str> {
    objects.keys().map(|r| r.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_twice_at_once_ends_with_its_last_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    for i in 0..20 {
        write(d, &format!("s{i}.yaml"), &service(&format!("s{i}"), 80));
    }
    let mut w = Watched::start(d).await;
    write(d, "s3.yaml", &service("s3", 81));
    write(d, "s3.yaml", &service("s3", 82));
    write(d, "s7.yaml", &service("s7", 83));
    w.until_fresh(d).await;
    let s3 = w.world.objects.iter().find(|(r, _)| r.name == "s3");
    assert!(
        format!("{s3:?}").contains("82"),
        "the last write wins: {s3:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renames_move_delete_and_create_objects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "a.yaml", &service("a", 80));
    write(d, "b.yaml", &service("b", 80));
    write(d, "notes.txt", &service("c", 80));
    let mut w = Watched::start(d).await;
    assert_eq!(names(&w.world.objects), ["a", "b"]);

    // A manifest renamed to another manifest name: the object stays.
    std::fs::rename(d.join("a.yaml"), d.join("z.yaml")).expect("rename");
    // A manifest renamed to a name Portolan does not read: its object goes.
    std::fs::rename(d.join("b.yaml"), d.join("b.yaml.bak")).expect("rename");
    // A file renamed to a manifest name: its object comes.
    std::fs::rename(d.join("notes.txt"), d.join("c.json.yaml")).expect("rename");
    w.until_fresh(d).await;
    assert_eq!(names(&w.world.objects), ["a", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editors_writes_through_temporary_files_are_seen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "a.yaml", &service("a", 80));
    write(d, "b.yaml", &service("b", 80));
    let mut w = Watched::start(d).await;

    // kubectl cp / atomic writers: a hidden temporary file renamed over the manifest.
    write(d, ".a.yaml.tmp", &service("a", 81));
    std::fs::rename(d.join(".a.yaml.tmp"), d.join("a.yaml")).expect("rename");
    // vim with backups: the manifest moved to a backup, a new one written, the backup removed.
    std::fs::rename(d.join("b.yaml"), d.join("b.yaml~")).expect("rename");
    write(d, "b.yaml", &service("b", 82));
    std::fs::remove_file(d.join("b.yaml~")).expect("remove");
    w.until_fresh(d).await;
    let ports = format!("{:?}", w.world.objects);
    assert!(ports.contains("81") && ports.contains("82"), "{ports}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_deleted_moved_in_and_out_end_in_the_right_world() {
    let parent = tempfile::tempdir().expect("tempdir");
    let d = &parent.path().join("config");
    let outside = parent.path().join("outside");
    write(d, "top.yaml", &service("top", 80));
    write(d, "mesh/a.yaml", &service("a", 80));
    write(d, "mesh/deep/b.yaml", &service("b", 80));
    write(d, "other/c.yaml", &service("c", 80));
    write(&outside, "in/d.yaml", &service("d", 80));
    let mut w = Watched::start(d).await;
    assert_eq!(names(&w.world.objects), ["a", "b", "c", "top"]);

    std::fs::remove_dir_all(d.join("mesh")).expect("remove dir");
    w.until_fresh(d).await;
    assert_eq!(names(&w.world.objects), ["c", "top"]);

    // Moved in from outside the tree, renamed inside it, moved out of it.
    std::fs::rename(outside.join("in"), d.join("in")).expect("move in");
    w.until_fresh(d).await;
    assert_eq!(names(&w.world.objects), ["c", "d", "top"]);
    std::fs::rename(d.join("in"), d.join("renamed")).expect("rename dir");
    std::fs::rename(d.join("other"), outside.join("other")).expect("move out");
    w.until_fresh(d).await;
    assert_eq!(names(&w.world.objects), ["d", "top"]);
    // A file written into a directory that was just moved in is seen too.
    write(d, "renamed/e.yaml", &service("e", 80));
    w.until_fresh(d).await;
    assert_eq!(names(&w.world.objects), ["d", "e", "top"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_edit_names_the_field_and_keeps_the_last_good_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "a.yaml", &service("a", 80));
    write(d, "b.yaml", &service("b", 80));
    let good = fresh(d);
    let mut w = Watched::start(d).await;

    write(d, "a.yaml", &service("a", 0));
    let deadline = tokio::time::Instant::now() + WAIT;
    while w.world.last.errors.is_empty() {
        let next = tokio::time::timeout_at(deadline, w.rx.recv()).await;
        w.world.apply(next.expect("an error").expect("sent"));
    }
    let errors = &w.world.last.errors;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].object.as_ref().map(|o| o.name.as_str()),
        Some("a")
    );
    assert!(
        errors[0].error.path.to_string().contains("port"),
        "names the field: {}",
        errors[0]
    );
    assert_eq!(w.world.objects, good, "the last good a stays");

    // A file that does not parse at all keeps its objects too; fixing it clears the errors.
    write(d, "b.yaml", "kind: [");
    write(d, "a.yaml", &service("a", 81));
    let mut want = fresh(d);
    assert!(!want.keys().any(|r| r.name == "b"), "a fresh scan has no b");
    want.extend(good.into_iter().filter(|(r, _)| r.name == "b"));
    w.until(&want).await;
    write(d, "b.yaml", &service("b", 80));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !w.world.last.errors.is_empty() {
        let next = tokio::time::timeout_at(deadline, w.rx.recv()).await;
        w.world.apply(next.expect("errors cleared").expect("sent"));
    }
    w.until_fresh(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_first_definition_makes_the_duplicate_the_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "a.yaml", &service("x", 80));
    write(d, "b.yaml", &service("x", 81));
    let mut w = Watched::start(d).await;
    assert_eq!(w.world.last.errors.len(), 1, "the duplicate is reported");

    std::fs::remove_file(d.join("a.yaml")).expect("remove");
    w.until_fresh(d).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !w.world.last.errors.is_empty() {
        let next = tokio::time::timeout_at(deadline, w.rx.recv()).await;
        w.world
            .apply(next.expect("duplicate error cleared").expect("sent"));
    }
    assert!(format!("{:?}", w.world.objects).contains("81"));
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_behind_a_symbolic_link_follows_its_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    write(d, "data/a.txt", &service("a", 80));
    write(d, "b.yaml", &service("b", 80));
    std::os::unix::fs::symlink(d.join("data/a.txt"), d.join("a.yaml")).expect("symlink");
    let mut w = Watched::start(d).await;
    assert_eq!(names(&w.world.objects), ["a", "b"]);

    // Only the target's path is reported: the source must still see a.yaml change.
    write(d, "data/a.txt", &service("a", 81));
    w.until_fresh(d).await;
    assert!(format!("{:?}", w.world.objects).contains("81"));
}
