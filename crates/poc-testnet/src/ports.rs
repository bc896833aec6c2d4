//! Free loopback ports, chosen by the kernel.
//!
//! The port is free when returned; another process could take it before the
//! node binds it, which on a test machine's loopback does not happen in
//! practice.

use std::net::SocketAddr;

use crate::Error;

/// The port the kernel chose for a socket bound to 127.0.0.1:0 (`bound`
/// is its local address, or why there is none).
fn kernel_chosen(protocol: &str, bound: std::io::Result<SocketAddr>) -> Result<u16, Error> {
    bound
        .map(|address| address.port())
        .map_err(Error::io(format!(
            "cannot bind a loopback {protocol} socket"
        )))
}

/// A free UDP port on 127.0.0.1 (QUIC listens on UDP).
pub fn try_free_udp_port() -> Result<u16, Error> {
    kernel_chosen(
        "UDP",
        std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()),
    )
}

/// [`try_free_udp_port`], panicking if none can be had.
pub fn free_udp_port() -> u16 {
    try_free_udp_port().unwrap_or_else(|e| panic!("{e}"))
}

/// A free TCP port on 127.0.0.1 (for HTTP endpoints: metrics, public pages).
pub fn try_free_tcp_port() -> Result<u16, Error> {
    kernel_chosen(
        "TCP",
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()),
    )
}

/// [`try_free_tcp_port`], panicking if none can be had.
pub fn free_tcp_port() -> u16 {
    try_free_tcp_port().unwrap_or_else(|e| panic!("{e}"))
}
