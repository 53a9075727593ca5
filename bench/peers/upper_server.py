#!/usr/bin/env python3
"""The classic lesson's upper-case server: socketserver.ThreadingTCPServer, one thread per client,
or its Unix-socket twin, socketserver.ThreadingUnixStreamServer.

Written the way the lessons write it, so the benchmark compares socktalk with what people start from.

    python3 upper_server.py [HOST [PORT]]      # defaults 127.0.0.1 0 (0: the kernel picks a port)
    python3 upper_server.py unix:PATH          # a Unix stream socket at PATH (a new file)

Its first line on stdout is `listening on tcp://HOST:PORT` or `listening on unix:PATH`, like
socktalk's servers. As in the lessons, the socket file is left behind when the server is killed.
"""
import socketserver
import sys


class UpperHandler(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(1024)
            if not data:
                break
            self.request.sendall(data.upper())


class TcpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    # Room for many clients connecting at once.
    request_queue_size = 1024


class UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    request_queue_size = 1024


def main():
    first = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    if first.startswith("unix:"):
        path = first[len("unix:"):]
        server, shown = UnixServer(path, UpperHandler), f"unix:{path}"
    else:
        port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
        server = TcpServer((first, port), UpperHandler)
        bound_host, bound_port = server.server_address[:2]
        shown = f"tcp://{bound_host}:{bound_port}"
    with server:
        print(f"listening on {shown}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
