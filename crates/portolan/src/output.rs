//! Standard output of the subcommands that print (`bootstrap`, `render`, `crds`, `validate`,
//! `proxy-status`, `config-dump`). `println!` panics once the reader has gone away
//! (`portolan bootstrap ... | head -1`: Rust ignores SIGPIPE, so the write fails with EPIPE);
//! [`print`] stops printing quietly instead, and the subcommand ends with the exit status it
//! would have had.

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout and flushes it. A reader that has gone away is not an error:
/// nothing printed after that can reach anyone.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}

/// [`print`]s `text` and a newline.
pub fn println(text: &str) -> std::io::Result<()> {
    print(&format!("{text}\n"))
}
