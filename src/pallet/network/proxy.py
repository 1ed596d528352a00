"""The userland port proxy of one endpoint (`python -m pallet.network.proxy`), like docker-proxy.

It receives already-bound host sockets (inherited fds: the engine binds them so that "address
already in use" is reported by the command that asked) and relays each to the container's address.
TCP: one thread per direction per connection, copying with splice(2) through a pipe, so the bytes
never enter Python. UDP: one upstream socket per client address, dropped after 90 s idle, as docker.
It serves traffic that nftables cannot DNAT: connections from the host to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import socket
import threading
import time
from pathlib import Path

from pallet.network import daemon

CONNECT_TIMEOUT = 5.0
UDP_IDLE = 90.0
CHUNK = 1 << 20
F_SETPIPE_SZ = 1031


def _pump(src: socket.socket, dst: socket.socket, done: threading.Semaphore) -> None:
    r, w = os.pipe()
    try:
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, CHUNK)
        except OSError:
            pass
        sfd, dfd = src.fileno(), dst.fileno()
        while True:
            n = os.splice(sfd, w, CHUNK, flags=os.SPLICE_F_MOVE)
            if n == 0:
                break
            while n:
                n -= os.splice(r, dfd, n, flags=os.SPLICE_F_MOVE)
    except OSError:
        pass
    finally:
        os.close(r)
        os.close(w)
        try:
            dst.shutdown(socket.SHUT_WR)  # pass the half-close on
        except OSError:
            pass
        done.release()


def _relay(client: socket.socket, target: tuple[str, int]) -> None:
    try:
        upstream = socket.create_connection(target, timeout=CONNECT_TIMEOUT)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    for s in (client, upstream):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    done = threading.Semaphore(0)
    threading.Thread(target=_pump, args=(upstream, client, done), daemon=True).start()
    _pump(client, upstream, done)
    done.acquire()
    done.acquire()
    client.close()
    upstream.close()


def serve_tcp(listener: socket.socket, target: tuple[str, int]) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            time.sleep(0.01)
            continue
        threading.Thread(target=_relay, args=(client, target), daemon=True).start()


class _UdpFlow:
    def __init__(self, listener: socket.socket, client: tuple[str, int], target: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(target)
        self.sock.settimeout(UDP_IDLE)
        self.listener = listener
        self.client = client
        self.last = time.monotonic()

    def replies(self, flows: dict[tuple[str, int], _UdpFlow], lock: threading.Lock) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                if time.monotonic() - self.last >= UDP_IDLE:
                    break
                continue
            except OSError:
                break
            self.last = time.monotonic()
            try:
                self.listener.sendto(data, self.client)
            except OSError:
                pass
        with lock:
            flows.pop(self.client, None)
        self.sock.close()


def serve_udp(listener: socket.socket, target: tuple[str, int]) -> None:
    flows: dict[tuple[str, int], _UdpFlow] = {}
    lock = threading.Lock()
    while True:
        try:
            data, client = listener.recvfrom(65535)
        except OSError:
            time.sleep(0.01)
            continue
        with lock:
            flow = flows.get(client)
            if flow is None:
                try:
                    flow = _UdpFlow(listener, client, target)
                except OSError:
                    continue
                flows[client] = flow
                threading.Thread(target=flow.replies, args=(flows, lock), daemon=True).start()
        flow.last = time.monotonic()
        try:
            flow.sock.send(data)
        except OSError:
            pass


def parse_map(spec: str) -> tuple[int, str, tuple[str, int]]:
    """FD:PROTO:TARGET_IP:TARGET_PORT"""
    fd, proto, ip, port = spec.split(":")
    return int(fd), proto, (ip, int(port))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="pallet.network.proxy")
    ap.add_argument("--pidfile", type=Path, required=True)
    ap.add_argument("--map", action="append", default=[], help="FD:PROTO:TARGET_IP:TARGET_PORT")
    ap.add_argument("--log", type=Path)
    args = ap.parse_args(argv)
    try:
        maps = [parse_map(m) for m in args.map]
        socks = [(socket.socket(fileno=fd), proto, target) for fd, proto, target in maps]
    except (OSError, ValueError) as e:
        daemon.fail(f"port proxy: {e}")
        return
    daemon.detach(args.pidfile, args.log)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # die at once: nothing to flush
    threads = []
    for sock, proto, target in socks:
        fn = serve_tcp if proto == "tcp" else serve_udp
        t = threading.Thread(target=fn, args=(sock, target), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
