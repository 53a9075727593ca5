#!/usr/bin/env python3
"""The classic lesson's upper-case server: socketserver.ThreadingTCPServer, one thread per client.

Written the way the lessons write it, so the benchmark compares socktalk with what people start from.

    python3 upper_server.py [HOST [PORT]]      # defaults 127.0.0.1 0 (0: the kernel picks a port)

Its first line on stdout is `listening on tcp://HOST:PORT`, like socktalk's servers.
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


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    # Room for many clients connecting at once.
    request_queue_size = 1024


def main():
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    with Server((host, port), UpperHandler) as server:
        bound_host, bound_port = server.server_address[:2]
        print(f"listening on tcp://{bound_host}:{bound_port}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
