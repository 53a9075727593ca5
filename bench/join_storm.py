#!/usr/bin/env python3
"""A join storm against a running `socktalk serve`: many clients connecting at once, as after a restart.

    python3 bench/join_storm.py HOST:PORT [--conns 1000] [--lines 60] [--room '#lobby'] [--pid PID]

It first says `--lines` messages in `--room` (the replay on joining shows the last 20 of them by
default), then opens `--conns` connections at once, each joining that room once it is in (unless
it is `#lobby`, where everyone starts), and waits until every one of them has been replayed the
last of those lines. It prints one JSON object: how long that took and, with
`--pid`, the server's CPU time meanwhile (from /proc, in clock ticks of usually 10 ms). Run the
server with `--max-rate 0 --max-conns-per-ip 0`, or its flood limits shape the storm; the
connections stay within the open-file limit of this process (`ulimit -n`).
"""
import argparse
import json
import os
import selectors
import socket
import sys
import time


def server_cpu_ms(pid):
    if pid is None:
        return None
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def seed(addr, tag, lines, join):
    with socket.create_connection(addr) as conn:
        conn.sendall(join)
        conn.sendall(b"".join(b"%s history line %d\n" % (tag, i) for i in range(lines)))
        conn.sendall(b"/quit\n")
        conn.settimeout(10)
        while conn.recv(65536):
            pass


def storm(addr, last, conns, join, timeout):
    sel = selectors.DefaultSelector()
    opened = []
    # With a room to join, each connection first waits to be writable (connected), sends the
    # join, and then reads.
    first = selectors.EVENT_WRITE if join else selectors.EVENT_READ
    for _ in range(conns):
        conn = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET)
        conn.setblocking(False)
        try:
            conn.connect(addr)
        except BlockingIOError:
            pass
        sel.register(conn, first, bytearray())
        opened.append(conn)
    waiting, failed = conns, 0
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for key, events in sel.select(1):
            try:
                if events & selectors.EVENT_WRITE:
                    key.fileobj.send(join)
                    sel.modify(key.fileobj, selectors.EVENT_READ, key.data)
                    continue
                data = key.fileobj.recv(65536)
            except OSError:
                data = b""
            key.data.extend(data)
            if not data or last in key.data:
                failed += not data
                sel.unregister(key.fileobj)
                waiting -= 1
            else:
                # Keep only what may hold the start of `last`.
                del key.data[: -len(last)]
    for conn in opened:
        conn.close()
    return failed + waiting


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("addr", help="HOST:PORT of the chat server")
    parser.add_argument("--conns", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=60)
    parser.add_argument("--room", default="#lobby", help="the room to fill and join")
    parser.add_argument("--pid", type=int, help="the server's process, to read its CPU time")
    parser.add_argument("--timeout", type=float, default=30, help="seconds to wait in all")
    args = parser.parse_args()
    host, _, port = args.addr.rpartition(":")
    addr = (host.strip("[]"), int(port))
    tag = b"storm%x" % time.monotonic_ns()
    join = b"" if args.room == "#lobby" else b"/join %s\n" % args.room.encode()
    seed(addr, tag, args.lines, join)
    last = b"%s history line %d" % (tag, args.lines - 1)
    cpu = server_cpu_ms(args.pid)
    start = time.perf_counter()
    unserved = storm(addr, last, args.conns, join, args.timeout)
    secs = time.perf_counter() - start
    report = {
        "mode": "join-storm",
        "room": args.room,
        "conns": args.conns,
        "secs": secs,
        "unserved": unserved,
    }
    if cpu is not None:
        report["server_cpu_ms"] = server_cpu_ms(args.pid) - cpu
    print(json.dumps(report))
    return 1 if unserved else 0


if __name__ == "__main__":
    sys.exit(main())
