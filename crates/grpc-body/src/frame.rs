//! One message, gRPC-framed.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

/// Length of the gRPC message prefix: a compression flag and a big-endian u32 length.
pub const PREFIX: usize = 5;

/// `message` uncompressed behind its gRPC prefix, in one buffer of exactly its size.
///
/// # Panics
///
/// If the encoding is longer than `u32::MAX` bytes, which gRPC cannot frame.
pub fn frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let prefix_len = u32::try_from(len).expect("a gRPC message is shorter than 4 GiB");
    let mut out = BytesMut::with_capacity(PREFIX + len);
    out.put_u8(0);
    out.put_u32(prefix_len);
    message
        .encode(&mut out)
        .expect("the buffer holds the whole encoding");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

    #[test]
    fn a_frame_is_the_prefix_then_the_encoding() {
        let request = DiscoveryRequest {
            version_info: "v1".into(),
            resource_names: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let encoded = request.encode_to_vec();
        let framed = frame(&request);
        assert_eq!(framed[0], 0, "not compressed");
        assert_eq!(&framed[1..PREFIX], &(encoded.len() as u32).to_be_bytes());
        assert_eq!(&framed[PREFIX..], &encoded[..]);
        assert_eq!(framed.len(), PREFIX + encoded.len());
    }
}
