#!/usr/bin/env python3
"""Piping a file through a netcat-class pair: `socktalk connect -l` receiving what `socktalk
connect` reads from its stdin, against the same pair of `ncat` and of `socat`, on loopback.

    python3 bench/pipe.py                      # 1 GB, 5 alternating repetitions
    python3 bench/pipe.py --size-mb 200 --reps 3
    python3 bench/pipe.py --socktalk /tmp/old/socktalk --label old   # another build, for an A/B
    python3 bench/pipe.py --write              # also rewrite its section of BENCHMARKS.md

Each run feeds SIZE bytes of `head -c SIZE /dev/zero` to the sending side and throws away what
the receiving side prints (`> /dev/null`). The figure is SIZE over the time from starting the
sender to both ends having exited, and the CPU time (user + system) both processes used, from
wait4(2). The targets take turns, in an order rotated every repetition; the table gives medians.
Both ends run on the machine's shared cores, like every socktalk benchmark.
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time

SECTION = "## Piping a file through `connect`"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def targets(args):
    st = args.socktalk
    found = {
        args.label: (
            [st, "-q", "connect", "-l", "127.0.0.1:{PORT}"],
            [st, "-q", "connect", "127.0.0.1:{PORT}"],
        ),
        "ncat": (
            ["ncat", "-l", "127.0.0.1", "{PORT}"],
            ["ncat", "--send-only", "127.0.0.1", "{PORT}"],
        ),
        "socat": (
            ["socat", "-u", "TCP-LISTEN:{PORT},bind=127.0.0.1,reuseaddr", "STDOUT"],
            ["socat", "-u", "STDIN", "TCP:127.0.0.1:{PORT}"],
        ),
    }
    for other in args.also:
        label, _, path = other.partition("=")
        found[label] = (
            [path, "-q", "connect", "-l", "127.0.0.1:{PORT}"],
            [path, "-q", "connect", "127.0.0.1:{PORT}"],
        )
    return found


def wait_listening(port, proc, deadline=5.0):
    """Waits until something accepts on the port (a connect that is then closed at once
    would be the listener's one peer, so the listening socket is looked for in /proc)."""
    needle = f":{port:04X} "
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"the listener exited early: {proc.args}")
        with open("/proc/net/tcp") as table:
            for line in table:
                fields = line.split()
                if len(fields) > 3 and fields[1].endswith(needle.strip()) and fields[3] == "0A":
                    return
        time.sleep(0.005)
    sys.exit(f"nothing listening on port {port}: {proc.args}")


def run_once(listen_cmd, send_cmd, size):
    port = free_port()
    listen_cmd = [a.replace("{PORT}", str(port)) for a in listen_cmd]
    send_cmd = [a.replace("{PORT}", str(port)) for a in send_cmd]
    listener = subprocess.Popen(listen_cmd, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    wait_listening(port, listener)
    start = time.monotonic()
    source = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
    sender = subprocess.Popen(send_cmd, stdin=source.stdout, stdout=subprocess.DEVNULL)
    source.stdout.close()
    cpu = 0.0
    for proc in (sender, listener):
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
    elapsed = time.monotonic() - start
    source.wait()
    if sender.returncode or listener.returncode:
        return None
    return size / elapsed / 1e6, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1000, help="megabytes piped per run")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--socktalk", default="target/release/socktalk")
    parser.add_argument("--label", default="socktalk")
    parser.add_argument("--also", action="append", default=[], metavar="LABEL=PATH",
                        help="another socktalk build to compare")
    parser.add_argument("--write", action="store_true", help="rewrite the section in BENCHMARKS.md")
    args = parser.parse_args()
    size = args.size_mb * 1_000_000
    all_targets = targets(args)
    results = {name: [] for name in all_targets}
    names = list(all_targets)
    for rep in range(args.reps):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for name in order:
            got = run_once(*all_targets[name], size)
            results[name].append(got)
            shown = "failed" if got is None else f"{got[0]:,.0f} MB/s, CPU {got[1]:.2f} s"
            print(f"[pipe] {rep + 1}/{args.reps} {name}: {shown}", file=sys.stderr)

    base = results[args.label]
    base_rate = statistics.median(r[0] for r in base if r) if any(base) else None
    lines = [
        "| target | runs | MB/s (median) | each run (MB/s) | CPU, both ends (median) | "
        f"{args.label} ÷ this |",
        "|---|---|---:|---|---:|---:|",
    ]
    for name in names:
        ok = [r for r in results[name] if r]
        if not ok:
            lines.append(f"| {name} | 0 of {args.reps} | failed | – | – | – |")
            continue
        rate = statistics.median(r[0] for r in ok)
        cpu = statistics.median(r[1] for r in ok)
        each = ", ".join(f"{r[0]:,.0f}" for r in sorted(ok))
        ratio = "—" if name == args.label else (f"{base_rate / rate:.2f}×" if base_rate else "–")
        lines.append(f"| {name} | {len(ok)} of {args.reps} | {rate:,.0f} | {each} | "
                     f"{cpu:.2f} s | {ratio} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section(table, args)


def write_section(table, args):
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = f"""{SECTION}

`python3 bench/pipe.py --size-mb {args.size_mb} --reps {args.reps}` ({date}, commit {commit}):
{args.size_mb:,} MB of `/dev/zero` piped into the sending end, the receiving end's output thrown
away, each pair on loopback; the rate is the size over the time until both ends exited, the CPU
that of both processes. Medians of {args.reps} alternating runs.

{table}

"""
    doc = open("BENCHMARKS.md").read()
    start = doc.find(SECTION)
    if start >= 0:
        rest = doc[start + len(SECTION):]
        nxt = re.search(r"\n## ", rest)
        doc = doc[:start] + section + (rest[nxt.start() + 1:] if nxt else "")
    else:
        doc = doc.rstrip("\n") + "\n\n" + section
    open("BENCHMARKS.md", "w").write(doc.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
