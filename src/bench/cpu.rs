//! CPU time used by a process, read from `/proc`: the load generator's own, and with `--pid`
//! the server's. Client and server share the machine's cores, so a latency figure means more
//! beside what each side spent to reach it.

/// CPU time used so far by every live thread of `pid`, in nanoseconds (`None` off Linux, or
/// when the process is gone). Threads that have ended are not counted.
pub fn used_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        // The first field of `schedstat` is the time on CPU in nanoseconds.
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// CPU time of this process and, optionally, of the server, from a starting point.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    server: Option<u32>,
    client_ns: Option<u64>,
    server_ns: Option<u64>,
}

impl Stopwatch {
    /// Starts counting now.
    pub fn start(server: Option<u32>) -> Self {
        Self {
            server,
            client_ns: used_ns(std::process::id()),
            server_ns: server.and_then(used_ns),
        }
    }

    /// Milliseconds of CPU used since the start by this process and by the server.
    pub fn elapsed_ms(&self) -> (Option<f64>, Option<f64>) {
        let since =
            |start: Option<u64>, now: Option<u64>| Some(now?.saturating_sub(start?) as f64 / 1e6);
        (
            since(self.client_ns, used_ns(std::process::id())),
            since(self.server_ns, self.server.and_then(used_ns)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_uses_cpu() {
        let watch = Stopwatch::start(Some(std::process::id()));
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let (client, server) = watch.elapsed_ms();
        assert!(client.is_some_and(|ms| ms > 0.0), "{client:?}");
        assert!(server.is_some_and(|ms| ms > 0.0), "{server:?}");
        assert_eq!(Stopwatch::start(None).elapsed_ms().1, None);
    }
}
