//! The crate's errors: test files that cannot be read or are invalid, and an Envoy run that
//! cannot start.

/// Why route tests could not run (a failing expectation is not an error).
#[derive(Debug, thiserror::Error)]
pub enum RouteTestError {
    #[error("{path}: cannot read: {message}")]
    Read { path: String, message: String },
    #[error("{file}: YAML syntax error: {message}")]
    Syntax { file: String, message: String },
    #[error("{location}: RouteTest {name}: {path}: {message}")]
    Invalid {
        location: String,
        name: String,
        path: String,
        message: String,
    },
    #[error("envoy: {0}")]
    Envoy(String),
    #[error("stand-in upstreams: {0}")]
    StandIn(String),
}
