//! Who may connect: `--allow`/`--deny` address ranges, `--max-conns` and `--max-conns-per-ip`.
//!
//! A [`Gate`] is shared by every listener of a server. Each accepted connection asks it for an
//! [`Admission`], which holds the connection's place (in the global count and in its address's
//! count) until dropped. A connection that is not admitted gets a [`Refusal`]: a one-line reason
//! the accept loop sends before closing it, so a client never hangs without knowing why.
//!
//! The rules, in order:
//! 1. An address in any `--deny` range is refused.
//! 2. With any `--allow` given, an address in none of them is refused.
//! 3. Past `--max-conns` connections in all, or `--max-conns-per-ip` from this address (an
//!    IPv6 client: from its /64), the connection is refused.
//!
//! Unix-socket clients have no address: only `--max-conns` applies to them. IPv4 clients of a
//! dual-stack `[::]` listener are matched as IPv4 (`::ffff:192.0.2.1` is `192.0.2.1`), and so
//! are ranges written that way (`::ffff:192.0.2.0/120` is `192.0.2.0/24`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The `--allow`/`--deny` lists.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// Ranges let in (empty: everyone not denied).
    pub allow: Vec<IpNet>,
    /// Ranges kept out; they win over `allow`.
    pub deny: Vec<IpNet>,
}

impl AccessPolicy {
    /// Whether `ip` may connect.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let is_in = |nets: &[IpNet]| nets.iter().any(|net| canonical(*net).contains(&ip));
        !is_in(&self.deny) && (self.allow.is_empty() || is_in(&self.allow))
    }
}

/// A range of IPv4-mapped IPv6 addresses (`::ffff:198.51.100.0/120`) as the IPv4 range it is
/// (`198.51.100.0/24`), since clients are matched by their IPv4 address; any other range as it is.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// Why a connection was refused; its `Display` is the line the client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its address is denied, or not allowed.
    Denied(IpAddr),
    /// `--max-conns` connections are open.
    Full(usize),
    /// `--max-conns-per-ip` connections from this address (for IPv6, this /64) are open.
    PerIp(Source, usize),
}

/// Where connections are counted from: an IPv4 address, or an IPv6 /64 (one host usually has a
/// whole /64, so counting single IPv6 addresses would give it millions of caps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source `ip` counts under.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) if !v6.is_loopback() => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                Source(IpAddr::V6(bits.into()))
            }
            other => Source(other),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V6(v6) if !v6.is_loopback() => write!(f, "{v6}/64"),
            ip => write!(f, "{ip}"),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Denied(ip) => write!(f, "refused: {ip} is not allowed here (--allow/--deny)"),
            Refusal::Full(max) => write!(f, "refused: server full (--max-conns {max})"),
            Refusal::PerIp(source, max) => write!(
                f,
                "refused: too many connections from {source} (--max-conns-per-ip {max})"
            ),
        }
    }
}

/// Limits and rules shared by all of a server's listeners.
#[derive(Debug)]
pub struct Gate {
    policy: AccessPolicy,
    max_conns: usize,
    /// 0: no cap.
    max_per_ip: usize,
    slots: Arc<Semaphore>,
    per_ip: Mutex<HashMap<Source, usize>>,
}

impl Gate {
    /// A gate admitting at most `max_conns` connections, `max_per_ip` per address (0: no
    /// cap), from addresses `policy` permits.
    pub fn new(policy: AccessPolicy, max_conns: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            policy,
            max_conns,
            max_per_ip,
            slots: Arc::new(Semaphore::new(max_conns)),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// A gate with only a connection limit.
    pub fn with_max_conns(max_conns: usize) -> Arc<Self> {
        Self::new(AccessPolicy::default(), max_conns, 0)
    }

    /// Admits a connection from `ip` (`None`: a Unix socket), or says why not.
    ///
    /// # Errors
    /// The [`Refusal`] to send the client.
    pub fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<Admission, Refusal> {
        self.check(ip)?;
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return Err(Refusal::Full(self.max_conns));
        };
        let counted = match ip {
            Some(ip) if self.max_per_ip > 0 => {
                let source = Source::of(ip);
                let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
                let count = per_ip.entry(source).or_insert(0);
                if *count >= self.max_per_ip {
                    return Err(Refusal::PerIp(source, self.max_per_ip));
                }
                *count += 1;
                Some(source)
            }
            _ => None,
        };
        Ok(Admission {
            _slot: slot,
            counted,
            gate: self.clone(),
        })
    }

    /// Whether `--allow`/`--deny` let `ip` in (`None`, a Unix socket: always), without taking
    /// a place: for a caller that has more to do (a TLS handshake) before [`Gate::admit`].
    ///
    /// # Errors
    /// [`Refusal::Denied`].
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), Refusal> {
        match ip {
            Some(ip) if !self.policy.permits(ip) => Err(Refusal::Denied(ip)),
            _ => Ok(()),
        }
    }

    /// Connections from `ip`'s source admitted and not yet closed (for tests and logs).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        per_ip.get(&Source::of(ip)).copied().unwrap_or(0)
    }
}

/// An admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Admission {
    _slot: OwnedSemaphorePermit,
    /// The source whose count this holds, if counted.
    counted: Option<Source>,
    gate: Arc<Gate>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Some(source) = self.counted {
            let mut per_ip = self.gate.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = per_ip.get_mut(&source) {
                *count -= 1;
                if *count == 0 {
                    per_ip.remove(&source);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn deny_wins_over_allow() {
        let policy = AccessPolicy {
            allow: nets(&["198.51.100.0/24"]),
            deny: nets(&["198.51.100.128/25"]),
        };
        assert!(policy.permits(ip("198.51.100.4")));
        assert!(!policy.permits(ip("198.51.100.200")));
        assert!(!policy.permits(ip("203.0.113.1")));
    }

    #[test]
    fn mapped_ipv4_matches_ipv4_ranges() {
        let policy = AccessPolicy {
            allow: nets(&["127.0.0.0/8"]),
            deny: vec![],
        };
        assert!(policy.permits(ip("::ffff:127.0.0.1")));
        assert!(!policy.permits(ip("::1")));
    }

    #[test]
    fn mapped_ipv4_ranges_match_ipv4_clients() {
        let policy = AccessPolicy {
            allow: nets(&["::ffff:198.51.100.0/120"]),
            deny: nets(&["::ffff:198.51.100.128/121"]),
        };
        assert!(policy.permits(ip("198.51.100.4")));
        assert!(policy.permits(ip("::ffff:198.51.100.4")));
        assert!(!policy.permits(ip("198.51.100.200")));
        assert!(!policy.permits(ip("203.0.113.1")));
        let no_ipv4 = AccessPolicy {
            allow: vec![],
            deny: nets(&["::ffff:0:0/96"]),
        };
        assert!(!no_ipv4.permits(ip("::ffff:192.0.2.1")));
        assert!(!no_ipv4.permits(ip("192.0.2.1")));
        assert!(no_ipv4.permits(ip("2001:db8::1")));
    }

    #[test]
    fn per_ip_places_are_given_back() {
        let gate = Gate::new(AccessPolicy::default(), 10, 2);
        let a = ip("127.0.0.1");
        let first = gate.admit(Some(a)).unwrap();
        let _second = gate.admit(Some(a)).unwrap();
        assert_eq!(
            gate.admit(Some(a)).unwrap_err(),
            Refusal::PerIp(Source::of(a), 2)
        );
        assert!(gate.admit(Some(ip("127.0.0.2"))).is_ok());
        drop(first);
        assert_eq!(gate.open_from(a), 1);
        assert!(gate.admit(Some(a)).is_ok());
    }

    #[test]
    fn an_ipv6_host_counts_as_its_slash_64() {
        let gate = Gate::new(AccessPolicy::default(), 10, 1);
        let _held = gate.admit(Some(ip("2001:db8:1:2::10"))).unwrap();
        let refusal = gate.admit(Some(ip("2001:db8:1:2:ffff::1"))).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "refused: too many connections from 2001:db8:1:2::/64 (--max-conns-per-ip 1)"
        );
        assert!(gate.admit(Some(ip("2001:db8:1:3::10"))).is_ok());
        assert_eq!(
            Source::of(ip("::ffff:192.0.2.3")),
            Source::of(ip("192.0.2.3"))
        );
    }

    #[test]
    fn the_global_cap_counts_unix_clients_too() {
        let gate = Gate::with_max_conns(1);
        let held = gate.admit(None).unwrap();
        assert_eq!(gate.admit(Some(ip("::1"))).unwrap_err(), Refusal::Full(1));
        drop(held);
        assert!(gate.admit(None).is_ok());
    }

    #[test]
    fn refusals_read_as_one_line() {
        for refusal in [
            Refusal::Denied(ip("192.0.2.1")),
            Refusal::Full(100),
            Refusal::PerIp(Source::of(ip("::1")), 3),
        ] {
            let line = refusal.to_string();
            assert!(
                line.starts_with("refused: ") && !line.contains('\n'),
                "{line}"
            );
        }
    }
}
