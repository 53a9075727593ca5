//! UDP sockets.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::UdpSocket;

use crate::endpoint::{Endpoint, Family, Proto, display_addr};
use crate::error::{Error, Result};
use crate::limits::{MAX_DATAGRAM, MAX_DATAGRAM_V6};

/// Binds a UDP socket on `addr`, dual-stack for IPv6.
///
/// `SO_REUSEADDR` is deliberately not set: for UDP on Linux it would let a second server bind the
/// same port and silently share its datagrams, and UDP has no TIME_WAIT to work around.
///
/// # Errors
/// [`Error::Bind`] naming the address.
pub fn bind_addr(addr: SocketAddr) -> Result<UdpSocket> {
    let bind = || -> std::io::Result<UdpSocket> {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            socket.set_only_v6(false)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        UdpSocket::from_std(socket.into())
    };
    bind().map_err(|source| Error::Bind {
        endpoint: display_addr(Proto::Udp, addr),
        source,
    })
}

/// Resolves `endpoint` and binds a UDP socket there.
///
/// # Errors
/// [`Error::Resolve`] or [`Error::Bind`].
pub async fn listen(endpoint: &Endpoint, family: Family) -> Result<UdpSocket> {
    bind_addr(endpoint.resolve_one(family).await?)
}

/// Resolves a peer endpoint to the address datagrams go to: for a name of both families, its
/// IPv4 address, the one a server bound to that name listens on.
///
/// # Errors
/// [`Error::Resolve`].
pub async fn resolve_peer(endpoint: &Endpoint, family: Family) -> Result<SocketAddr> {
    endpoint.resolve_one(family).await
}

/// The largest payload one datagram to `peer` can carry: [`MAX_DATAGRAM`] over IPv4 (an
/// IPv4-mapped IPv6 address included), [`MAX_DATAGRAM_V6`] over IPv6.
pub fn max_payload(peer: SocketAddr) -> usize {
    if canonical(peer).is_ipv4() {
        MAX_DATAGRAM
    } else {
        MAX_DATAGRAM_V6
    }
}

/// `addr` with an IPv4-mapped IPv6 address (`[::ffff:127.0.0.1]:5000`, how a dual-stack socket
/// sees an IPv4 peer) given as the IPv4 address it is (`127.0.0.1:5000`).
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The wildcard address of `peer`'s family with port 0: what a client binds before sending.
pub fn any_local_for(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

/// Binds an ephemeral local port and connects it to `peer`, so the kernel filters out datagrams
/// from anyone else and reports ICMP "port unreachable" as `ConnectionRefused` on the next read.
///
/// # Errors
/// [`Error::Bind`] or [`Error::Connect`].
pub async fn connect(peer: SocketAddr) -> Result<UdpSocket> {
    let socket = bind_addr(any_local_for(peer))?;
    socket
        .connect(peer)
        .await
        .map_err(|source| Error::Connect {
            endpoint: display_addr(Proto::Udp, peer),
            source,
        })?;
    Ok(socket)
}

/// Receives one datagram into `buf`, waiting for it if `socket` is blocking. `Ok(None)` means
/// there was no sender: the socket's reading side was shut down (which wakes a blocked receive).
///
/// # Errors
/// What the receive reports, e.g. an ICMP error left by an earlier send.
pub fn recv_from(
    socket: &std::net::UdpSocket,
    buf: &mut [u8],
) -> io::Result<Option<(usize, SocketAddr)>> {
    // SAFETY: the slice is initialised, and a receive only writes initialised bytes into it.
    let uninit = unsafe { &mut *(std::ptr::from_mut(buf) as *mut [MaybeUninit<u8>]) };
    let (len, from) = SockRef::from(socket).recv_from(uninit)?;
    Ok(from.as_socket().map(|peer| (len, peer)))
}
