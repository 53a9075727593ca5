//! CPU time used by a process, read from `/proc`: the load generator's own, and with `--pid`
//! the server's, its child processes included (`ncat -e` and `socat fork` serve each
//! connection from a child). Client and server share the machine's cores, so a figure means
//! more beside what each side spent to reach it.

/// CPU time used so far by `pid` and its descendants, in nanoseconds (`None` off Linux, or when
/// the process is gone). Only live threads count: time of threads and processes that have ended
/// is not in `/proc` any more.
pub fn used_ns(pid: u32) -> Option<u64> {
    let mut total = threads_ns(pid)?;
    for child in descendants(pid) {
        total += threads_ns(child).unwrap_or(0);
    }
    Some(total)
}

/// Every live descendant of `pid`, found through the parent ids in `/proc/*/stat`.
fn descendants(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = entries
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`: the command may hold spaces and parentheses.
            let after = &stat[stat.rfind(')')? + 1..];
            let parent = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((child, parent))
        })
        .collect();
    let mut found = vec![pid];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        next += 1;
    }
    found.remove(0);
    found
}

/// CPU time used so far by every live thread of `pid`, in nanoseconds.
fn threads_ns(pid: u32) -> Option<u64> {
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

    #[test]
    fn a_child_process_counts_toward_its_parent() {
        // A shell that starts a busy child: the child's time is the parent's too.
        let mut shell = std::process::Command::new("sh")
            .args([
                "-c",
                "sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done'; sleep 5",
            ])
            .spawn()
            .unwrap();
        let pid = shell.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        // The shell itself waits; what its child has used shows only with descendants counted.
        let mut childrens_ns = 0;
        while childrens_ns == 0 && std::time::Instant::now() < deadline {
            let (all, alone) = (used_ns(pid), threads_ns(pid));
            childrens_ns = all.unwrap_or(0).saturating_sub(alone.unwrap_or(0));
        }
        let _ = shell.kill();
        let _ = shell.wait();
        assert!(
            childrens_ns > 0,
            "no CPU time found for the children of {pid}"
        );
    }
}
