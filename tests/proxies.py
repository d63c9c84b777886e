"""Real proxies on loopback for the network tests: standard library only.

Both proxies count connections and requests and record the host each one
asked for, so a test can compare what passed the proxy with what reached a
site. `names` maps host names only the proxy knows (like `site.test`) to a
loopback address: a browser that reaches such a name proves its DNS went
through the proxy too. Nothing leaves loopback: any other target is refused.
Each proxy stops by itself after `lifetime` seconds, and every connection
times out, so a stuck test cannot leave one running.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import select
import socket
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from socketserver import BaseRequestHandler, ThreadingTCPServer
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import urlsplit

IO_TIMEOUT = 30.0


@dataclass
class Record:
    """What a proxy saw, behind a lock: threads serve connections concurrently."""

    connections: int = 0
    # One entry per request: (method or "CONNECT"/"SOCKS", target host, target port).
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    # The raw Proxy-Authorization header of each HTTP request (None when absent).
    authorizations: list[str | None] = field(default_factory=list)
    # SOCKS5: how each target was given ("domain", "ipv4" or "ipv6").
    address_types: list[str] = field(default_factory=list)
    # The local port of every connection the proxy opened onward: a site that
    # sees a request from one of these ports got it through the proxy.
    outbound_ports: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hosts(self) -> list[str]:
        with self.lock:
            return [host for _m, host, _p in self.requests]

    def count(self, host: str) -> int:
        return self.hosts().count(host)


class _Server(ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Proxy:
    handler: ClassVar[type[BaseRequestHandler]]

    def __init__(
        self, *, names: Mapping[str, tuple[str, int]] | None = None, lifetime: float = 180
    ) -> None:
        self.names = dict(names or {})
        self.record = Record()
        self._server = _Server(("127.0.0.1", 0), self.handler)
        self._server.proxy = self  # type: ignore[attr-defined]  # read back by the handler
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def resolve(self, host: str, port: int) -> tuple[str, int] | None:
        """Where a target really is: a known name, or a loopback address; else refused."""
        if host in self.names:
            return self.names[host]
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host.strip("[]")).is_loopback:
                return host.strip("[]"), port
        return None

    def start(self) -> _Proxy:
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes or nothing moves for IO_TIMEOUT."""
    sockets = [a, b]
    while True:
        readable, _w, _x = select.select(sockets, [], [], IO_TIMEOUT)
        if not readable:
            return
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            other = b if sock is a else a
            try:
                other.sendall(data)
            except OSError:
                return


def _read_head(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """An HTTP message head (up to the blank line) and whatever came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > 1 << 20:
            return None
    head, _sep, rest = data.partition(b"\r\n\r\n")
    return head, rest


class _HttpHandler(BaseRequestHandler):
    def handle(self) -> None:
        proxy: HttpProxy = self.server.proxy  # type: ignore[attr-defined]
        client: socket.socket = self.request
        client.settimeout(IO_TIMEOUT)
        with proxy.record.lock:
            proxy.record.connections += 1
        # Chromium keeps proxy connections alive: serve requests until it closes.
        with contextlib.suppress(OSError):
            while self._one(proxy, client):
                pass

    def _one(self, proxy: HttpProxy, client: socket.socket) -> bool:
        got = _read_head(client)
        if got is None:
            return False
        head, rest = got
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = [line.split(":", 1) for line in lines[1:] if ":" in line]
        auth = next((v.strip() for k, v in headers if k.lower() == "proxy-authorization"), None)
        if method == "CONNECT":
            host, _c, port_text = target.rpartition(":")
            port = int(port_text)
        else:
            parts = urlsplit(target)
            host, port = parts.hostname or "", parts.port or 80
        with proxy.record.lock:
            proxy.record.requests.append((method, host, port))
            proxy.record.authorizations.append(auth)
        if proxy.expected_auth is not None and auth != proxy.expected_auth:
            client.sendall(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="station-test"\r\n'
                b"Content-Length: 0\r\n\r\n"
            )
            return True
        where = proxy.resolve(host, port)
        if where is None:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return True
        with socket.create_connection(where, timeout=IO_TIMEOUT) as upstream:
            with proxy.record.lock:
                proxy.record.outbound_ports.add(upstream.getsockname()[1])
            if method == "CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                _relay(client, upstream)
                return False
            path = urlsplit(target)._replace(scheme="", netloc="").geturl() or "/"
            kept = [
                f"{k}:{v}"
                for k, v in headers
                if k.lower() not in ("proxy-authorization", "proxy-connection", "connection")
            ]
            request = "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close"])
            upstream.sendall(request.encode("latin-1") + b"\r\n\r\n" + rest)
            # The site answers and closes; so does the proxy, after passing it on.
            while chunk := upstream.recv(65536):
                client.sendall(chunk)
        return False


class HttpProxy(_Proxy):
    """An HTTP proxy: absolute-URI forwarding and CONNECT, optionally asking for Basic auth."""

    handler = _HttpHandler

    def __init__(
        self,
        *,
        names: Mapping[str, tuple[str, int]] | None = None,
        credentials: tuple[str, str] | None = None,
        lifetime: float = 180,
    ) -> None:
        super().__init__(names=names, lifetime=lifetime)
        self.expected_auth = (
            None
            if credentials is None
            else "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HttpProxy:
        self.start()
        return self


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


class _SocksHandler(BaseRequestHandler):
    def handle(self) -> None:
        proxy: Socks5Proxy = self.server.proxy  # type: ignore[attr-defined]
        client: socket.socket = self.request
        client.settimeout(IO_TIMEOUT)
        with proxy.record.lock:
            proxy.record.connections += 1
        with contextlib.suppress(OSError, ConnectionError):
            self._serve(proxy, client)

    def _serve(self, proxy: Socks5Proxy, client: socket.socket) -> None:
        version, count = _recv_exact(client, 2)
        methods = _recv_exact(client, count)
        if version != 5 or 0 not in methods:
            client.sendall(b"\x05\xff")  # only "no authentication" is offered
            return
        client.sendall(b"\x05\x00")
        version, command, _rsv, kind = _recv_exact(client, 4)
        if kind == 1:
            host, how = socket.inet_ntop(socket.AF_INET, _recv_exact(client, 4)), "ipv4"
        elif kind == 4:
            host, how = socket.inet_ntop(socket.AF_INET6, _recv_exact(client, 16)), "ipv6"
        elif kind == 3:
            length = _recv_exact(client, 1)[0]
            host, how = _recv_exact(client, length).decode("idna"), "domain"
        else:
            return
        (port,) = struct.unpack("!H", _recv_exact(client, 2))
        with proxy.record.lock:
            proxy.record.requests.append(("SOCKS", host, port))
            proxy.record.address_types.append(how)
        where = proxy.resolve(host, port) if command == 1 else None
        if where is None:
            client.sendall(b"\x05\x04\x00\x01" + bytes(6))  # host unreachable
            return
        with socket.create_connection(where, timeout=IO_TIMEOUT) as upstream:
            bound_host, bound_port = upstream.getsockname()[:2]
            with proxy.record.lock:
                proxy.record.outbound_ports.add(bound_port)
            client.sendall(
                b"\x05\x00\x00\x01" + socket.inet_aton(bound_host) + struct.pack("!H", bound_port)
            )
            _relay(client, upstream)


class Socks5Proxy(_Proxy):
    """A SOCKS5 proxy without authentication; records whether targets came as names."""

    handler = _SocksHandler

    @property
    def url(self) -> str:
        return f"socks5://127.0.0.1:{self.port}"

    def __enter__(self) -> Socks5Proxy:
        self.start()
        return self


class StunServer:
    """Answers STUN binding requests claiming the client is at 203.0.113.7 (TEST-NET-3).

    A real STUN server tells a browser its public address; this one tells a
    fake one, so a test can see whether the address would have reached a page.
    """

    MAPPED = "203.0.113.7"
    COOKIE = 0x2112A442

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) < 20 or struct.unpack("!H", data[:2])[0] != 0x0001:
                continue
            self.requests += 1
            txid = data[8:20]
            ip = struct.unpack("!I", socket.inet_aton(self.MAPPED))[0] ^ self.COOKIE
            port = peer[1] ^ (self.COOKIE >> 16)
            attr = struct.pack("!HHBBHI", 0x0020, 8, 0, 1, port, ip)
            header = struct.pack("!HHI", 0x0101, len(attr), self.COOKIE) + txid
            self.sock.sendto(header + attr, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()

    def __enter__(self) -> StunServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
