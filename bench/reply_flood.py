#!/usr/bin/env python3
"""Big replies to one member against a running `socktalk serve` (run it with `--max-rate 0
--max-conns-per-ip 0`; the connections stay within this process's `ulimit -n`).

    python3 bench/reply_flood.py who-flood HOST:PORT --pid PID [--members 2000] [--count 20000]
    python3 bench/reply_flood.py who-time HOST:PORT --pid PID [--members 5000] [--count 2000]
    python3 bench/reply_flood.py history-stall HOST:PORT [--readers 4] [--seconds 5]

who-flood: `--members` idle members in #lobby, then one more sends `--count` `/who` and never
reads. Prints the server's resident memory (VmRSS, from /proc) before, at its highest during the
flood, and after the flooder is gone.

who-time: `--members` in #lobby, then one member sends `--count` `/who` at once and reads every
reply (50 outstanding at a time). Prints the time per reply and the server's CPU time per reply.

history-stall: `--readers` members (in JSON mode) ask for 1000 messages before a random ID
as fast as the replies come back, while a probe times `/rooms` round trips, one at a time: how
long the hub keeps everyone else waiting. The room needs history (seed it with
`python3 bench/reply_flood.py seed DB --messages 100000` before starting the server).
"""
import argparse
import json
import os
import random
import socket
import sqlite3
import statistics
import sys
import threading
import time


# `/who` requests who-time keeps outstanding.
WHO_WINDOW = 50


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_ms(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def read_until(conn, buf, needle):
    while needle not in buf:
        chunk = conn.recv(1 << 16)
        if not chunk:
            raise EOFError(f"closed before {needle!r}")
        buf += chunk
    at = buf.index(needle) + len(needle)
    return buf[at:]


def crowd(addr, members):
    """Connects `members` idle members and waits until the server counts them all in #lobby."""
    conns = []
    for _ in range(members):
        conn = socket.create_connection(addr)
        conns.append(conn)
    probe = socket.create_connection(addr)
    buf = read_until(probe, b"", b"welcome")
    want = b"#lobby (%d)" % (members + 1)
    while True:
        probe.sendall(b"/rooms\n")
        try:
            probe.settimeout(0.5)
            buf = read_until(probe, buf, want)
            break
        except socket.timeout:
            continue
    probe.settimeout(None)
    return conns, probe


def who_flood(args):
    conns, probe = crowd(args.addr, args.members)
    before = rss_kib(args.pid)
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(args.pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    flooder = socket.create_connection(args.addr)
    flooder.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    started = time.monotonic()
    sent = 0
    try:
        batch = b"/who\n" * 100
        while sent < args.count:
            flooder.sendall(batch)
            sent += 100
    except OSError:
        pass
    # Until the server cuts the flooder off (it leaves #lobby), or a minute.
    gone = b"#lobby (%d)" % (args.members + 1)
    there = b"#lobby (%d)" % (args.members + 2)
    was_there = False
    buf = b""
    deadline = time.monotonic() + 60
    probe.settimeout(1)
    while time.monotonic() < deadline:
        probe.sendall(b"/rooms\n")
        try:
            buf = read_until(probe, buf, b"* rooms:")
            line, _, buf = buf.partition(b"\n")
            line += b","
            was_there = was_there or there + b"," in line
            if was_there and gone + b"," in line:
                break
        except socket.timeout:
            pass
        time.sleep(0.05)
    cut_off = time.monotonic() - started
    during = peak[0]
    flooder.close()
    time.sleep(1)
    done.set()
    sampler.join()
    after = rss_kib(args.pid)
    print(json.dumps({
        "mode": "who-flood", "members": args.members, "sent": sent,
        "cut_off_after_s": round(cut_off, 2),
        "rss_before_kib": before, "rss_peak_kib": during, "rss_after_kib": after,
    }))
    for conn in conns:
        conn.close()
    probe.close()


def who_time(args):
    conns, probe = crowd(args.addr, args.members)
    want = b"* #lobby (%d)" % (args.members + 1)
    cpu0 = cpu_ms(args.pid)
    started = time.monotonic()
    result = {}

    # In windows of WHO_WINDOW: a member asking for far more than it reads is cut off.
    buf = b""
    seen = 0
    while seen < args.count:
        window = min(WHO_WINDOW, args.count - seen)
        probe.sendall(b"/who\n" * window)
        got = 0
        while got < window:
            chunk = probe.recv(1 << 20)
            if not chunk:
                raise EOFError("the server closed the connection")
            buf += chunk
            whole = buf.rfind(b"\n") + 1
            got += buf[:whole].count(want)
            buf = buf[whole:]
        seen += got
    result["seen"] = seen
    elapsed = time.monotonic() - started
    cpu = cpu_ms(args.pid) - cpu0
    print(json.dumps({
        "mode": "who-time", "members": args.members, "replies": result["seen"],
        "us_per_reply": round(elapsed * 1e6 / max(result["seen"], 1), 1),
        "server_cpu_us_per_reply": round(cpu * 1e3 / max(result["seen"], 1), 1),
    }))
    for conn in conns:
        conn.close()
    probe.close()


def history_stall(args):
    stop = threading.Event()
    replies = [0]
    newest = args.newest

    def reader():
        conn = socket.create_connection(args.addr)
        buf = read_until(conn, b"", b"welcome")
        conn.sendall(b"/json\n")
        buf = read_until(conn, buf, b'"type":"state"')
        while not stop.is_set():
            before = random.randint(1001, newest)
            conn.sendall(b'{"type":"history","limit":1000,"before":%d}\n' % before)
            buf = read_until(conn, buf, b'"type":"history"')
            replies[0] += 1
        conn.close()

    probe = socket.create_connection(args.addr)
    buf = read_until(probe, b"", b"welcome")
    probe.sendall(b"/part\n")
    buf = read_until(probe, buf, b"you are in no room now")
    threads = [threading.Thread(target=reader) for _ in range(args.readers)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    rtts = []
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        sent = time.perf_counter()
        probe.sendall(b"/rooms\n")
        buf = read_until(probe, buf, b"* rooms:")
        rtts.append((time.perf_counter() - sent) * 1e6)
    stop.set()
    for thread in threads:
        thread.join()
    rtts.sort()
    print(json.dumps({
        "mode": "history-stall", "readers": args.readers, "histories": replies[0],
        "probes": len(rtts),
        "probe_us_p50": round(statistics.median(rtts)),
        "probe_us_p99": round(rtts[int(len(rtts) * 0.99)]),
        "probe_us_max": round(rtts[-1]),
    }))


def seed(args):
    db = sqlite3.connect(args.db)
    db.executescript("""
        CREATE TABLE IF NOT EXISTS messages (
            id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL, room TEXT,
            nick TEXT NOT NULL, recipient TEXT, text TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room, id);""")
    now = int(time.time() * 1000)
    db.executemany(
        "INSERT INTO messages (ts, kind, room, nick, text) VALUES (?, 'say', '#lobby', ?, ?)",
        ((now, f"nick{i % 50}", f"history line number {i} with some words in it")
         for i in range(args.messages)))
    db.commit()
    print(json.dumps({"mode": "seed", "messages": args.messages}))


def main():
    import resource
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["who-flood", "who-time", "history-stall", "seed"])
    parser.add_argument("addr")
    parser.add_argument("--pid", type=int)
    parser.add_argument("--members", type=int)
    parser.add_argument("--count", type=int)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--newest", type=int, default=100000)
    parser.add_argument("--messages", type=int, default=100000)
    args = parser.parse_args()
    if args.mode == "seed":
        args.db = args.addr
        return seed(args)
    host, port = args.addr.rsplit(":", 1)
    args.addr = (host, int(port))
    if args.mode == "who-flood":
        args.members = args.members or 2000
        args.count = args.count or 20000
        who_flood(args)
    elif args.mode == "who-time":
        args.members = args.members or 5000
        args.count = args.count or 2000
        who_time(args)
    else:
        history_stall(args)


if __name__ == "__main__":
    sys.exit(main())
