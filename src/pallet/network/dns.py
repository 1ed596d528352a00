"""The embedded DNS server of one user-defined network (`python -m pallet.network.dns`).

Design: one small process per user network, bound to the bridge's gateway address on port 53 (UDP
and TCP) in the host namespace; containers get `nameserver <gateway>` in resolv.conf. (Docker binds
127.0.0.11 inside every container and redirects with iptables: that needs a per-container listener
or NAT rules in every namespace; one listener per network is simpler and has nothing to redo when a
container restarts.) Answers come from the state database on every query, so connecting or
disconnecting a container needs no signal to this process:

- A for a container name, its short (12) or full ID, an alias (several A records when several
  containers share it, shuffled as docker does), also as `<name>.<network>`;
- PTR for an address on the network; NOERROR with no answer for other types of a known name;
- everything else is forwarded to the querying container's --dns servers or the network's upstream
  servers; with no upstream (tests) or on an --internal network, NXDOMAIN: nothing leaves the host.

Only clients inside the network's subnet are answered (REFUSED otherwise), so a container on another
network cannot enumerate this one's names.
"""

from __future__ import annotations

import argparse
import json
import random
import selectors
import signal
import socket
import sqlite3
import struct
import threading
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from dnslib import PTR, QTYPE, RCODE, RR, A, DNSRecord

from pallet.network import daemon

TTL = 600
FORWARD_TIMEOUT = 2.0
TCP_IDLE = 5.0
MAX_UDP = 4096


class Names:
    """Read-only view of one network's endpoints in the state database."""

    def __init__(self, db: Path, network_id: str) -> None:
        self.conn = sqlite3.connect(db, timeout=5, check_same_thread=False)
        self.conn.execute("PRAGMA query_only = 1")
        self.lock = threading.Lock()
        self.network_id = network_id
        row = self.conn.execute(
            "SELECT name, subnet, internal FROM networks WHERE id = ?", (network_id,)
        ).fetchone()
        if row is None:
            raise LookupError(f"network {network_id} not found")
        self.network_name: str = row[0].lower()
        self.subnet = IPv4Network(row[1])
        self.internal = bool(row[2])  # no way out for packets: none for queries either

    def addresses(self, name: str) -> list[str] | None:
        """The IPv4 addresses a name stands for on this network; None when the name is unknown."""
        suffix = "." + self.network_name
        if name.endswith(suffix):
            name = name[: -len(suffix)]
        with self.lock:
            rows = self.conn.execute(
                "SELECT ipv4 FROM network_endpoints WHERE network_id = ?1 AND (lower(name) = ?2"
                " OR substr(container_id, 1, 12) = ?2 OR container_id = ?2"
                " OR EXISTS (SELECT 1 FROM json_each(aliases) WHERE lower(value) = ?2))",
                (self.network_id, name),
            ).fetchall()
        return [r[0] for r in rows] or None

    def name_of(self, address: str) -> str | None:
        with self.lock:
            row = self.conn.execute(
                "SELECT name FROM network_endpoints WHERE network_id = ? AND ipv4 = ?",
                (self.network_id, address),
            ).fetchone()
        return f"{row[0]}.{self.network_name}" if row else None

    def upstreams_for(self, client: str) -> list[str] | None:
        """A container's own --dns servers, which docker uses instead of the host's for its queries."""
        with self.lock:
            row = self.conn.execute(
                "SELECT dns FROM network_endpoints WHERE network_id = ? AND ipv4 = ?",
                (self.network_id, client),
            ).fetchone()
        if row is None:
            return None
        servers = [s for s in json.loads(row[0]) if s]
        return servers or None


def _ptr_address(qname: str) -> str | None:
    if not qname.endswith(".in-addr.arpa"):
        return None
    parts = qname[: -len(".in-addr.arpa")].split(".")
    if len(parts) != 4:
        return None
    try:
        return str(IPv4Address(".".join(reversed(parts))))
    except ValueError:
        return None


@dataclass
class Forward:
    data: bytes
    query: DNSRecord
    servers: list[str]


class Resolver:
    def __init__(self, names: Names, upstreams: list[str]) -> None:
        self.names = names
        self.upstreams = upstreams

    def allowed(self, client: str) -> bool:
        try:
            return IPv4Address(client) in self.names.subnet
        except ValueError:
            return False

    def answer_locally(self, query: DNSRecord) -> DNSRecord | None:
        """The reply when this server is authoritative for the question, else None (forward it)."""
        q = query.q
        qname = str(q.qname).rstrip(".").lower()
        reply = query.reply()
        reply.header.ra = 1
        if q.qtype == QTYPE.PTR:
            addr = _ptr_address(qname)
            if addr is None or IPv4Address(addr) not in self.names.subnet:
                return None
            name = self.names.name_of(addr)
            if name is None:
                return None
            reply.add_answer(RR(q.qname, QTYPE.PTR, rdata=PTR(name + "."), ttl=TTL))
            return reply
        found = self.names.addresses(qname)
        if found is None:
            return None
        if q.qtype in (QTYPE.A, QTYPE.ANY):
            random.shuffle(found)
            for ip in found:
                reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
        return reply  # other types of a known name: NOERROR, no data

    def resolve(self, data: bytes, client: str) -> bytes | Forward | None:
        """The reply, or what to forward (the caller decides on which thread), or None to drop."""
        try:
            query = DNSRecord.parse(data)
        except Exception:  # dnslib raises several types for garbage
            return None
        if not self.allowed(client):
            reply = query.reply()
            reply.header.rcode = RCODE.REFUSED
            return bytes(reply.pack())
        if not query.questions:
            reply = query.reply()
            reply.header.rcode = RCODE.FORMERR
            return bytes(reply.pack())
        try:
            local = self.answer_locally(query)
        except sqlite3.Error:  # the state database is being migrated or went away: try again later
            reply = query.reply()
            reply.header.rcode = RCODE.SERVFAIL
            return bytes(reply.pack())
        if local is not None:
            return bytes(local.pack())
        try:
            servers = self.names.upstreams_for(client) or self.upstreams
        except sqlite3.Error:
            servers = self.upstreams
        if self.names.internal:
            servers = []
        if not servers:
            reply = query.reply()
            reply.header.ra = 1
            reply.header.rcode = RCODE.NXDOMAIN
            return bytes(reply.pack())
        return Forward(data, query, servers)

    @staticmethod
    def forward(job: Forward) -> bytes:
        data, query, servers = job.data, job.query, job.servers
        for server in servers:
            host, _, port = server.partition("#")
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(FORWARD_TIMEOUT)
                    s.sendto(data, (host, int(port or 53)))
                    resp, _ = s.recvfrom(MAX_UDP)
                    if resp[:2] == data[:2]:
                        return resp
            except OSError:
                continue
        reply = query.reply()
        reply.header.ra = 1
        reply.header.rcode = RCODE.SERVFAIL
        return bytes(reply.pack())


def _serve_udp(sock: socket.socket, resolver: Resolver) -> None:
    try:
        data, (client, port) = sock.recvfrom(MAX_UDP)
    except OSError:
        return
    resp = resolver.resolve(data, client)
    if isinstance(resp, Forward):
        # Forwarding may block for seconds: never on the thread that answers everyone else.
        job = resp
        threading.Thread(
            target=lambda: _send_udp(sock, Resolver.forward(job), data, client, port), daemon=True
        ).start()
    elif resp is not None:
        _send_udp(sock, resp, data, client, port)


def _send_udp(sock: socket.socket, resp: bytes, query: bytes, client: str, port: int) -> None:
    if len(resp) > 512 and not _has_edns(query):
        resp = _truncate(resp)
    try:
        sock.sendto(resp, (client, port))
    except OSError:
        pass


def _has_edns(data: bytes) -> bool:
    return len(data) >= 12 and struct.unpack("!H", data[10:12])[0] > 0


def _truncate(resp: bytes) -> bytes:
    rec = DNSRecord.parse(resp)
    rec.rr = []
    rec.header.tc = 1
    return bytes(rec.pack())


def _serve_tcp(conn: socket.socket, client: str, resolver: Resolver) -> None:
    with conn:
        conn.settimeout(TCP_IDLE)
        try:
            while True:
                head = _recv_exact(conn, 2)
                if not head:
                    return
                data = _recv_exact(conn, struct.unpack("!H", head)[0])
                if data is None:
                    return
                resp = resolver.resolve(data, client)
                if isinstance(resp, Forward):
                    resp = Resolver.forward(resp)
                if resp is None:
                    return
                conn.sendall(struct.pack("!H", len(resp)) + resp)
        except OSError:
            return


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def bind(address: str, port: int) -> tuple[socket.socket, socket.socket]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Coexist with a host resolver bound to 0.0.0.0:53 that also sets SO_REUSEADDR (dnsmasq does).
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    udp.bind((address, port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((address, port))
    tcp.listen(64)
    return udp, tcp


def serve(udp: socket.socket, tcp: socket.socket, resolver: Resolver) -> None:
    sel = selectors.DefaultSelector()
    sel.register(udp, selectors.EVENT_READ, "udp")
    sel.register(tcp, selectors.EVENT_READ, "tcp")
    while True:
        for key, _ in sel.select():
            if key.data == "udp":
                _serve_udp(udp, resolver)
            else:
                try:
                    conn, (client, _port) = tcp.accept()
                except OSError:
                    continue
                threading.Thread(target=_serve_tcp, args=(conn, client, resolver), daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="pallet.network.dns")
    ap.add_argument("--pidfile", type=Path, required=True)
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--network", required=True)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--upstream", action="append", default=[], help="ip or ip#port; repeatable")
    ap.add_argument("--log", type=Path)
    args = ap.parse_args(argv)
    try:
        # Checked before detaching so that spawn() reports it; closed before the fork because SQLite's
        # POSIX locks stay with the process that took them: a connection carried across fork() holds
        # none, and another process closing the database would then delete the WAL under it.
        Names(args.db, args.network).conn.close()
        udp, tcp = bind(args.listen, args.port)
    except (OSError, LookupError, sqlite3.Error) as e:
        daemon.fail(f"embedded DNS server for network {args.network[:12]} on {args.listen}:{args.port}: {e}")
        return
    daemon.detach(args.pidfile, args.log)
    resolver = Resolver(Names(args.db, args.network), [u for u in args.upstream if u])
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # die at once: nothing to flush
    serve(udp, tcp, resolver)


if __name__ == "__main__":
    main()
