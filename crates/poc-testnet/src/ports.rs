//! Free loopback ports, chosen by the kernel.
//!
//! The port is free when returned; another process could take it before the
//! node binds it, which on a test machine's loopback does not happen in
//! practice.

use crate::Error;

/// A free UDP port on 127.0.0.1 (QUIC listens on UDP).
pub fn try_free_udp_port() -> Result<u16, Error> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")
        .map_err(Error::io("cannot bind a loopback UDP socket"))?;
    let address = socket
        .local_addr()
        .map_err(Error::io("cannot read a loopback UDP socket's address"))?;
    Ok(address.port())
}

/// [`try_free_udp_port`], panicking if none can be had.
pub fn free_udp_port() -> u16 {
    try_free_udp_port().unwrap_or_else(|e| panic!("{e}"))
}

/// A free TCP port on 127.0.0.1 (for HTTP endpoints: metrics, public pages).
pub fn try_free_tcp_port() -> Result<u16, Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(Error::io("cannot bind a loopback TCP socket"))?;
    let address = listener
        .local_addr()
        .map_err(Error::io("cannot read a loopback TCP socket's address"))?;
    Ok(address.port())
}

/// [`try_free_tcp_port`], panicking if none can be had.
pub fn free_tcp_port() -> u16 {
    try_free_tcp_port().unwrap_or_else(|e| panic!("{e}"))
}
