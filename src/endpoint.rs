//! Where to listen or connect: one parser for every address a user types.
//!
//! Accepted forms:
//!
//! | typed                         | meaning                                             |
//! |-------------------------------|-----------------------------------------------------|
//! | `127.0.0.1:7000`              | IPv4 address and port                               |
//! | `[::1]:7000`, `[::]:7000`     | IPv6 (brackets required); `[::]` listens dual-stack |
//! | `[fe80::1%eth0]:7000`         | a link-local IPv6 address and its interface         |
//! | `localhost:7000`              | a host name, resolved when used                     |
//! | `7000`                        | a bare port: `localhost:7000`                       |
//! | `tcp://…`, `udp://…`          | any of the above with the transport spelled out     |
//! | `unix:/tmp/s.sock`, `unix://…`| a Unix stream socket path                           |
//! | `unix:@name`                  | an abstract Unix socket (Linux): no file            |
//! | `unix:./@file`                | a socket file whose name starts with `@`            |
//!
//! Servers print the address they bound in the same syntax (`tcp://127.0.0.1:41234`), so a user
//! can copy it straight into a client.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The transport a stream or datagram endpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP: a reliable byte stream.
    Tcp,
    /// UDP: datagrams.
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// Which IP family name resolution may return (`-4`, `-6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// Both families.
    #[default]
    Any,
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

impl Family {
    fn allows(self, addr: &SocketAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => addr.is_ipv4(),
            Family::V6 => addr.is_ipv6(),
        }
    }
}

/// A host: an IP address, or a name resolved when the endpoint is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A literal IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS or `/etc/hosts` name such as `localhost`.
    Name(String),
}

/// A parsed address: an internet host and port (with the transport if the user spelled it out)
/// or a Unix socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// An IPv4/IPv6 host and port.
    Inet {
        /// Address or name.
        host: Host,
        /// Port; 0 asks the kernel for a free one when listening.
        port: u16,
        /// `tcp://` or `udp://` if it was typed.
        scheme: Option<Proto>,
    },
    /// A Unix stream socket.
    Unix(PathBuf),
}

impl Endpoint {
    /// The host as TLS checks it against a certificate: the name or address typed
    /// (`localhost` for a Unix socket).
    pub fn host_name(&self) -> String {
        match self {
            Endpoint::Inet {
                host: Host::Ip(ip), ..
            } => ip.to_string(),
            Endpoint::Inet {
                host: Host::Name(name),
                ..
            } => name.clone(),
            Endpoint::Unix(_) => "localhost".into(),
        }
    }

    /// The host and port as a URL writes them (`[::1]:7878`; `localhost` for a Unix socket).
    pub fn authority(&self) -> String {
        match self {
            Endpoint::Inet { host, port, .. } => Endpoint::Inet {
                host: host.clone(),
                port: *port,
                scheme: None,
            }
            .to_string(),
            Endpoint::Unix(_) => "localhost".into(),
        }
    }

    /// The Unix socket path, if this is one.
    pub fn unix_path(&self) -> Option<&PathBuf> {
        match self {
            Endpoint::Unix(path) => Some(path),
            Endpoint::Inet { .. } => None,
        }
    }

    /// The transport: the scheme the user typed, else UDP when `udp` is set, else TCP.
    ///
    /// # Errors
    /// [`Error::Usage`] when the scheme and the flag disagree (`tcp://…` with `-u`) or UDP is asked
    /// of a Unix socket.
    pub fn proto(&self, udp: bool) -> Result<Proto> {
        match self {
            Endpoint::Unix(_) if udp => Err(Error::Usage(
                "-u (UDP) cannot be used with a Unix socket; socktalk's Unix sockets are streams"
                    .into(),
            )),
            Endpoint::Unix(_) => Ok(Proto::Tcp),
            Endpoint::Inet {
                scheme: Some(Proto::Tcp),
                ..
            } if udp => Err(Error::Usage(format!(
                "address {self} says tcp:// but -u asks for UDP"
            ))),
            Endpoint::Inet {
                scheme: Some(scheme),
                ..
            } => Ok(*scheme),
            Endpoint::Inet { scheme: None, .. } if udp => Ok(Proto::Udp),
            Endpoint::Inet { scheme: None, .. } => Ok(Proto::Tcp),
        }
    }

    /// Resolves an internet endpoint to socket addresses, in the resolver's preference order.
    ///
    /// # Errors
    /// [`Error::Resolve`] when the name does not resolve or nothing of the asked family remains;
    /// [`Error::Usage`] for a Unix endpoint.
    pub async fn resolve(&self, family: Family) -> Result<Vec<SocketAddr>> {
        let Endpoint::Inet { host, port, .. } = self else {
            return Err(Error::Usage(format!("{self} is not an internet address")));
        };
        let addrs: Vec<SocketAddr> = match host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, *port)],
            Host::Name(name) => tokio::net::lookup_host((name.as_str(), *port))
                .await
                .map_err(|err| Error::Resolve {
                    host: name.clone(),
                    reason: err.to_string(),
                })?
                .collect(),
        };
        let addrs: Vec<SocketAddr> = addrs.into_iter().filter(|a| family.allows(a)).collect();
        if addrs.is_empty() {
            let name = match host {
                Host::Ip(ip) => ip.to_string(),
                Host::Name(name) => name.clone(),
            };
            return Err(Error::Resolve {
                host: name,
                reason: match family {
                    Family::V4 => "it has no IPv4 address (-4 asks for one)".into(),
                    Family::V6 => "it has no IPv6 address (-6 asks for one)".into(),
                    Family::Any => "it has no address".into(),
                },
            });
        }
        Ok(addrs)
    }

    /// The one address where only one can be used: the address a server binds, the peer a UDP
    /// client sends to. See [`preferred`].
    ///
    /// # Errors
    /// As [`Endpoint::resolve`].
    pub async fn resolve_one(&self, family: Family) -> Result<SocketAddr> {
        Ok(preferred(&self.resolve(family).await?))
    }
}

/// For a name that resolves to both families, its first IPv4 address: what a classic
/// `socket.socket()` (AF_INET) client or server uses, and where a socktalk server listens. A
/// UDP client cannot try each address in turn as TCP does (nothing says which one answers), so
/// both ends choose alike. `addrs` is not empty.
fn preferred(addrs: &[SocketAddr]) -> SocketAddr {
    *addrs.iter().find(|a| a.is_ipv4()).unwrap_or(&addrs[0])
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The parser drops a `//` after `unix:`, so a path that itself starts with `//` is
            // written after one more `//` to read back the same.
            Endpoint::Unix(path) if path.to_string_lossy().starts_with("//") => {
                write!(f, "unix://{}", path.display())
            }
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Inet { host, port, scheme } => {
                if let Some(scheme) = scheme {
                    write!(f, "{scheme}://")?;
                }
                match host {
                    Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{port}"),
                    Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{port}"),
                    // An IPv6 address with its zone.
                    Host::Name(name) if name.contains(':') => write!(f, "[{name}]:{port}"),
                    Host::Name(name) => write!(f, "{name}:{port}"),
                }
            }
        }
    }
}

/// Formats a bound or peer socket address the way users type it back: `tcp://[::1]:7000`.
pub fn display_addr(proto: Proto, addr: SocketAddr) -> String {
    format!("{proto}://{addr}")
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self> {
        let bad = |reason: String| Error::BadAddress {
            input: input.to_string(),
            reason,
        };
        let text = input.trim();
        if text.is_empty() {
            return Err(bad("the address is empty".into()));
        }
        if let Some(path) = text.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(bad("unix: needs a path, as in unix:/tmp/chat.sock".into()));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let (scheme, rest) = match text.split_once("://") {
            Some(("tcp", rest)) => (Some(Proto::Tcp), rest),
            Some(("udp", rest)) => (Some(Proto::Udp), rest),
            Some((other, _)) => {
                return Err(bad(format!(
                    "unknown scheme '{other}' (use tcp://, udp:// or unix:)"
                )));
            }
            None => (None, text),
        };
        if rest.starts_with('@') {
            return Err(bad(format!(
                "looks like an abstract Unix socket; write unix:{rest} or use -U {rest}"
            )));
        }
        if rest.starts_with('/') || rest.starts_with("./") {
            return Err(bad(format!(
                "looks like a path; write unix:{rest} or use -U {rest}"
            )));
        }
        let (host, port) = split_host_port(rest).map_err(bad)?;
        Ok(Endpoint::Inet { host, port, scheme })
    }
}

/// Splits `host:port`, `[v6]:port` or a bare `port`.
fn split_host_port(text: &str) -> Result<(Host, u16), String> {
    if let Some(after_bracket) = text.strip_prefix('[') {
        let (inside, after) = after_bracket
            .split_once(']')
            .ok_or_else(|| "missing ']' after the IPv6 address".to_string())?;
        let (ip, zone) = match inside.split_once('%') {
            Some((ip, zone)) => (ip, Some(zone)),
            None => (inside, None),
        };
        let ip: std::net::Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("'{ip}' is not an IPv6 address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| "missing port: write [addr]:port".to_string())?;
        let port = parse_port(port)?;
        return match zone {
            None => Ok((Host::Ip(IpAddr::V6(ip)), port)),
            // A zone (`fe80::1%eth0`: which link a link-local address is on) is the resolver's
            // to read, as `ping` and `nc` do: it turns the interface's name into a scope id.
            Some(zone) if is_zone(zone) => Ok((Host::Name(inside.to_string()), port)),
            Some(zone) => Err(format!(
                "'{zone}' is not a zone: after '%' comes an interface name or number, as in [fe80::1%eth0]:7000"
            )),
        };
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok((Host::Name("localhost".into()), parse_port(text)?));
    }
    match text.matches(':').count() {
        0 => Err("missing port: write host:port, as in 127.0.0.1:7000".into()),
        1 => {
            let (host, port) = text.split_once(':').unwrap_or((text, ""));
            let port = parse_port(port)?;
            if host.is_empty() {
                return Err("missing host: write host:port, as in 127.0.0.1:7000".into());
            }
            Ok((parse_host(host)?, port))
        }
        _ => Err(format!(
            "IPv6 addresses need brackets, as in [{}]:7000",
            text.rsplit_once(':').map_or(text, |(h, _)| h)
        )),
    }
}

/// Whether `zone` can be an IPv6 zone: an interface name or index.
fn is_zone(zone: &str) -> bool {
    !zone.is_empty()
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

fn parse_host(host: &str) -> Result<Host, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let valid = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !valid || host.starts_with('.') || host.starts_with('-') {
        return Err(format!("'{host}' is not a valid host name or IP address"));
    }
    Ok(Host::Name(host.to_string()))
}

fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err("missing port after ':'".into());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port '{port}' is not a number"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("port {port} is out of range 0–65535"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn inet(host: Host, port: u16, scheme: Option<Proto>) -> Endpoint {
        Endpoint::Inet { host, port, scheme }
    }

    #[test]
    fn parses_every_documented_form() {
        let v4 = Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(
            "127.0.0.1:7000".parse::<Endpoint>().unwrap(),
            inet(v4.clone(), 7000, None)
        );
        assert_eq!(
            "[::1]:7000".parse::<Endpoint>().unwrap(),
            inet(Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)), 7000, None)
        );
        assert_eq!(
            "[::]:0".parse::<Endpoint>().unwrap(),
            inet(Host::Ip(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), 0, None)
        );
        assert_eq!(
            "localhost:7000".parse::<Endpoint>().unwrap(),
            inet(Host::Name("localhost".into()), 7000, None)
        );
        assert_eq!(
            "7000".parse::<Endpoint>().unwrap(),
            inet(Host::Name("localhost".into()), 7000, None)
        );
        assert_eq!(
            "udp://127.0.0.1:9".parse::<Endpoint>().unwrap(),
            inet(v4.clone(), 9, Some(Proto::Udp))
        );
        assert_eq!(
            "tcp://127.0.0.1:9".parse::<Endpoint>().unwrap(),
            inet(v4, 9, Some(Proto::Tcp))
        );
        assert_eq!(
            "unix:/tmp/a.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/tmp/a.sock".into())
        );
        assert_eq!(
            "unix:///tmp/a.sock".parse::<Endpoint>().unwrap(),
            Endpoint::Unix("/tmp/a.sock".into())
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "127.0.0.1:7000",
            "[::1]:7000",
            "localhost:1",
            "udp://[::]:9",
            "[fe80::1%eth0]:7000",
            "unix:/tmp/x",
            "unix:@chat",
            "unix:./@file",
        ] {
            let endpoint: Endpoint = text.parse().unwrap();
            assert_eq!(endpoint.to_string(), text);
            assert_eq!(endpoint.to_string().parse::<Endpoint>().unwrap(), endpoint);
        }
    }

    #[test]
    fn a_unix_path_starting_with_two_slashes_round_trips() {
        // Found by the `endpoint` fuzzer: "unix:////s" is the path "//s", but it displayed as
        // "unix://s", which reads back as the path "s".
        let endpoint: Endpoint = "unix:////s".parse().unwrap();
        assert_eq!(endpoint, Endpoint::Unix("//s".into()));
        assert_eq!(endpoint.to_string(), "unix:////s");
        assert_eq!(endpoint.to_string().parse::<Endpoint>().unwrap(), endpoint);
        let endpoint = Endpoint::Unix("//".into());
        assert_eq!(endpoint.to_string().parse::<Endpoint>().unwrap(), endpoint);
    }

    #[test]
    fn bad_addresses_say_why() {
        let cases = [
            ("127.0.0.1:70000", "port 70000 is out of range 0–65535"),
            ("127.0.0.1:99999999999", "out of range"),
            ("127.0.0.1:http", "port 'http' is not a number"),
            ("127.0.0.1", "missing port"),
            ("127.0.0.1:", "missing port"),
            (":7000", "missing host"),
            ("::1:7000", "IPv6 addresses need brackets"),
            ("[::1]", "missing port"),
            ("[::1:7000", "missing ']'"),
            ("[zz]:1", "not an IPv6 address"),
            ("[zz%eth0]:1", "'zz' is not an IPv6 address"),
            ("[fe80::1%]:1", "'' is not a zone"),
            ("[fe80::1%a/b]:1", "'a/b' is not a zone"),
            ("[fe80::1%eth0]", "missing port"),
            ("ftp://x:1", "unknown scheme 'ftp'"),
            ("unix:", "needs a path"),
            ("/tmp/s.sock", "write unix:/tmp/s.sock"),
            ("@chat", "write unix:@chat or use -U @chat"),
            ("bad host:1", "not a valid host name"),
            ("", "empty"),
        ];
        for (input, expected) in cases {
            let err = input.parse::<Endpoint>().unwrap_err();
            assert!(err.is_usage());
            let text = err.to_string();
            assert!(text.contains(expected), "{input:?}: {text}");
        }
    }

    #[test]
    fn proto_follows_scheme_and_flag() {
        let plain: Endpoint = "127.0.0.1:1".parse().unwrap();
        assert_eq!(plain.proto(false).unwrap(), Proto::Tcp);
        assert_eq!(plain.proto(true).unwrap(), Proto::Udp);
        let udp: Endpoint = "udp://127.0.0.1:1".parse().unwrap();
        assert_eq!(udp.proto(false).unwrap(), Proto::Udp);
        let tcp: Endpoint = "tcp://127.0.0.1:1".parse().unwrap();
        assert!(tcp.proto(true).is_err());
        let unix: Endpoint = "unix:/x".parse().unwrap();
        assert!(unix.proto(true).unwrap_err().is_usage());
    }

    #[test]
    fn a_name_of_both_families_is_used_by_its_ipv4_address() {
        // Where `localhost` is ::1 then 127.0.0.1, as glibc orders it when /etc/hosts has both:
        // `echo -u 7000` binds 127.0.0.1, and `connect -u 7000` must send there.
        let v6: SocketAddr = "[::1]:7000".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        assert_eq!(preferred(&[v6, v4]), v4);
        assert_eq!(preferred(&[v6]), v6);
    }

    #[tokio::test]
    async fn resolves_names_and_filters_families() {
        let endpoint: Endpoint = "localhost:80".parse().unwrap();
        let v4 = endpoint.resolve(Family::V4).await.unwrap();
        assert!(v4.iter().all(|a| a.is_ipv4() && a.port() == 80));
        assert!(endpoint.resolve_one(Family::Any).await.unwrap().is_ipv4());
        let literal: Endpoint = "[::1]:5".parse().unwrap();
        let err = literal.resolve(Family::V4).await.unwrap_err();
        assert!(
            err.to_string()
                .ends_with("it has no IPv4 address (-4 asks for one)"),
            "{err}"
        );
    }
}
