//! gRPC messages over an HTTP/2 body, as both ends of an xDS stream read and write them.
//!
//! * [`Messages`]: the messages of a body, decoded with no buffer kept between them (the xDS
//!   server reads its requests with it, the simulated clients their responses).
//! * [`frame`]: one message with its gRPC prefix, ready to be a DATA frame of a body.
//!
//! The wire format is gRPC's: each message is a 5-byte prefix (a compression flag, always 0
//! here, and a big-endian u32 length) and the message's protobuf encoding.

#![forbid(unsafe_code)]

mod frame;
mod messages;

pub use frame::{PREFIX, frame};
pub use messages::Messages;
