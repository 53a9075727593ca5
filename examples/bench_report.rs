//! Turns the raw results of `bench/compare.sh` into `BENCHMARKS.md` and SVG bar charts.
//!
//! ```sh
//! cargo run --release --example bench_report
//! cargo run --release --example bench_report -- --results bench/results/latest.jsonl \
//!     --machine bench/results/machine.txt --out BENCHMARKS.md --charts bench/charts
//! ```
//!
//! # Input
//!
//! - `--results` (default `bench/results/latest.jsonl`): one JSON object a line, each a
//!   `socktalk bench --json` report plus the fields the script adds: `name` (the target, e.g.
//!   `socktalk-echo`, `ncat`), `scenario` (e.g. `pingpong-50x64`) and `rep`. A run that failed
//!   is a line with `failed` (the reason) instead of measurements.
//! - `--machine` (default `bench/results/machine.txt`): `key=value` lines about the machine and
//!   the run (`nproc`, `cpu`, `kernel`, `date`, `ulimit_n`, `reps`, …); keys starting with
//!   `target.` give the command line of each target.
//!
//! # Output
//!
//! - `--out` (default `BENCHMARKS.md`): the medians over repetitions per (scenario, target), the
//!   ratio of socktalk to each other target, and the issue's targets, each MET or NOT MET with
//!   the figure measured. The section `## What we changed for speed` of an existing file, and
//!   every section after it (`## The cost of TLS`, written by `bench/tls.sh`), are carried over
//!   verbatim.
//! - `--charts` (default `bench/charts`): one SVG bar chart per scenario of its main figure, and
//!   one of p99 latency where there is one; `BENCHMARKS.md` links them by relative path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

/// The heading of the section the lead writes by hand; kept across regenerations.
const SPEED_HEADING: &str = "## What we changed for speed";

/// Where things are read and written.
struct Paths {
    results: PathBuf,
    machine: PathBuf,
    out: PathBuf,
    charts: PathBuf,
}

impl Paths {
    fn from_args() -> Result<Self> {
        let mut paths = Self {
            results: "bench/results/latest.jsonl".into(),
            machine: "bench/results/machine.txt".into(),
            out: "BENCHMARKS.md".into(),
            charts: "bench/charts".into(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let slot = match flag.as_str() {
                "--results" => &mut paths.results,
                "--machine" => &mut paths.machine,
                "--out" => &mut paths.out,
                "--charts" => &mut paths.charts,
                "-h" | "--help" => {
                    println!(
                        "usage: bench_report [--results FILE] [--machine FILE] [--out FILE] [--charts DIR]"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument '{other}' (see --help)"),
            };
            *slot = args
                .next()
                .with_context(|| format!("{flag} needs a value"))?
                .into();
        }
        Ok(paths)
    }
}

/// The figure a scenario is judged by.
#[derive(Clone, Copy, PartialEq)]
enum Metric {
    /// `ops_per_s`: round trips or deliveries per second (higher is better).
    OpsPerSecond,
    /// `rx_mb_s`, else `tx_mb_s`: megabytes per second (higher is better).
    Megabytes,
    /// `bytes_per_conn`: server memory per idle connection (lower is better).
    BytesPerConn,
}

impl Metric {
    fn for_mode(mode: &str) -> Self {
        match mode {
            "bulk" => Metric::Megabytes,
            "hold" => Metric::BytesPerConn,
            _ => Metric::OpsPerSecond,
        }
    }

    fn value(self, record: &Value) -> Option<f64> {
        match self {
            Metric::OpsPerSecond => number(record, "ops_per_s"),
            Metric::Megabytes => number(record, "rx_mb_s").or_else(|| number(record, "tx_mb_s")),
            Metric::BytesPerConn => number(record, "bytes_per_conn"),
        }
    }

    fn is_higher_better(self) -> bool {
        self != Metric::BytesPerConn
    }

    /// The figure with its unit.
    fn show(self, value: f64) -> String {
        match self {
            Metric::OpsPerSecond => format!("{}/s", group(value)),
            Metric::Megabytes => format!("{value:.1} MB/s"),
            Metric::BytesPerConn => bytes(value),
        }
    }

    /// The chart's axis label.
    fn unit(self, mode: &str) -> &'static str {
        match (self, mode) {
            (Metric::OpsPerSecond, "fanout") => "deliveries per second",
            (Metric::OpsPerSecond, _) => "round trips per second",
            (Metric::Megabytes, _) => "MB/s",
            (Metric::BytesPerConn, _) => "bytes per connection",
        }
    }
}

/// Scenarios the script runs, in the order the report shows them, with their titles.
const KNOWN: &[(&str, &str)] = &[
    ("pingpong-50x64", "Echo ping-pong, 50 connections × 64 B"),
    // Each Unix-socket scenario right after its TCP counterpart, so the two read side by side.
    (
        "pingpong-unix-50x64",
        "Echo ping-pong over a Unix socket, 50 connections × 64 B",
    ),
    ("pingpong-1x64", "Echo ping-pong, 1 connection × 64 B"),
    (
        "bulk-1x65536",
        "Bulk stream through an echo server, 1 connection, 64 KiB chunks",
    ),
    (
        "bulk-unix-1x65536",
        "Bulk stream through an echo server over a Unix socket, 1 connection, 64 KiB chunks",
    ),
    ("udp-1x64", "UDP ping-pong, 1 socket × 64 B"),
    (
        "fanout-100x1000",
        "Chat fan-out, 100 receivers × 1,000 lines",
    ),
    (
        "fanout-1000x1000",
        "Chat fan-out, 1,000 receivers × 1,000 lines",
    ),
    (
        "fanout-ws-100x1000",
        "Chat fan-out over WebSockets, 100 receivers × 1,000 messages",
    ),
    ("hold-19000", "Idle connections held, 19,000"),
    ("hold-ws-19000", "Idle WebSockets held, 19,000"),
    (
        "hold-tls-1000",
        "Idle TLS connections held, 1,000 (ncat --chat's most)",
    ),
    ("hold-tls-19000", "Idle TLS connections held, 19,000"),
];

/// All runs of one scenario, by target in the order they first appear.
struct Scenario {
    id: String,
    mode: String,
    targets: Vec<(String, Vec<Value>)>,
}

impl Scenario {
    fn title(&self) -> String {
        KNOWN
            .iter()
            .find(|(id, _)| *id == self.id)
            .map_or_else(|| self.id.clone(), |(_, title)| (*title).to_string())
    }

    fn metric(&self) -> Metric {
        Metric::for_mode(&self.mode)
    }

    fn runs(&self, target: &str) -> Option<&[Value]> {
        self.targets
            .iter()
            .find(|(name, _)| name == target)
            .map(|(_, runs)| runs.as_slice())
    }

    /// The socktalk target the others are compared with: the chat server where there is one
    /// (fan-out, hold), else the first target named `socktalk…`.
    fn socktalk(&self) -> Option<&str> {
        let names = || self.targets.iter().map(|(name, _)| name.as_str());
        names()
            .find(|name| *name == "socktalk-serve")
            .or_else(|| names().find(|name| name.starts_with("socktalk")))
    }

    /// Whether any run recorded `key` (results from older builds may lack newer fields).
    fn has(&self, key: &str) -> bool {
        self.targets
            .iter()
            .flat_map(|(_, runs)| runs)
            .any(|run| run.get(key).is_some())
    }

    /// The median of the scenario's main figure for `target`.
    fn median_metric(&self, target: &str) -> Option<f64> {
        median_of(self.runs(target)?, |r| self.metric().value(r))
    }
}

fn main() -> Result<()> {
    let paths = Paths::from_args()?;
    let text = std::fs::read_to_string(&paths.results)
        .with_context(|| format!("cannot read {}", paths.results.display()))?;
    let records = parse_records(&text)?;
    if records.is_empty() {
        bail!("{} holds no results", paths.results.display());
    }
    let scenarios = group_scenarios(records);
    let machine = read_machine(&paths.machine);
    let old_speed = std::fs::read_to_string(&paths.out)
        .ok()
        .and_then(|old| speed_section(&old));

    std::fs::create_dir_all(&paths.charts)
        .with_context(|| format!("cannot create {}", paths.charts.display()))?;
    let mut charts = BTreeMap::new();
    for scenario in &scenarios {
        charts.insert(scenario.id.clone(), draw_charts(scenario, &paths.charts)?);
    }
    let markdown = render(&scenarios, &machine, &charts, &paths, old_speed.as_deref());
    std::fs::write(&paths.out, markdown)
        .with_context(|| format!("cannot write {}", paths.out.display()))?;
    println!(
        "wrote {} and {} charts in {}",
        paths.out.display(),
        charts.values().map(Vec::len).sum::<usize>(),
        paths.charts.display()
    );
    Ok(())
}

/// One JSON object per non-empty line.
fn parse_records(text: &str) -> Result<Vec<Value>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| format!("line {} is not JSON", i + 1))
        })
        .collect()
}

/// The scenario a record belongs to: the script's `scenario` field, else one made from the
/// report's own settings.
fn scenario_id(record: &Value) -> String {
    if let Some(id) = record.get("scenario").and_then(Value::as_str) {
        return id.to_string();
    }
    let mode = record.get("mode").and_then(Value::as_str).unwrap_or("?");
    let int = |key| record.get(key).and_then(Value::as_u64).unwrap_or(0);
    match mode {
        "hold" => format!("hold-{}", int("wanted")),
        "fanout" => {
            let conns = int("conns").max(1);
            format!("fanout-{conns}x{}", (int("ops") + int("lost")) / conns)
        }
        // Over a Unix socket (`unix:PATH`), as the script names it: apart from TCP's figures.
        _ if record
            .get("target")
            .and_then(Value::as_str)
            .is_some_and(|target| target.starts_with("unix:")) =>
        {
            format!("{mode}-unix-{}x{}", int("conns"), int("size"))
        }
        _ => format!("{mode}-{}x{}", int("conns"), int("size")),
    }
}

/// Groups records by scenario (known ones first, in their order) and target.
fn group_scenarios(records: Vec<Value>) -> Vec<Scenario> {
    let mut scenarios: Vec<Scenario> = Vec::new();
    for record in records {
        let id = scenario_id(&record);
        let name = record
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("unnamed")
            .to_string();
        let index = match scenarios.iter().position(|s| s.id == id) {
            Some(index) => index,
            None => {
                let mode = record.get("mode").and_then(Value::as_str).map_or_else(
                    || id.split('-').next().unwrap_or("?").to_string(),
                    String::from,
                );
                scenarios.push(Scenario {
                    id,
                    mode,
                    targets: Vec::new(),
                });
                scenarios.len() - 1
            }
        };
        let targets = &mut scenarios[index].targets;
        match targets.iter_mut().find(|(n, _)| *n == name) {
            Some((_, runs)) => runs.push(record),
            None => targets.push((name, vec![record])),
        }
    }
    let rank = |id: &str| {
        KNOWN
            .iter()
            .position(|(k, _)| *k == id)
            .unwrap_or(KNOWN.len())
    };
    scenarios.sort_by_key(|s| rank(&s.id));
    scenarios
}

/// `key=value` lines; a missing file gives no facts.
fn read_machine(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// The hand-written section of an existing report, from its heading to the next `## ` heading.
fn speed_section(old: &str) -> Option<String> {
    let start = old.find(SPEED_HEADING)?;
    let body = &old[start + SPEED_HEADING.len()..];
    // Hand-written sections after it (such as the cost of TLS) come along too.
    Some(format!("{SPEED_HEADING}{body}"))
}

fn number(record: &Value, key: &str) -> Option<f64> {
    record.get(key).and_then(Value::as_f64)
}

/// A latency percentile; none when the run recorded no latency at all (all zero).
fn latency(record: &Value, key: &str) -> Option<f64> {
    let latencies = record.get("latency_us")?;
    if latencies.get("max").and_then(Value::as_f64) == Some(0.0) {
        return None;
    }
    latencies.get(key).and_then(Value::as_f64)
}

fn is_failed(record: &Value) -> bool {
    record.get("failed").is_some()
}

/// The median over the runs that measured something (the mean of the middle two for an even
/// count).
fn median_of(runs: &[Value], figure: impl Fn(&Value) -> Option<f64>) -> Option<f64> {
    let mut values: Vec<f64> = runs
        .iter()
        .filter(|r| !is_failed(r))
        .filter_map(figure)
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// `1234567.8` as `1,234,568`.
fn group(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    if value < -0.5 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds, shown in ms from 1 ms up.
fn micros(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

fn bytes(value: f64) -> String {
    if value.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", value / 1_048_576.0)
    } else if value.abs() >= 1024.0 {
        format!("{:.2} KiB", value / 1024.0)
    } else {
        format!("{value:.0} B")
    }
}

/// A table cell for an optional figure.
fn cell(value: Option<f64>, show: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "–".to_string(), show)
}

/// How socktalk compares with `other`: the ratio of their main figures, written so that above
/// 1 always favours socktalk on speed and below 1 on memory.
fn ratio(scenario: &Scenario, other: &str) -> String {
    let Some(ours) = scenario.socktalk() else {
        return "–".into();
    };
    if ours == other {
        return "—".into();
    }
    match (scenario.median_metric(ours), scenario.median_metric(other)) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

/// The medians table of one scenario.
fn table(scenario: &Scenario) -> String {
    type Column = (&'static str, Box<dyn Fn(&[Value]) -> String>);
    let med = |key: &'static str| move |runs: &[Value]| median_of(runs, |r| number(r, key));
    let lat = |key: &'static str| {
        move |runs: &[Value]| cell(median_of(runs, |r| latency(r, key)), micros)
    };
    let count = |key: &'static str| move |runs: &[Value]| cell(med(key)(runs), group);
    let mut columns: Vec<Column> = Vec::new();
    match scenario.mode.as_str() {
        "bulk" => {
            columns.push((
                "sent",
                Box::new(move |r| cell(med("tx_mb_s")(r), |v| format!("{v:.1} MB/s"))),
            ));
            columns.push((
                "received",
                Box::new(move |r| cell(med("rx_mb_s")(r), |v| format!("{v:.1} MB/s"))),
            ));
        }
        "hold" => {
            columns.push((
                "held of wanted",
                Box::new(move |r| {
                    format!(
                        "{} of {}",
                        cell(med("held")(r), group),
                        cell(med("wanted")(r), group)
                    )
                }),
            ));
            columns.push((
                "server RSS",
                Box::new(move |r| cell(med("rss_bytes")(r), bytes)),
            ));
            columns.push((
                "per connection",
                Box::new(move |r| cell(med("bytes_per_conn")(r), bytes)),
            ));
            columns.push(("stopped by", Box::new(stopped_by)));
        }
        mode => {
            let what = if mode == "fanout" {
                "deliveries/s"
            } else {
                "round trips/s"
            };
            columns.push((what, Box::new(move |r| cell(med("ops_per_s")(r), group))));
            columns.push(("p50", Box::new(lat("p50"))));
            columns.push(("p90", Box::new(lat("p90"))));
            columns.push(("p99", Box::new(lat("p99"))));
            columns.push(("max", Box::new(lat("max"))));
            if mode != "pingpong" {
                columns.push(("lost", Box::new(count("lost"))));
            }
            if mode == "pingpong" && scenario.has("slowest_conn_share") {
                columns.push((
                    "slowest conn",
                    Box::new(move |r| {
                        cell(med("slowest_conn_share")(r), |v| {
                            format!("{:.0}%", v * 100.0)
                        })
                    }),
                ));
            }
            if mode == "pingpong" || mode == "udp" {
                let per = |key: &'static str| {
                    move |r: &[Value]| {
                        cell(median_of(r, |v| cpu_per_op(v, key)), |v| {
                            format!("{v:.2} µs")
                        })
                    }
                };
                columns.push(("server CPU per trip", Box::new(per("server_cpu_ms"))));
                columns.push((
                    "load generator CPU per trip",
                    Box::new(per("client_cpu_ms")),
                ));
            }
            if mode == "fanout" {
                let ms = |key: &'static str| {
                    move |r: &[Value]| cell(med(key)(r), |v| format!("{v:.0} ms"))
                };
                columns.push(("server CPU", Box::new(ms("server_cpu_ms"))));
                columns.push(("load generator CPU", Box::new(ms("client_cpu_ms"))));
                columns.push(("each run (M/s)", Box::new(each_run_millions)));
            }
        }
    }
    columns.push(("errors", Box::new(count("errors"))));

    let direction = if scenario.metric().is_higher_better() {
        "socktalk ÷ this"
    } else {
        "socktalk ÷ this (lower is better)"
    };
    let mut out = String::from("| target | runs |");
    for (header, _) in &columns {
        let _ = write!(out, " {header} |");
    }
    let _ = writeln!(out, " {direction} |");
    out.push_str("|---|---|");
    out.push_str(&"---:|".repeat(columns.len() + 1));
    out.push('\n');
    for (name, runs) in &scenario.targets {
        let ok = runs.iter().filter(|r| !is_failed(r)).count();
        let _ = write!(out, "| {name} | {ok} of {} |", runs.len());
        for (_, show) in &columns {
            let _ = write!(out, " {} |", show(runs));
        }
        let _ = writeln!(out, " {} |", ratio(scenario, name));
    }
    let failures: Vec<String> = scenario
        .targets
        .iter()
        .flat_map(|(name, runs)| runs.iter().map(move |r| (name, r)))
        .filter_map(|(name, r)| {
            let why = r.get("failed")?.as_str().unwrap_or("failed");
            let rep = r.get("rep").and_then(Value::as_u64).unwrap_or(0);
            Some(format!("- {name}, repetition {rep}: {why}"))
        })
        .collect();
    if !failures.is_empty() {
        let _ = write!(out, "\nRuns that failed:\n\n{}\n", failures.join("\n"));
    }
    out
}

/// CPU microseconds per operation (round trip) from a run's `key` milliseconds.
fn cpu_per_op(record: &Value, key: &str) -> Option<f64> {
    let ops = number(record, "ops").filter(|ops| *ops > 0.0)?;
    Some(number(record, key)? * 1000.0 / ops)
}

/// Every run's deliveries per second in millions, sorted: shows a bimodal target at a glance.
fn each_run_millions(runs: &[Value]) -> String {
    let mut rates: Vec<f64> = runs.iter().filter_map(|r| number(r, "ops_per_s")).collect();
    rates.sort_by(f64::total_cmp);
    let shown: Vec<String> = rates.iter().map(|v| format!("{:.1}", v / 1e6)).collect();
    if shown.is_empty() {
        "–".into()
    } else {
        shown.join(", ")
    }
}

/// What stopped `hold` short, over all runs.
fn stopped_by(runs: &[Value]) -> String {
    let mut reasons: Vec<&str> = runs
        .iter()
        .filter_map(|r| r.get("stopped_by").and_then(Value::as_str))
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    if reasons.is_empty() {
        "–".into()
    } else {
        reasons.join("; ")
    }
}

/// One line of the issue's targets table.
struct Goal {
    what: &'static str,
    measured: String,
    met: Option<bool>,
}

impl Goal {
    fn unmeasured(what: &'static str, missing: &str) -> Self {
        Self {
            what,
            measured: format!("not measured ({missing})"),
            met: None,
        }
    }
}

/// The issue's targets, judged on the medians.
fn goals(scenarios: &[Scenario]) -> Vec<Goal> {
    let find = |id: &str| scenarios.iter().find(|s| s.id == id);
    let metric = |id: &str, target: &str| find(id).and_then(|s| s.median_metric(target));
    let lat = |id: &str, target: &str, key: &'static str| {
        find(id).and_then(|s| median_of(s.runs(target)?, |r| latency(r, key)))
    };
    let med = |id: &str, target: &str, key: &'static str| {
        find(id).and_then(|s| median_of(s.runs(target)?, |r| number(r, key)))
    };
    let mut goals = Vec::new();

    // Echo ping-pong, 50 connections: against the best of ncat and socat, and the bare ceiling.
    let what = "echo ping-pong, 50 conns: ≥ 2× the best of ncat and socat";
    let peers = [
        ("ncat", metric("pingpong-50x64", "ncat")),
        ("socat", metric("pingpong-50x64", "socat")),
    ];
    let best = peers
        .iter()
        .filter_map(|(n, v)| v.map(|v| (*n, v)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let per_trip = |target: &str| {
        find("pingpong-50x64")
            .and_then(|s| median_of(s.runs(target)?, |r| cpu_per_op(r, "server_cpu_ms")))
    };
    goals.push(match (metric("pingpong-50x64", "socktalk-echo"), best) {
        (Some(ours), Some((peer, theirs))) if theirs > 0.0 => Goal {
            what,
            measured: format!(
                "{:.2}× ({} vs {peer} {}){}",
                ours / theirs,
                Metric::OpsPerSecond.show(ours),
                Metric::OpsPerSecond.show(theirs),
                match (per_trip("socktalk-echo"), per_trip(peer)) {
                    (Some(a), Some(b)) => format!(
                        "; server CPU per round trip {a:.2} µs vs {peer} {b:.2} µs ({:.2}×)",
                        b / a
                    ),
                    _ => String::new(),
                }
            ),
            met: Some(ours >= 2.0 * theirs),
        },
        _ => Goal::unmeasured(what, "socktalk-echo, ncat or socat missing"),
    });
    goals.push(at_least_of_bare(
        "echo ping-pong, 50 conns: ≥ 90% of bare tokio",
        metric("pingpong-50x64", "socktalk-echo"),
        metric("pingpong-50x64", "bare-tokio"),
        Metric::OpsPerSecond,
    ));
    goals.push(at_least_of_bare(
        "bulk, 1 conn: ≥ 90% of bare tokio",
        metric("bulk-1x65536", "socktalk-echo"),
        metric("bulk-1x65536", "bare-tokio"),
        Metric::Megabytes,
    ));

    // Hold: memory per connection, and whether all 19,000 were held.
    let what = "hold: ≤ 4 KiB per connection at 19,000 (socktalk serve)";
    let held = med("hold-19000", "socktalk-serve", "held");
    goals.push(match held {
        Some(held) => {
            let per = med("hold-19000", "socktalk-serve", "bytes_per_conn");
            let wanted = med("hold-19000", "socktalk-serve", "wanted").unwrap_or(19_000.0);
            let why = find("hold-19000")
                .and_then(|s| s.runs("socktalk-serve"))
                .map(stopped_by)
                .filter(|s| s != "–");
            let mut measured = match per {
                Some(per) => format!("{} per connection, ", bytes(per)),
                None => "no memory figure, ".to_string(),
            };
            let _ = write!(measured, "{} of {} held", group(held), group(wanted));
            if let Some(why) = why {
                let _ = write!(measured, "; stopped by {why}");
            }
            Goal {
                what,
                measured,
                met: Some(per.is_some_and(|per| per <= 4096.0) && held >= wanted),
            }
        }
        None => Goal::unmeasured(what, "no hold run against socktalk-serve"),
    });

    // Fan-out: rate against ncat --chat, and tail latency at 1,000 receivers.
    let what = "fan-out 100 × 1,000: ≥ 3× ncat --chat";
    goals.push(
        match (
            metric("fanout-100x1000", "socktalk-serve"),
            metric("fanout-100x1000", "ncat-chat"),
        ) {
            (Some(ours), Some(theirs)) if theirs > 0.0 => {
                let lost = med("fanout-100x1000", "socktalk-serve", "lost").unwrap_or(0.0);
                Goal {
                    what,
                    measured: format!(
                        "{:.2}× ({} vs {}{})",
                        ours / theirs,
                        Metric::OpsPerSecond.show(ours),
                        Metric::OpsPerSecond.show(theirs),
                        if lost > 0.0 {
                            format!(", {} lost", group(lost))
                        } else {
                            String::new()
                        }
                    ),
                    met: Some(ours >= 3.0 * theirs && lost == 0.0),
                }
            }
            _ => Goal::unmeasured(what, "socktalk-serve or ncat-chat missing"),
        },
    );
    let what = "fan-out 1,000 × 1,000: p99 ≤ 50 ms";
    goals.push(match lat("fanout-1000x1000", "socktalk-serve", "p99") {
        Some(p99) => {
            let lost = med("fanout-1000x1000", "socktalk-serve", "lost").unwrap_or(0.0);
            Goal {
                what,
                measured: format!(
                    "p99 {}{}",
                    micros(p99),
                    if lost > 0.0 {
                        format!(", {} lost", group(lost))
                    } else {
                        String::new()
                    }
                ),
                met: Some(p99 <= 50_000.0 && lost == 0.0),
            }
        }
        None => Goal::unmeasured(what, "no fanout 1000×1000 run against socktalk-serve"),
    });

    // UDP: at least the Python UDPServer's rate, with a tail no worse.
    let what = "udp: ≥ Python UDPServer, p99 no worse";
    let ours = (
        metric("udp-1x64", "socktalk-echo-udp"),
        lat("udp-1x64", "socktalk-echo-udp", "p99"),
    );
    let theirs = (
        metric("udp-1x64", "python-udpserver"),
        lat("udp-1x64", "python-udpserver", "p99"),
    );
    goals.push(match (ours, theirs) {
        ((Some(rate), Some(p99)), (Some(their_rate), Some(their_p99))) => Goal {
            what,
            measured: format!(
                "{} vs {}; p99 {} vs {}",
                Metric::OpsPerSecond.show(rate),
                Metric::OpsPerSecond.show(their_rate),
                micros(p99),
                micros(their_p99)
            ),
            met: Some(rate >= their_rate && p99 <= their_p99),
        },
        _ => Goal::unmeasured(what, "socktalk-echo-udp or python-udpserver missing"),
    });
    goals
}

/// "socktalk reaches 90% of the bare tokio server".
fn at_least_of_bare(
    what: &'static str,
    ours: Option<f64>,
    bare: Option<f64>,
    metric: Metric,
) -> Goal {
    match (ours, bare) {
        (Some(ours), Some(bare)) if bare > 0.0 => Goal {
            what,
            measured: format!(
                "{:.1}% ({} vs {})",
                100.0 * ours / bare,
                metric.show(ours),
                metric.show(bare)
            ),
            met: Some(ours >= 0.9 * bare),
        },
        _ => Goal::unmeasured(what, "socktalk-echo or bare-tokio missing"),
    }
}

/// The whole of BENCHMARKS.md.
fn render(
    scenarios: &[Scenario],
    machine: &[(String, String)],
    charts: &BTreeMap<String, Vec<PathBuf>>,
    paths: &Paths,
    old_speed: Option<&str>,
) -> String {
    let fact = |key: &str| {
        machine
            .iter()
            .find(|(k, _)| k == key)
            .map_or("?", |(_, v)| v.as_str())
    };
    let mut out = String::new();
    out.push_str("# Benchmarks\n\n");
    out.push_str(
        "socktalk's servers against a bare tokio echo server (the ceiling), ncat, socat and the Python \
         `socketserver` classics, on loopback, measured with `socktalk bench`. Generated by \
         `bench/compare.sh` (through `examples/bench_report.rs`); do not edit by hand, except the \
         section on what we changed for speed.\n\n",
    );
    let _ = writeln!(
        out,
        "Each figure is the **median of {} repetition{}**; the targets were run in turn, round-robin \
         (every target once, then every target again, each time on a fresh server), so a slow \
         moment of the machine does not land on one target only. Timed runs: {} s warm-up, then \
         {} s measured.{} Raw results: `{}`.\n",
        fact("reps"),
        if fact("reps") == "1" { "" } else { "s" },
        fact("warmup"),
        fact("duration"),
        if fact("fanout_reps") == "?" {
            String::new()
        } else {
            format!(
                " Fan-out scenarios have {} repetitions: ncat --chat is bimodal there, and \
                 its median of 3 was a coin toss between its two modes.",
                fact("fanout_reps")
            )
        },
        paths.results.display()
    );

    out.push_str("## Machine\n\n| | |\n|---|---|\n");
    for (key, label) in [
        ("date", "date"),
        ("cpu", "CPU"),
        ("nproc", "cores (`nproc`)"),
        ("kernel", "kernel"),
        ("ulimit_n", "`ulimit -n`"),
        ("rustc", "rustc"),
        ("commit", "socktalk commit"),
        ("ncat", "ncat"),
        ("socat", "socat"),
        ("python", "python"),
        ("websocat", "websocat"),
    ] {
        if fact(key) != "?" {
            let _ = writeln!(out, "| {label} | {} |", fact(key));
        }
    }
    out.push('\n');
    out.push_str(
        "Client and servers share the machine's cores, so these are figures for comparison on \
         one machine, not absolute capacities.\n\n",
    );

    out.push_str("## The issue's targets\n\n| target | measured (medians) | |\n|---|---|---|\n");
    for goal in goals(scenarios) {
        let verdict = match goal.met {
            Some(true) => "**MET**",
            Some(false) => "**NOT MET**",
            None => "not measured",
        };
        let _ = writeln!(out, "| {} | {} | {verdict} |", goal.what, goal.measured);
    }
    out.push_str(
        "\nHow each target has fared over every full run so far, and why the ones not met are \
         not: [Where the targets stand, and why](#where-the-targets-stand-and-why), below.\n\n",
    );

    out.push_str("## Results\n\n");
    for scenario in scenarios {
        let _ = writeln!(out, "### {}\n", scenario.title());
        out.push_str(&table(scenario));
        out.push('\n');
        if scenario.mode == "fanout" && scenario.runs("ncat-chat").is_some() {
            out.push_str(
                "ncat --chat relays what it reads in chunks, not lines: it puts `<userN> ` before \
                 each chunk, so a line that straddles two chunks arrives cut in two and is \
                 counted lost. It does not set `TCP_NODELAY` (seen with strace), and in its slow \
                 runs the last lines arrive about 40 ms late, the minimum of Linux's delayed-ACK \
                 timer: Nagle's algorithm holding a small write until the previous one is \
                 acknowledged. Its fast runs are those where no such stall happened. The server \
                 CPU of `ncat` is its one process.\n\n",
            );
        }
        if scenario.mode == "pingpong" && scenario.has("slowest_conn_share") {
            out.push_str(
                "*slowest conn*: the round trips of the connection served least, as a share of \
                 the mean per connection (100% when the server shares itself evenly).\n\n",
            );
        }
        // `ncat` over TCP, `ncat-unix` over a Unix socket: the same relay, the same stall.
        let ncat_stalled = || {
            scenario
                .targets
                .iter()
                .filter(|(name, _)| name.starts_with("ncat"))
                .flat_map(|(_, runs)| runs)
                .any(|run| run["rx_mb_s"].as_f64().is_some_and(|rx| rx < 1.0))
        };
        if scenario.mode == "bulk" && ncat_stalled() {
            out.push_str(
                "`ncat -e` stops moving data once both directions are busy: it relays between \
                 the socket and the pipes of its `cat` child itself, and blocks writing to \
                 `cat`'s input while `cat` blocks writing to its full output pipe, which only \
                 ncat would read (both seen blocked in `write` in `/proc/PID/syscall`). After \
                 the first few megabytes nothing moves, so its figure is zero and counted as an \
                 error.\n\n",
            );
        }
        let ncat_unix_refused = scenario
            .runs("ncat-unix")
            .and_then(|runs| median_of(runs, |r| number(r, "errors")))
            .filter(|errors| *errors > 0.0);
        if scenario.mode == "pingpong"
            && let Some(errors) = ncat_unix_refused
        {
            let conns = scenario
                .runs("ncat-unix")
                .and_then(|runs| median_of(runs, |r| number(r, "conns")))
                .map_or_else(String::new, |conns| format!(" {}", group(conns)));
            let _ = writeln!(
                out,
                "`ncat -U` listens with a backlog of 10 and has no option to raise it. A Unix \
                 socket's connect to a full accept queue fails at once (`resource temporarily \
                 unavailable`), where TCP would send its SYN again, so {} of the{conns} connections, \
                 opened together, were refused (the median): ncat's figure is for the rest. \
                 socat's backlog (5 by default) is raised with its `backlog=` option.\n",
                group(errors)
            );
        }
        if let Some(line) = unix_against_tcp(scenario, scenarios) {
            out.push_str(&line);
        }
        for chart in charts.get(&scenario.id).into_iter().flatten() {
            let link = relative_link(&paths.out, chart);
            let is_p99 = chart.to_string_lossy().ends_with("-p99.svg");
            let what = if is_p99 { ": p99 latency" } else { "" };
            let _ = writeln!(out, "![{}{what}]({link})", scenario.title());
        }
        out.push('\n');
    }
    if scenarios.iter().any(|s| s.mode == "hold") {
        out.push_str(
            "Hold: socktalk's servers run with `--max-conns` above the count (their default cap \
             is 10,000). ncat `-e` and socat `fork` are not held: they start a process per \
             connection, and `--pid` would see only the parent; for them the issue's figures \
             are the anchors, not measured here.",
        );
        if scenarios
            .iter()
            .any(|s| s.mode == "hold" && s.runs("python-threading").is_some())
        {
            out.push_str(
                " The Python `ThreadingTCPServer` (a thread per connection) is held in the first \
                 repetition only, as it takes the longest.",
            );
        }
        out.push_str("\n\n");
    }

    let commands: Vec<_> = machine
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("target.")?, v)))
        .collect();
    if !commands.is_empty() {
        out.push_str("## Targets\n\n| name | command |\n|---|---|\n");
        for (name, command) in commands {
            let _ = writeln!(out, "| {name} | `{command}` |");
        }
        out.push('\n');
    }

    match old_speed {
        Some(section) => {
            out.push_str(section.trim_end());
            out.push('\n');
        }
        None => {
            let _ = writeln!(
                out,
                "{SPEED_HEADING}\n\n_To be written: what was changed in socktalk for these figures, \
                 and what each change gained._"
            );
        }
    }
    out
}

/// For a Unix-socket scenario (`pingpong-unix-50x64`) whose TCP counterpart (`pingpong-50x64`)
/// was run too: a sentence on what the Unix socket gives socktalk's echo server and the bare
/// tokio loop over TCP, from the medians of the two scenarios.
fn unix_against_tcp(unix: &Scenario, scenarios: &[Scenario]) -> Option<String> {
    let (mode, rest) = unix.id.split_once("-unix-")?;
    let tcp_id = format!("{mode}-{rest}");
    let tcp = scenarios.iter().find(|s| s.id == tcp_id)?;
    let metric = unix.metric();
    let pairs = [
        (
            "socktalk's echo server",
            "socktalk-echo-unix",
            "socktalk-echo",
        ),
        ("the bare tokio loop", "bare-tokio-unix", "bare-tokio"),
    ];
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(who, over_unix, over_tcp)| {
            let ours = unix.median_metric(over_unix)?;
            let theirs = tcp.median_metric(over_tcp).filter(|v| *v > 0.0)?;
            Some(format!(
                "{who} {:.2}× ({} vs {})",
                ours / theirs,
                metric.show(ours),
                metric.show(theirs)
            ))
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    Some(format!(
        "Over a Unix socket against over TCP (`{tcp_id}`, above): {}.\n\n",
        parts.join("; ")
    ))
}

/// `chart` as a link relative to the directory of `doc`.
fn relative_link(doc: &Path, chart: &Path) -> String {
    let base = doc.parent().filter(|p| !p.as_os_str().is_empty());
    let rel = base
        .and_then(|b| chart.strip_prefix(b).ok())
        .unwrap_or(chart);
    rel.to_string_lossy().replace('\\', "/")
}

/// Bar charts of one scenario: its main figure, and p99 latency where measured.
fn draw_charts(scenario: &Scenario, dir: &Path) -> Result<Vec<PathBuf>> {
    let metric = scenario.metric();
    let bars = |figure: &dyn Fn(&[Value]) -> Option<f64>| -> Vec<(String, f64)> {
        scenario
            .targets
            .iter()
            .filter_map(|(name, runs)| Some((name.clone(), figure(runs)?)))
            .collect()
    };
    let mut written = Vec::new();
    let main = bars(&|runs| median_of(runs, |r| metric.value(r)));
    if !main.is_empty() {
        let path = dir.join(format!("{}.svg", scenario.id));
        let better = if metric.is_higher_better() {
            "higher is better"
        } else {
            "lower is better"
        };
        bar_chart(
            &path,
            &format!("{} ({better})", scenario.title()),
            metric.unit(&scenario.mode),
            &main,
            |v| metric.show(v),
        )?;
        written.push(path);
    }
    let p99 = bars(&|runs| median_of(runs, |r| latency(r, "p99")));
    if !p99.is_empty() {
        let path = dir.join(format!("{}-p99.svg", scenario.id));
        bar_chart(
            &path,
            &format!("{}: p99 latency (lower is better)", scenario.title()),
            "microseconds",
            &p99,
            micros,
        )?;
        written.push(path);
    }
    Ok(written)
}

/// One SVG bar chart; socktalk's bars in one colour, the others in grey.
fn bar_chart(
    path: &Path,
    title: &str,
    unit: &str,
    bars: &[(String, f64)],
    label: impl Fn(f64) -> String,
) -> Result<()> {
    let ours = RGBColor(0x1f, 0x6f, 0xb4);
    let theirs = RGBColor(0x9a, 0x9a, 0x9a);
    let width = 160 + 150 * bars.len() as u32;
    let root = SVGBackend::new(path, (width.max(640), 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let count = bars.len() as i32;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(90)
        // A segmented range 0..n has n + 1 slots: one per bar is 0..n - 1.
        .build_cartesian_2d((0..(count - 1).max(0)).into_segmented(), 0.0..top)?;
    let name_of = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => bars
            .get(*i as usize)
            .map_or_else(String::new, |(name, _)| name.clone()),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&name_of)
        .y_desc(unit)
        .y_label_formatter(&|v| group(*v))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (name, value))| {
        let colour = if name.starts_with("socktalk") {
            ours
        } else {
            theirs
        };
        let i = i as i32;
        // The last slot has no `Exact(i + 1)` inside the range: it ends at `Last`.
        let right = if i + 1 == count {
            SegmentValue::Last
        } else {
            SegmentValue::Exact(i + 1)
        };
        let mut bar = Rectangle::new(
            [(SegmentValue::Exact(i), 0.0), (right, *value)],
            colour.filled(),
        );
        bar.set_margin(0, 0, 12, 12);
        bar
    }))?;
    let text = ("sans-serif", 14)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, value))| {
        Text::new(
            label(*value),
            (SegmentValue::CenterOf(i as i32), *value),
            text.clone(),
        )
    }))?;
    root.present()?;
    Ok(())
}
