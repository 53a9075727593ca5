//! UDP sockets.
//!
//! A server answers each datagram through a [`DatagramServer`]. A socket bound to one address
//! is one as it is: its replies can only leave from that address. A socket bound to a wildcard
//! (`0.0.0.0`, `[::]`) is wrapped in a [`WildcardSocket`], which learns from each datagram the
//! address it was sent to and sends the reply from there. Left to itself, the kernel would send
//! it from the address it prefers for the way back, and a client that sent to another of the
//! host's addresses (`127.0.0.2`, one of several on a network card) would drop it as coming
//! from a stranger.
//!
//! Unlike a connected socket, a [`WildcardSocket`] hears of no datagram it sent that could not
//! be delivered (ICMP port unreachable) unless it asks ([`WildcardSocket::report_errors`]):
//! `talk` asks (on one address too, when it has no peer to connect to), `echo` does not.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

use libc::c_int;

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};
use tokio::io::Interest;
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

/// Resolves `endpoint` and binds a server's UDP socket there. On a wildcard address it also
/// asks the kernel to report each datagram's destination ([`WildcardSocket`]) at once: the
/// report is made as a datagram arrives, and one that arrived before would be answered from
/// the kernel's choice.
///
/// # Errors
/// [`Error::Resolve`] or [`Error::Bind`].
pub async fn listen(endpoint: &Endpoint, family: Family) -> Result<UdpSocket> {
    let addr = endpoint.resolve_one(family).await?;
    let socket = bind_addr(addr)?;
    if is_wildcard(addr) {
        // Failing, it fails again in `WildcardSocket::new`, which says so.
        let _ = report_destinations(&socket);
    }
    Ok(socket)
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

/// A UDP socket a server answers datagrams on: each reply goes to a datagram's sender, from the
/// address that datagram was sent to.
pub trait DatagramServer: Send + Sync {
    /// Where a datagram arrived, as much as its reply needs to leave from there. The default
    /// leaves it to the kernel: what a peer not heard from yet gets.
    type ReplyFrom: Copy + Default + PartialEq + fmt::Debug + Send + Sync + 'static;

    /// Waits for the next datagram, copied into `buf`: its length, its sender, and where it
    /// arrived. Cancel-safe: a datagram is taken off the socket only by the call that returns it.
    fn recv_from(
        &self,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<(usize, SocketAddr, Self::ReplyFrom)>> + Send;

    /// Sends `buf` to `peer` from where `from` says a datagram arrived.
    fn send_to(
        &self,
        buf: &[u8],
        peer: SocketAddr,
        from: Self::ReplyFrom,
    ) -> impl Future<Output = io::Result<usize>> + Send;
}

/// Bound to one address, a socket replies from it: plain `recv_from` and `send_to`.
impl DatagramServer for UdpSocket {
    type ReplyFrom = ();

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, ())> {
        let (len, peer) = UdpSocket::recv_from(self, buf).await?;
        Ok((len, peer, ()))
    }

    async fn send_to(&self, buf: &[u8], peer: SocketAddr, (): ()) -> io::Result<usize> {
        UdpSocket::send_to(self, buf, peer).await
    }
}

/// Whether a socket bound to `local` receives datagrams sent to several addresses, and so needs
/// a [`WildcardSocket`] to answer each from the right one.
pub fn is_wildcard(local: SocketAddr) -> bool {
    local.ip().is_unspecified()
}

/// A UDP socket bound to a wildcard address that replies from the address each datagram was
/// sent to.
///
/// It asks the kernel for each datagram's destination (`IP_PKTINFO` over IPv4,
/// `IPV6_RECVPKTINFO` over IPv6, which on a dual-stack `[::]` socket reports an IPv4 datagram's
/// destination as an IPv4-mapped address), receives with `recvmsg`, and sends each reply with
/// `sendmsg` carrying that address as its source.
/// A datagram sent to a broadcast or multicast address, which cannot be a reply's source, is
/// answered with plain `send_to`, as is any reply `sendmsg` fails to send.
///
/// Control messages are built and parsed in buffers on the stack: no allocation per datagram.
///
/// Not being connected, the socket hears of no datagram it sent that could not be delivered
/// (ICMP port unreachable) unless it asks: see [`WildcardSocket::report_errors`].
#[derive(Debug)]
pub struct WildcardSocket {
    socket: UdpSocket,
    is_v6: bool,
    /// The kernel queues the errors of datagrams sent ([`WildcardSocket::report_errors`]).
    reports_errors: bool,
}

/// Where a datagram to a [`WildcardSocket`] arrived: the address it was sent to (an IPv4 one as
/// IPv4-mapped on an IPv6 socket) and the index of the interface it came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The datagram's destination: the reply's source.
    pub local: IpAddr,
    /// The interface it came in on; a reply is pinned to it only from a link-local address.
    pub ifindex: u32,
}

impl WildcardSocket {
    /// Turns on the reports of each datagram's destination on `socket`, which is for one bound to
    /// a wildcard address. On one address it works too, but pays for nothing but its error
    /// reports ([`Self::report_errors`]): `talk` uses one there for those, without a peer to
    /// connect to.
    ///
    /// # Errors
    /// The kernel refuses the socket option; the socket is handed back, to be used as it is.
    pub fn new(socket: UdpSocket) -> Result<Self, (io::Error, UdpSocket)> {
        match report_destinations(&socket) {
            Ok(is_v6) => Ok(Self {
                socket,
                is_v6,
                reports_errors: false,
            }),
            Err(err) => Err((err, socket)),
        }
    }

    /// The socket's bound address.
    ///
    /// # Errors
    /// As `getsockname`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Asks the kernel to report each datagram sent from this socket that could not be
    /// delivered (ICMP port unreachable, and the like): `IP_RECVERR`, and `IPV6_RECVERR` as well
    /// on an IPv6 socket, whose IPv4 datagrams only `IP_RECVERR` covers. The kernel queues each
    /// report on the socket's error queue, and [`DatagramServer::recv_from`] returns it as an
    /// error once no datagram is waiting: an [`Undelivered`], whose kind is the kernel's error
    /// (`ConnectionRefused` for a port nobody listens on) and which says where the datagram went
    /// ([`undelivered_to`]).
    ///
    /// # Errors
    /// The kernel refuses a socket option: the socket reports no error, or, if it took
    /// `IPV6_RECVERR`, only those of IPv6 datagrams.
    pub fn report_errors(&mut self) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        if self.is_v6 {
            set_flag(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVERR)?;
            self.reports_errors = true;
        }
        set_flag(fd, libc::IPPROTO_IP, libc::IP_RECVERR)?;
        self.reports_errors = true;
        Ok(())
    }

    /// One `recvmsg`, without waiting.
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<Arrival>)> {
        let mut control = Control::new();
        let (len, addr, control_len) = self.recvmsg(buf, &mut control, 0)?;
        let peer = addr
            .as_socket()
            .ok_or_else(|| io::Error::other("datagram from a sender that is not an IP address"))?;
        let control = &control.bytes[..control_len];
        Ok((len, peer, parse_arrival(control).and_then(reply_source)))
    }

    /// [`Self::try_recv`], and once no datagram is waiting (or the kernel returns the error it
    /// holds pending, the last one queued), the next report on the error queue, as an
    /// [`Undelivered`] error. Without a report either, what `try_recv` said: `WouldBlock`
    /// (which has the caller wait for the socket's next readiness, so an emptied error queue
    /// is not read again and again), or the pending error.
    fn try_recv_or_error(
        &self,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, Option<Arrival>)> {
        self.try_recv(buf)
            .map_err(|err| self.try_recv_error().unwrap_or(err))
    }

    /// The next report on the error queue, if there is one: an [`Undelivered`] error, or, for a
    /// report without a destination or an error in it, an error saying so (it is off the queue
    /// all the same, and the next read goes on to the one after).
    fn try_recv_error(&self) -> Option<io::Error> {
        let mut control = Control::new();
        // Only the report is wanted, not the start of the datagram that goes with it.
        let (_, addr, control_len) = self
            .recvmsg(&mut [], &mut control, libc::MSG_ERRQUEUE)
            .ok()?;
        let error = parse_extended_err(&control.bytes[..control_len]);
        Some(match (addr.as_socket(), error) {
            (Some(to), Some(error)) => Undelivered {
                to: canonical(to),
                error,
            }
            .into(),
            _ => io::Error::other("an unreadable report of a datagram not delivered"),
        })
    }

    /// One `recvmsg` with `flags`, without waiting: a datagram into `buf` (with
    /// `MSG_ERRQUEUE`, the start of one that could not be delivered) and its control messages
    /// into `control`. Says its length, the address that came with it (its sender; with
    /// `MSG_ERRQUEUE`, where it was sent), and how many bytes of `control` were filled.
    fn recvmsg(
        &self,
        buf: &mut [u8],
        control: &mut Control,
        flags: c_int,
    ) -> io::Result<(usize, SockAddr, usize)> {
        let fd = self.socket.as_raw_fd();
        // SAFETY: `try_init` hands us zeroed storage for any socket address and its size;
        // `recvmsg` writes at most that much there, and says how much it wrote.
        let ((len, control_len), addr) = unsafe {
            SockAddr::try_init(|storage, storage_len| {
                let mut iov = libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                };
                // SAFETY: all zeros is a valid (empty) msghdr.
                let mut msg: libc::msghdr = mem::zeroed();
                msg.msg_name = storage.cast();
                msg.msg_namelen = *storage_len;
                msg.msg_iov = &raw mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control.bytes.as_mut_ptr().cast();
                msg.msg_controllen = control.bytes.len() as _;
                // SAFETY: every pointer in `msg` is to a live buffer of the length given.
                let len = libc::recvmsg(fd, &raw mut msg, flags);
                if len < 0 {
                    return Err(io::Error::last_os_error());
                }
                *storage_len = msg.msg_namelen;
                Ok((len as usize, msg.msg_controllen as usize))
            })?
        };
        // A kernel never reports more than the buffer holds; the bound only keeps that a fact.
        Ok((len, addr, control_len.min(CONTROL_LEN)))
    }

    /// One `sendmsg` from `from`, without waiting.
    fn try_send(&self, buf: &[u8], peer: &SockAddr, from: Arrival) -> io::Result<usize> {
        let mut control = Control::new();
        let len = write_pktinfo(&mut control, from, self.is_v6);
        let bufs = [IoSlice::new(buf)];
        let msg = socket2::MsgHdr::new()
            .with_addr(peer)
            .with_buffers(&bufs)
            .with_control(&control.bytes[..len]);
        let socket = SockRef::from(&self.socket);
        match socket.sendmsg(&msg, 0) {
            Err(err) if self.reports_errors && err.kind() != io::ErrorKind::WouldBlock => {
                tracing::trace!("send failed ({err}); sending again");
                socket.sendmsg(&msg, 0)
            }
            sent => sent,
        }
    }
}

/// Reporting errors ([`WildcardSocket::report_errors`]), the socket also holds the last error
/// queued as pending, and the next send fails with it (a port unreachable as
/// `ConnectionRefused`) without sending: it is news of an earlier datagram, which the error
/// queue reports to [`DatagramServer::recv_from`]. So a send that fails is tried once more,
/// and fails again only for its own sake.
impl DatagramServer for WildcardSocket {
    type ReplyFrom = Option<Arrival>;

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, Option<Arrival>)> {
        if self.reports_errors {
            // A report queued makes the socket poll as in error (`EPOLLERR`), not readable.
            return self
                .socket
                .async_io(Interest::READABLE | Interest::ERROR, || {
                    self.try_recv_or_error(buf)
                })
                .await;
        }
        self.socket
            .async_io(Interest::READABLE, || self.try_recv(buf))
            .await
    }

    async fn send_to(
        &self,
        buf: &[u8],
        peer: SocketAddr,
        from: Option<Arrival>,
    ) -> io::Result<usize> {
        if let Some(from) = from {
            let to = SockAddr::from(peer);
            match self
                .socket
                .async_io(Interest::WRITABLE, || self.try_send(buf, &to, from))
                .await
            {
                Ok(sent) => return Ok(sent),
                Err(err) => {
                    tracing::debug!(%peer, local = %from.local, "reply from the address sent to failed ({err}); sending it from the kernel's choice");
                }
            }
        }
        match self.socket.send_to(buf, peer).await {
            Err(err) if self.reports_errors => {
                tracing::trace!(%peer, "send failed ({err}); sending again");
                self.socket.send_to(buf, peer).await
            }
            sent => sent,
        }
    }
}

/// A datagram sent from a [`WildcardSocket`] that reports errors, which could not be
/// delivered: where it was sent, and the kernel's error (`ConnectionRefused` for ICMP port
/// unreachable), whose kind the `io::Error` it travels in has.
#[derive(Debug)]
pub struct Undelivered {
    /// Where the datagram was sent (an IPv4 address as IPv4 on a dual-stack socket).
    pub to: SocketAddr,
    /// Why it was not delivered.
    pub error: io::Error,
}

impl fmt::Display for Undelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "datagram to {} not delivered: {}", self.to, self.error)
    }
}

impl std::error::Error for Undelivered {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<Undelivered> for io::Error {
    fn from(undelivered: Undelivered) -> Self {
        io::Error::new(undelivered.error.kind(), undelivered)
    }
}

/// Where the datagram went whose loss `err` reports, if `err` says: an [`Undelivered`] does,
/// the pending error of a connected socket does not (it can only be its peer).
pub fn undelivered_to(err: &io::Error) -> Option<SocketAddr> {
    err.get_ref()?
        .downcast_ref::<Undelivered>()
        .map(|undelivered| undelivered.to)
}

/// Asks the kernel to report the destination of each datagram `socket` receives: `IP_PKTINFO`
/// on an IPv4 socket, `IPV6_RECVPKTINFO` on an IPv6 one (IPv4 datagrams on a dual-stack socket
/// included). Says whether the socket is IPv6.
fn report_destinations(socket: &UdpSocket) -> io::Result<bool> {
    let is_v6 = socket.local_addr()?.is_ipv6();
    let (level, name) = if is_v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO)
    } else {
        (libc::IPPROTO_IP, libc::IP_PKTINFO)
    };
    set_flag(socket.as_raw_fd(), level, name)?;
    Ok(is_v6)
}

/// Sets an `int` socket option to 1.
fn set_flag(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the option value is a live `int` of the size given.
    let result = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const one).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Room for control messages: the one a [`WildcardSocket`] asks for (an `in6_pktinfo`, the
/// larger, takes 40 bytes with its header) and as much again, should the kernel add another.
/// One the buffer cannot hold is cut off, and its datagram answered from the kernel's choice.
/// A report read off the error queue takes the most: on an IPv6 socket, its `IPV6_PKTINFO` (40
/// bytes) and `IPV6_RECVERR` (64: a `sock_extended_err` and the offender's `sockaddr_in6`),
/// 104 in all, an IPv4 datagram's report included; on an IPv4 socket, 32 and 48, 80 in all.
const CONTROL_LEN: usize = 128;

/// A control message buffer, aligned as the `cmsghdr`s in it must be.
#[repr(C)]
struct Control {
    _align: [libc::cmsghdr; 0],
    bytes: [u8; CONTROL_LEN],
}

impl Control {
    fn new() -> Self {
        Self {
            _align: [],
            bytes: [0; CONTROL_LEN],
        }
    }
}

/// The size of a control message's header, padded as its data follows it.
fn cmsg_header_len() -> usize {
    // SAFETY: pure arithmetic.
    unsafe { libc::CMSG_LEN(0) as usize }
}

/// `len` rounded up to the alignment of control messages.
fn cmsg_align(len: usize) -> usize {
    // SAFETY: pure arithmetic.
    unsafe { (libc::CMSG_SPACE(len as libc::c_uint) - libc::CMSG_SPACE(0)) as usize }
}

/// The `IP_PKTINFO` or `IPV6_PKTINFO` among the control messages in `control`, as `recvmsg`
/// filled it; `None` without one, or for an IPv4 datagram not sent to one of our own unicast
/// addresses. A message whose length is shorter than its header, runs past the buffer, or is
/// too short for its data ends the search: the datagram is then answered from the kernel's
/// choice, never read out of bounds.
fn parse_arrival(control: &[u8]) -> Option<Arrival> {
    for (level, kind, data) in control_messages(control) {
        match (level, kind) {
            (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                if data.len() < mem::size_of::<libc::in_pktinfo>() {
                    return None;
                }
                // SAFETY: the data holds an `in_pktinfo`; it is copied out unaligned.
                let info: libc::in_pktinfo =
                    unsafe { data.as_ptr().cast::<libc::in_pktinfo>().read_unaligned() };
                let sent_to = Ipv4Addr::from(info.ipi_addr.s_addr.to_ne_bytes());
                let spec_dst = Ipv4Addr::from(info.ipi_spec_dst.s_addr.to_ne_bytes());
                // Sent to one of our addresses, the two are the same. Sent to a broadcast
                // (a subnet's too, which its address alone does not tell) or multicast
                // address, `ipi_spec_dst` is the address the kernel would reply from anyway.
                if sent_to != spec_dst {
                    return None;
                }
                return Some(Arrival {
                    local: IpAddr::V4(sent_to),
                    ifindex: u32::try_from(info.ipi_ifindex).unwrap_or(0),
                });
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                if data.len() < mem::size_of::<libc::in6_pktinfo>() {
                    return None;
                }
                // SAFETY: the data holds an `in6_pktinfo`; it is copied out unaligned.
                let info: libc::in6_pktinfo =
                    unsafe { data.as_ptr().cast::<libc::in6_pktinfo>().read_unaligned() };
                return Some(Arrival {
                    local: IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)),
                    ifindex: info.ipi6_ifindex,
                });
            }
            _ => {}
        }
    }
    None
}

/// The control messages in `control`, as `recvmsg` filled it: the level, type and data of
/// each, up to the first whose length is shorter than its header or runs past the buffer.
fn control_messages(control: &[u8]) -> impl Iterator<Item = (c_int, c_int, &[u8])> {
    let header_len = cmsg_header_len();
    let mut at = 0;
    std::iter::from_fn(move || {
        if control.len().saturating_sub(at) < header_len {
            return None;
        }
        // SAFETY: at least a header's worth of bytes is there; it is copied out unaligned.
        let header: libc::cmsghdr = unsafe {
            control[at..]
                .as_ptr()
                .cast::<libc::cmsghdr>()
                .read_unaligned()
        };
        // `size_t` with glibc, `socklen_t` with musl.
        #[allow(clippy::unnecessary_cast)]
        let len = header.cmsg_len as usize;
        if len < header_len || len > control.len() - at {
            return None;
        }
        let data = &control[at + header_len..at + len];
        at += cmsg_align(len);
        Some((header.cmsg_level, header.cmsg_type, data))
    })
}

/// The error in the `IP_RECVERR` or `IPV6_RECVERR` control message among those `recvmsg`
/// filled in `control` when reading the error queue (an IPv6 socket reports an IPv4
/// datagram's as `IPV6_RECVERR`); `None` without one, or with one too short for its data.
fn parse_extended_err(control: &[u8]) -> Option<io::Error> {
    let (_, _, data) = control_messages(control).find(|&(level, kind, _)| {
        matches!(
            (level, kind),
            (libc::IPPROTO_IP, libc::IP_RECVERR) | (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
        )
    })?;
    if data.len() < mem::size_of::<libc::sock_extended_err>() {
        return None;
    }
    // SAFETY: the data holds a `sock_extended_err`; it is copied out unaligned.
    let report: libc::sock_extended_err = unsafe {
        data.as_ptr()
            .cast::<libc::sock_extended_err>()
            .read_unaligned()
    };
    let errno = c_int::try_from(report.ee_errno).ok()?;
    Some(io::Error::from_raw_os_error(errno))
}

/// `arrival` if a reply can leave from its address: not one sent to a broadcast or multicast
/// address (nor, never seen, the wildcard), whose reply leaves from the kernel's choice.
fn reply_source(arrival: Arrival) -> Option<Arrival> {
    let is_usable = match arrival.local.to_canonical() {
        IpAddr::V4(ip) => !(ip.is_broadcast() || ip.is_multicast() || ip.is_unspecified()),
        IpAddr::V6(ip) => !(ip.is_multicast() || ip.is_unspecified()),
    };
    is_usable.then_some(arrival)
}

/// The interface a reply from `from` is pinned to: none (0, the routing table's choice) unless
/// the address alone does not name one, as an IPv6 link-local address does not.
///
/// The interface a datagram came in on is not where its reply must go out: a datagram from the
/// host to one of its own addresses comes in on the interface that owns the address (`eth0`
/// for `fd00::2`, sent from `::1`), and a reply forced out of it to `::1` is dropped without a
/// word; a host routing asymmetrically would lose replies the same way.
fn reply_ifindex(from: Arrival) -> u32 {
    match from.local {
        IpAddr::V6(ip) if ip.is_unicast_link_local() => from.ifindex,
        _ => 0,
    }
}

/// Writes into `control` the `IP_PKTINFO` (`is_v6` false) or `IPV6_PKTINFO` control message
/// that sends a datagram from `from`, and returns its length.
fn write_pktinfo(control: &mut Control, from: Arrival, is_v6: bool) -> usize {
    let (level, kind, data_len) = if is_v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            mem::size_of::<libc::in6_pktinfo>(),
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            mem::size_of::<libc::in_pktinfo>(),
        )
    };
    // SAFETY: all zeros is a valid cmsghdr.
    let mut header: libc::cmsghdr = unsafe { mem::zeroed() };
    header.cmsg_level = level;
    header.cmsg_type = kind;
    header.cmsg_len = (cmsg_header_len() + data_len) as _;
    let space = cmsg_header_len() + cmsg_align(data_len);
    let out = &mut control.bytes[..space];
    out.fill(0);
    // SAFETY: `out` has room for the header and its data (`space` is well under CONTROL_LEN);
    // both are written unaligned.
    unsafe {
        out.as_mut_ptr()
            .cast::<libc::cmsghdr>()
            .write_unaligned(header);
        let data = out.as_mut_ptr().add(cmsg_header_len());
        if is_v6 {
            let local = match from.local {
                IpAddr::V6(ip) => ip,
                IpAddr::V4(ip) => ip.to_ipv6_mapped(),
            };
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: local.octets(),
                },
                ipi6_ifindex: reply_ifindex(from),
            };
            data.cast::<libc::in6_pktinfo>().write_unaligned(info);
        } else {
            let local = match from.local.to_canonical() {
                IpAddr::V4(ip) => ip,
                IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from_ne_bytes(local.octets()),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            data.cast::<libc::in_pktinfo>().write_unaligned(info);
        }
    }
    space
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A wildcard server socket of `bind`'s family, and its port.
    fn wildcard(bind: &str) -> (WildcardSocket, u16) {
        let socket = bind_addr(bind.parse().unwrap()).unwrap();
        let port = socket.local_addr().unwrap().port();
        (WildcardSocket::new(socket).unwrap(), port)
    }

    /// Sends `msg` from a client bound to `client` to `to`, has the server echo it with
    /// `from` (or what it learnt, given `None`), and returns where it arrived and where the
    /// reply came from.
    async fn round_trip(
        server: &WildcardSocket,
        client: &str,
        to: SocketAddr,
        msg: &[u8],
        from: Option<Option<Arrival>>,
    ) -> (Option<Arrival>, SocketAddr) {
        let client = UdpSocket::bind(client).await.unwrap();
        client.send_to(msg, to).await.unwrap();
        let mut buf = vec![0u8; 65_536];
        let (len, peer, arrival) = DatagramServer::recv_from(server, &mut buf).await.unwrap();
        assert_eq!(&buf[..len], msg);
        assert_eq!(peer.port(), client.local_addr().unwrap().port());
        let sent = DatagramServer::send_to(server, &buf[..len], peer, from.unwrap_or(arrival))
            .await
            .unwrap();
        assert_eq!(sent, len);
        let (len, reply_from) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], msg);
        (arrival, reply_from)
    }

    #[tokio::test]
    async fn an_ipv4_wildcard_socket_replies_from_the_address_sent_to() {
        let (server, port) = wildcard("0.0.0.0:0");
        for (to, msg) in [
            ("127.0.0.2", &b"hello"[..]),
            ("127.0.0.1", b""),
            ("127.0.0.3", b"x"),
        ] {
            let to = SocketAddr::new(to.parse().unwrap(), port);
            let (arrival, from) = round_trip(&server, "127.0.0.1:0", to, msg, None).await;
            assert_eq!(arrival.unwrap().local, to.ip());
            assert_eq!(from, to);
        }
    }

    #[tokio::test]
    async fn a_dual_stack_socket_replies_to_ipv4_and_ipv6_from_the_address_sent_to() {
        let (server, port) = wildcard("[::]:0");
        let to = SocketAddr::from(([127, 0, 0, 2], port));
        let (arrival, from) = round_trip(&server, "127.0.0.1:0", to, b"four", None).await;
        // An IPv4 datagram's destination, on an IPv6 socket, is IPv4-mapped.
        assert_eq!(
            arrival.unwrap().local,
            IpAddr::V6(Ipv4Addr::new(127, 0, 0, 2).to_ipv6_mapped())
        );
        assert_eq!(from, to);
        let to = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        let (arrival, from) = round_trip(&server, "[::1]:0", to, b"six", None).await;
        assert_eq!(arrival.unwrap().local, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(from, to);
    }

    /// A reply `sendmsg` cannot send (from an address the host does not have) still goes, from
    /// the kernel's choice; so does one with no arrival to reply from.
    #[tokio::test]
    async fn a_reply_sendmsg_refuses_is_sent_from_the_kernels_choice() {
        let (server, port) = wildcard("0.0.0.0:0");
        let to = SocketAddr::from(([127, 0, 0, 2], port));
        let foreign = Arrival {
            local: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 199)),
            ifindex: 0,
        };
        let kernels = SocketAddr::from(([127, 0, 0, 1], port));
        let (_, from) = round_trip(&server, "127.0.0.1:0", to, b"a", Some(Some(foreign))).await;
        assert_eq!(from, kernels);
        let (_, from) = round_trip(&server, "127.0.0.1:0", to, b"b", Some(None)).await;
        assert_eq!(from, kernels);
    }

    /// A control message buffer holding `messages` (level, type, data), each padded.
    fn control_of(messages: &[(libc::c_int, libc::c_int, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(level, kind, data) in messages {
            // SAFETY: all zeros is a valid cmsghdr.
            let mut header: libc::cmsghdr = unsafe { mem::zeroed() };
            header.cmsg_level = level;
            header.cmsg_type = kind;
            header.cmsg_len = (cmsg_header_len() + data.len()) as _;
            let mut bytes = vec![0u8; cmsg_header_len()];
            // SAFETY: `bytes` holds a header.
            unsafe {
                bytes
                    .as_mut_ptr()
                    .cast::<libc::cmsghdr>()
                    .write_unaligned(header)
            };
            bytes.extend_from_slice(data);
            bytes.resize(cmsg_header_len() + cmsg_align(data.len()), 0);
            out.extend_from_slice(&bytes);
        }
        out
    }

    fn in_pktinfo(ifindex: i32, spec_dst: [u8; 4], addr: [u8; 4]) -> Vec<u8> {
        let info = libc::in_pktinfo {
            ipi_ifindex: ifindex,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from_ne_bytes(spec_dst),
            },
            ipi_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(addr),
            },
        };
        let mut bytes = vec![0u8; mem::size_of::<libc::in_pktinfo>()];
        // SAFETY: `bytes` holds an in_pktinfo.
        unsafe {
            bytes
                .as_mut_ptr()
                .cast::<libc::in_pktinfo>()
                .write_unaligned(info)
        };
        bytes
    }

    #[test]
    fn packet_info_is_found_among_other_control_messages() {
        let info = in_pktinfo(1, [127, 0, 0, 2], [127, 0, 0, 2]);
        let control = control_of(&[
            (libc::SOL_SOCKET, libc::SO_TIMESTAMP, &[7u8; 16][..]),
            (libc::IPPROTO_IP, libc::IP_PKTINFO, &info),
        ]);
        assert_eq!(
            parse_arrival(&control),
            Some(Arrival {
                local: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
                ifindex: 1
            })
        );
        // What `write_pktinfo` builds for IPv6 is what `parse_arrival` reads.
        let from = Arrival {
            local: IpAddr::V6("fe80::1".parse().unwrap()),
            ifindex: 3,
        };
        let mut control = Control::new();
        let len = write_pktinfo(&mut control, from, true);
        assert_eq!(parse_arrival(&control.bytes[..len]), Some(from));
    }

    #[test]
    fn broadcast_and_multicast_destinations_are_answered_from_the_kernels_choice() {
        // Sent to a subnet's broadcast address, the kernel names another address to reply from.
        let info = in_pktinfo(2, [192, 0, 2, 2], [192, 0, 2, 255]);
        assert_eq!(
            parse_arrival(&control_of(&[(libc::IPPROTO_IP, libc::IP_PKTINFO, &info)])),
            None
        );
        for local in [
            "255.255.255.255",
            "224.0.0.1",
            "ff02::1",
            "::ffff:239.1.2.3",
            "::",
        ] {
            let arrival = Arrival {
                local: local.parse().unwrap(),
                ifindex: 1,
            };
            assert_eq!(reply_source(arrival), None, "{local}");
        }
        for local in ["127.0.0.2", "::1", "::ffff:127.0.0.2", "fd00::2"] {
            let arrival = Arrival {
                local: local.parse().unwrap(),
                ifindex: 1,
            };
            assert_eq!(reply_source(arrival), Some(arrival), "{local}");
        }
    }

    #[test]
    fn only_a_link_local_reply_is_pinned_to_its_interface() {
        let arrival = |local: &str| Arrival {
            local: local.parse().unwrap(),
            ifindex: 4,
        };
        assert_eq!(reply_ifindex(arrival("fe80::1")), 4);
        assert_eq!(reply_ifindex(arrival("fd00::2")), 0);
        assert_eq!(reply_ifindex(arrival("127.0.0.2")), 0);
    }

    #[test]
    fn cut_short_or_lying_control_messages_give_no_arrival() {
        let info = in_pktinfo(1, [127, 0, 0, 2], [127, 0, 0, 2]);
        let whole = control_of(&[(libc::IPPROTO_IP, libc::IP_PKTINFO, &info)]);
        assert!(parse_arrival(&whole).is_some());
        // Cut anywhere short of its data's end.
        for len in 0..cmsg_header_len() + info.len() {
            assert_eq!(parse_arrival(&whole[..len]), None, "cut at {len}");
        }
        // A length too short for its data, shorter than its header, zero, or past the buffer.
        let header_len = cmsg_header_len();
        for claimed in [header_len + 4, header_len - 1, 0, whole.len() + 8] {
            let mut lying = whole.clone();
            lying[..mem::size_of::<usize>()].copy_from_slice(&claimed.to_ne_bytes());
            assert_eq!(parse_arrival(&lying), None, "claims {claimed}");
        }
        let short = control_of(&[(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &[0u8; 8][..])]);
        assert_eq!(parse_arrival(&short), None);
    }

    /// A wildcard socket of `bind`'s family that reports errors, and its port.
    fn reporting(bind: &str) -> (WildcardSocket, u16) {
        let (mut server, port) = wildcard(bind);
        server.report_errors().unwrap();
        (server, port)
    }

    /// A loopback UDP address on `ip` nobody listens on.
    fn closed(ip: &str) -> SocketAddr {
        std::net::UdpSocket::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
    }

    /// A datagram to a port nobody listens on comes back from `recv_from` as an error that
    /// says where it went: on an IPv4 socket, and on a dual-stack one for IPv4 and IPv6. The
    /// report wakes a `recv_from` already waiting (it makes the socket poll as in error, not
    /// readable), and once read, `recv_from` waits again rather than return it twice.
    #[tokio::test]
    async fn a_reporting_socket_hears_of_a_datagram_nobody_received() {
        for (bind, ip) in [
            ("0.0.0.0:0", "127.0.0.1"),
            ("[::]:0", "127.0.0.1"),
            ("[::]:0", "::1"),
        ] {
            let (server, _) = reporting(bind);
            let closed = closed(ip);
            let mut buf = vec![0u8; 64];
            let wait = Duration::from_secs(10);
            let (received, sent) = tokio::join!(
                tokio::time::timeout(wait, DatagramServer::recv_from(&server, &mut buf)),
                async {
                    tokio::task::yield_now().await;
                    DatagramServer::send_to(&server, b"anyone?", closed, None).await
                }
            );
            sent.unwrap();
            let err = received.expect("the report woke the wait").unwrap_err();
            assert_eq!(
                err.kind(),
                io::ErrorKind::ConnectionRefused,
                "{bind} {closed}: {err}"
            );
            assert_eq!(undelivered_to(&err), Some(closed), "{bind}");
            let again = DatagramServer::recv_from(&server, &mut buf);
            let again = tokio::time::timeout(Duration::from_millis(100), again).await;
            assert!(again.is_err(), "{bind}: {again:?}");
        }
    }

    /// After a report, the kernel fails the next send with it, without sending: that send is
    /// made again, from the address it was to leave from, not the kernel's choice; and the
    /// report is still read.
    #[tokio::test]
    async fn a_send_that_meets_a_report_is_sent_again_from_the_address_sent_to() {
        let (server, port) = reporting("0.0.0.0:0");
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = SocketAddr::from(([127, 0, 0, 2], port));
        client.send_to(b"hi", to).await.unwrap();
        let mut buf = vec![0u8; 64];
        let (_, peer, arrival) = DatagramServer::recv_from(&server, &mut buf).await.unwrap();
        let closed = closed("127.0.0.1");
        DatagramServer::send_to(&server, b"lost", closed, arrival)
            .await
            .unwrap();
        DatagramServer::send_to(&server, b"answer", peer, arrival)
            .await
            .unwrap();
        let (len, from) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"answer");
        assert_eq!(from, to);
        let err = DatagramServer::recv_from(&server, &mut buf)
            .await
            .unwrap_err();
        assert_eq!(undelivered_to(&err), Some(closed));
    }

    /// A socket that does not ask for reports (`echo -u`'s) hears of nothing.
    #[tokio::test]
    async fn a_socket_not_reporting_hears_nothing_of_a_lost_datagram() {
        let (server, _) = wildcard("0.0.0.0:0");
        DatagramServer::send_to(&server, b"anyone?", closed("127.0.0.1"), None)
            .await
            .unwrap();
        let mut buf = vec![0u8; 64];
        let received = DatagramServer::recv_from(&server, &mut buf);
        let received = tokio::time::timeout(Duration::from_millis(100), received).await;
        assert!(received.is_err(), "{received:?}");
    }

    fn extended_err(errno: c_int) -> Vec<u8> {
        // SAFETY: all zeros is a valid sock_extended_err.
        let mut report: libc::sock_extended_err = unsafe { mem::zeroed() };
        report.ee_errno = errno as u32;
        report.ee_origin = libc::SO_EE_ORIGIN_ICMP;
        report.ee_type = 3;
        report.ee_code = 3;
        let mut bytes = vec![0u8; mem::size_of::<libc::sock_extended_err>()];
        // SAFETY: `bytes` holds a sock_extended_err.
        unsafe {
            bytes
                .as_mut_ptr()
                .cast::<libc::sock_extended_err>()
                .write_unaligned(report)
        };
        // The offender's address follows it.
        bytes.extend_from_slice(&[0u8; 16]);
        bytes
    }

    #[test]
    fn an_error_report_is_found_among_other_control_messages() {
        let info = in_pktinfo(1, [127, 0, 0, 1], [127, 0, 0, 1]);
        let report = extended_err(libc::ECONNREFUSED);
        for (level, kind) in [
            (libc::IPPROTO_IP, libc::IP_RECVERR),
            (libc::IPPROTO_IPV6, libc::IPV6_RECVERR),
        ] {
            let control = control_of(&[
                (libc::IPPROTO_IP, libc::IP_PKTINFO, &info),
                (level, kind, &report),
            ]);
            let error = parse_extended_err(&control).unwrap();
            assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused);
            // Cut short anywhere in it, there is none.
            for len in control.len() - cmsg_header_len() - report.len()..control.len() {
                assert!(
                    parse_extended_err(&control[..len]).is_none(),
                    "cut at {len}"
                );
            }
        }
        let control = control_of(&[(libc::IPPROTO_IP, libc::IP_PKTINFO, &info)]);
        assert!(parse_extended_err(&control).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_control_bytes_are_parsed_without_a_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..CONTROL_LEN),
        ) {
            let _ = parse_arrival(&bytes);
            let _ = parse_extended_err(&bytes);
        }
    }
}
