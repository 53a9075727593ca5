#!/usr/bin/env python3
"""The classic lesson's UDP upper-case server: socketserver.UDPServer, each datagram answered in turn.

    python3 udp_upper_server.py [HOST [PORT]]  # defaults 127.0.0.1 0 (0: the kernel picks a port)

Its first line on stdout is `listening on udp://HOST:PORT`, like socktalk's servers.
"""
import socketserver
import sys


class UpperHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data.upper(), self.client_address)


class Server(socketserver.UDPServer):
    allow_reuse_address = True
    # Datagrams up to the largest UDP payload.
    max_packet_size = 65535


def main():
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    with Server((host, port), UpperHandler) as server:
        bound_host, bound_port = server.server_address[:2]
        print(f"listening on udp://{bound_host}:{bound_port}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
