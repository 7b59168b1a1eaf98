//! Envoy socket addresses.

use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};

/// A TCP socket address (`ip` is an IPv4 or IPv6 literal).
pub(crate) fn socket_address(ip: impl Into<String>, port: u16) -> Address {
    with_protocol(ip, port, socket_address::Protocol::Tcp)
}

/// A UDP socket address (a UDP listener binds it).
pub(crate) fn udp_socket_address(ip: impl Into<String>, port: u16) -> Address {
    with_protocol(ip, port, socket_address::Protocol::Udp)
}

fn with_protocol(ip: impl Into<String>, port: u16, protocol: socket_address::Protocol) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            protocol: protocol as i32,
            address: ip.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}
