//! A benchmark's result: a readable table for people, one JSON object for machines.
//!
//! The JSON object (`socktalk bench … --json`) has these fields; those that do not apply to a
//! mode are left out:
//!
//! | field | meaning |
//! |---|---|
//! | `mode` | `pingpong`, `bulk`, `udp`, `hold` or `fanout` |
//! | `target` | the address benchmarked |
//! | `conns`, `size`, `duration_s` | the settings used; `duration_s` is the time measured (to Ctrl-C or another signal, if one came first) |
//! | `interrupted` | `true` when Ctrl-C (or SIGTERM, SIGHUP) ended the run early: the figures cover `duration_s` (left out otherwise) |
//! | `ops`, `ops_per_s` | round trips (pingpong, udp), deliveries (fanout) or connections set up (handshake) measured, and per second |
//! | `latency_us` | `{p50, p90, p99, max}` in microseconds (round trip, or send to delivery); left out when nothing was measured (an empty histogram has no percentiles, and zeros would read as instant replies) |
//! | `slowest_conn_share` | pingpong with more than one connection: the slowest connection's round trips over the mean per connection, over the connections made (one that failed counts with the round trips it completed); 1 when the server shares itself evenly, near 0 when it starves someone |
//! | `errors` | connections or operations that failed |
//! | `lost` | udp: datagrams without a reply in time; fanout: deliveries that never came (left out when interrupted: they may have been on their way) |
//! | `tx_mb_s`, `rx_mb_s` | bulk: megabytes (10⁶ bytes) per second sent and received |
//! | `held`, `wanted`, `stopped_by` | hold: connections held of those asked for, and what stopped it |
//! | `rss_bytes`, `bytes_per_conn` | hold with `--pid`: the server's resident memory, and its growth per connection |
//! | `client_cpu_ms`, `server_cpu_ms` | CPU milliseconds the load generator used while measuring (the timed window; fanout: first line sent to last delivery), and with `--pid` the server's, its child processes included |

use serde::Serialize;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Worst.
    pub max: f64,
}

impl Latency {
    /// The percentiles of `ops` samples, or `None` when there are none: an empty histogram
    /// reads as 0 µs everywhere, which a reader would take for instant replies.
    pub fn of(ops: u64, histogram: &hdrhistogram::Histogram<u64>) -> Option<Self> {
        (ops > 0 && !histogram.is_empty()).then(|| Self::from_nanos(histogram))
    }

    /// Percentiles of a histogram recorded in nanoseconds.
    pub fn from_nanos(histogram: &hdrhistogram::Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            p50: us(histogram.value_at_quantile(0.50)),
            p90: us(histogram.value_at_quantile(0.90)),
            p99: us(histogram.value_at_quantile(0.99)),
            max: us(histogram.max()),
        }
    }
}

/// Everything a benchmark run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The mode.
    pub mode: &'static str,
    /// The address.
    pub target: String,
    /// Connections (or receivers, for fanout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conns: Option<usize>,
    /// Message or chunk size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// Seconds measured.
    pub duration_s: f64,
    /// Whether a signal (Ctrl-C, SIGTERM, SIGHUP) ended the run early.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// Round trips or deliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops: Option<u64>,
    /// `ops` per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops_per_s: Option<f64>,
    /// Latency percentiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<Latency>,
    /// The slowest connection's operations over the mean per connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slowest_conn_share: Option<f64>,
    /// Failures.
    pub errors: u64,
    /// Lost datagrams or deliveries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<u64>,
    /// Megabytes per second sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_mb_s: Option<f64>,
    /// Megabytes per second received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rx_mb_s: Option<f64>,
    /// Connections held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<usize>,
    /// Connections asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wanted: Option<usize>,
    /// Why `hold` stopped short, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<String>,
    /// The server's resident memory while holding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Growth of the server's resident memory per connection held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_conn: Option<f64>,
    /// CPU milliseconds the load generator used while measuring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cpu_ms: Option<f64>,
    /// CPU milliseconds the server (`--pid`) used while measuring.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_ms: Option<f64>,
}

impl Report {
    /// Whether the run measured nothing: no round trip, delivery or connection counted, no
    /// byte sent or received, or (bulk --both) errors and no byte back.
    pub fn measured_nothing(&self) -> bool {
        self.ops == Some(0)
            || (self.tx_mb_s == Some(0.0) && self.rx_mb_s.unwrap_or(0.0) == 0.0)
            || (self.errors > 0 && self.rx_mb_s == Some(0.0))
    }

    /// Why nothing was measured, in words, when [`Self::measured_nothing`].
    pub fn why_nothing(&self) -> String {
        let errors = self.errors;
        if errors > 0 {
            let noun = if errors == 1 { "error" } else { "errors" };
            return format!("{errors} {noun} (-v shows them)");
        }
        match (self.mode, self.lost) {
            ("udp", Some(lost)) if lost > 0 => {
                format!("all {lost} datagrams were lost (no reply within --timeout)")
            }
            ("fanout", Some(lost)) if lost > 0 => {
                format!("all {lost} deliveries were lost (none within --timeout)")
            }
            ("bulk", _) => format!(
                "no byte went through within the {} measured",
                seconds(self.duration_s)
            ),
            _ => format!(
                "none finished within the {} measured (a longer --duration?)",
                seconds(self.duration_s)
            ),
        }
    }

    /// The report with CPU figures (`(client ms, server ms)`, as [`super::measure_cpu`] gives).
    #[must_use]
    pub fn with_cpu(self, (client_cpu_ms, server_cpu_ms): (Option<f64>, Option<f64>)) -> Self {
        Self {
            client_cpu_ms,
            server_cpu_ms,
            ..self
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The report as an aligned two-column table.
    pub fn to_table(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![
            ("mode".into(), self.mode.into()),
            ("target".into(), self.target.clone()),
        ];
        let mut row = |name: &str, value: String| rows.push((name.into(), value));
        if let Some(conns) = self.conns {
            // For handshake, `connections` below is what was measured: the clients dialling.
            let name = match self.mode {
                "fanout" => "receivers",
                "handshake" => "clients",
                _ => "connections",
            };
            row(name, conns.to_string());
        }
        if let Some(size) = self.size {
            row("size", format!("{size} B"));
        }
        row("measured", seconds(self.duration_s));
        if self.interrupted {
            row(
                "interrupted",
                "yes: the figures cover the time measured before it".into(),
            );
        }
        if let (Some(ops), Some(rate)) = (self.ops, self.ops_per_s) {
            let what = match self.mode {
                "fanout" => "deliveries",
                "handshake" => "connections made",
                _ => "round trips",
            };
            row(what, format!("{} ({}/s)", group(ops as f64), group(rate)));
        }
        if let Some(l) = self.latency_us {
            row(
                "latency",
                format!(
                    "p50 {}  p90 {}  p99 {}  max {}",
                    micros(l.p50),
                    micros(l.p90),
                    micros(l.p99),
                    micros(l.max)
                ),
            );
        }
        if let Some(share) = self.slowest_conn_share {
            row(
                "slowest conn",
                format!(
                    "{:.1}% of the mean round trips per connection",
                    share * 100.0
                ),
            );
        }
        if let Some(tx) = self.tx_mb_s {
            row("sent", format!("{tx:.1} MB/s"));
        }
        if let Some(rx) = self.rx_mb_s {
            row("received", format!("{rx:.1} MB/s"));
        }
        if let (Some(held), Some(wanted)) = (self.held, self.wanted) {
            row("held", format!("{held} of {wanted} connections"));
        }
        if let Some(why) = &self.stopped_by {
            row("stopped by", why.clone());
        }
        if let Some(rss) = self.rss_bytes {
            row("server RSS", format!("{:.1} MiB", rss as f64 / 1_048_576.0));
        }
        if let Some(per) = self.bytes_per_conn {
            row("per connection", format!("{per:.0} bytes"));
        }
        match (self.client_cpu_ms, self.server_cpu_ms) {
            (Some(client), Some(server)) => {
                row(
                    "cpu",
                    format!("load generator {client:.1} ms, server {server:.1} ms"),
                );
            }
            (Some(client), None) => row("cpu", format!("load generator {client:.1} ms")),
            _ => {}
        }
        if let Some(lost) = self.lost {
            row("lost", lost.to_string());
        }
        row("errors", self.errors.to_string());
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }
}

/// The smallest of `counts` over their mean: 1 when every connection did as much, 0 when one
/// did nothing. `None` for fewer than two connections or no work at all.
pub fn slowest_share(counts: &[u64]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if counts.len() < 2 || total == 0 {
        return None;
    }
    let slowest = counts.iter().copied().min().unwrap_or(0);
    Some(slowest as f64 * counts.len() as f64 / total as f64)
}

/// `count` per second over `secs`: 0 over an empty window, never NaN or infinite (which JSON
/// cannot carry).
pub fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// A time measured, for people: `2.50 s`, or `8.9 ms` under a second (a fan-out of a few
/// lines lasts milliseconds, and `0.00 s` read as nothing).
pub fn seconds(secs: f64) -> String {
    if secs >= 1.0 || secs == 0.0 {
        format!("{secs:.2} s")
    } else if secs >= 0.001 {
        format!("{:.1} ms", secs * 1e3)
    } else if secs >= 0.000_001 {
        format!("{:.1} µs", secs * 1e6)
    } else {
        format!("{:.0} ns", secs * 1e9)
    }
}

/// A latency in microseconds, for people, in the unit that keeps it short: `41.3 µs`,
/// `13.31 ms`, `1.62 s`.
fn micros(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// `1234567.8` as `1,234,568`.
fn group(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(group(1_234_567.8), "1,234,568");
        assert_eq!(group(999.0), "999");
        assert_eq!(group(0.0), "0");
    }

    #[test]
    fn times_read_in_the_unit_that_suits_them() {
        assert_eq!(seconds(5.0), "5.00 s");
        assert_eq!(seconds(0.0089), "8.9 ms");
        assert_eq!(seconds(0.000_001), "1.0 µs");
        assert_eq!(seconds(0.000_000_001), "1 ns");
        assert_eq!(seconds(0.0), "0.00 s");
        assert_eq!(micros(41.27), "41.3 µs");
        assert_eq!(micros(13_312.0), "13.31 ms");
        assert_eq!(micros(1_616_904.2), "1.62 s");
    }

    #[test]
    fn slowest_share_compares_the_slowest_connection_with_the_mean() {
        assert_eq!(slowest_share(&[10, 10, 10]), Some(1.0));
        assert_eq!(slowest_share(&[5, 15]), Some(0.5));
        assert_eq!(slowest_share(&[0, 20]), Some(0.0));
        assert_eq!(slowest_share(&[7]), None);
        assert_eq!(slowest_share(&[0, 0]), None);
        assert_eq!(slowest_share(&[]), None);
    }

    #[test]
    fn json_leaves_out_what_does_not_apply() {
        let report = Report {
            mode: "pingpong",
            target: "tcp://127.0.0.1:1".into(),
            ops: Some(10),
            ops_per_s: Some(5.0),
            ..Report::default()
        };
        let value: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(value["mode"], "pingpong");
        assert_eq!(value["ops_per_s"], 5.0);
        assert!(value.get("held").is_none());
        assert!(report.to_table().contains("round trips  10 (5/s)"));
    }
}
