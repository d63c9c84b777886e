"""The allowlist gate: a loopback proxy every request of a locked-down browser goes through.

Request interception through the automation protocol (lockdown.py's route)
does not see the hops of a redirect, nor WebSockets: a page on an allowed
host could reach any host by redirecting to it. Chromium on Linux has no
per-launch enterprise policy (it ignores `--policy=`), and the managed
policy directory is one for the whole machine, so a per-platform allowlist
cannot be handed to the browser itself. What the browser does apply to every
request it makes, from every frame, worker and service worker, redirect hop
and WebSocket alike, is its proxy setting. So a platform with an allowlist
gets a gate: a proxy on 127.0.0.1 run by station for this one session, given
to the browser with `--proxy-server` (and `--proxy-bypass-list=<-loopback>`,
or Chromium would go to loopback hosts around it). The gate lets through
only CONNECT tunnels and plain HTTP requests to allowlisted hosts, refuses
the rest, and reports each refusal (kind and host, never the address).

Allowed traffic goes on through the persona's own proxy when it has one
(HTTP, with its login answered by the gate, or SOCKS5), and straight out
otherwise; loopback hosts go straight out, as Chromium itself does with a
proxy set. The persona's proxy password stays in this process: the browser
never sees it.

The gate answers only the browser it was started for: every request must
carry a login made up for this session (handed to the browser over the
automation pipe, like a persona's proxy login), so no other program on the
machine can use it to go out as the persona.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import ipaddress
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from outreach_station.network import HiddenStr, ProxySetting

# (kind, host): "navigation" or "subresource" for a plain HTTP request,
# "connection" for a tunnel (HTTPS or WebSocket: the gate cannot tell which).
OnBlocked = Callable[[str, str], None]

GATE_USER: Final = "station"
_HEAD_LIMIT: Final = 64 * 1024
_CONNECT_TIMEOUT: Final = 30.0
_CHUNK: Final = 64 * 1024
# Hosts Chromium itself calls whatever page is open (Chromium 156, with
# browser.QUIET_SWITCHES: accounts.google.com at every start). Refused like
# any host off the allowlist, but not reported: the person did not ask.
BROWSER_SERVICE_HOSTS: Final = frozenset(
    {"accounts.google.com", "clients2.google.com", "update.googleapis.com"}
)
# Request headers meant for a proxy, never passed on to a site.
_HOP_HEADERS: Final = frozenset(
    {"proxy-authorization", "proxy-connection", "connection", "keep-alive"}
)


@dataclass(frozen=True)
class Upstream:
    """The persona's own proxy, where allowed traffic leaves; the password only in memory."""

    setting: ProxySetting
    password: str | None = field(default=None, repr=False)

    def authorization(self) -> str | None:
        if not self.setting.username or self.password is None:
            return None
        token = f"{self.setting.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(token).decode("ascii")


class GateError(Exception):
    """The way onward failed (the persona's proxy refused, the host is unreachable)."""


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_host_port(target: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit("//" + target)
    try:
        port = parts.port or default_port
    except ValueError:
        raise GateError("bad port") from None
    return (parts.hostname or "").lower(), port


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


def _parse_head(head: bytes) -> _Request:
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise GateError("bad request line") from None
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    return _Request(method.upper(), target, version, headers)


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        data = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise GateError("request head too large") from None
    return data[:-4]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def _response(status: str, body: bytes = b"", ctype: str = "text/plain") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    ).encode("latin-1") + body


def _kind(request: _Request) -> str:
    """Whether a plain HTTP request loads a document (frame or tab) or a part of one."""
    mode = request.header("sec-fetch-mode")
    if mode is not None:
        return "navigation" if mode == "navigate" else "subresource"
    # Sec-Fetch-* go to trustworthy origins only; a plain http:// host is told by Accept.
    return "navigation" if "text/html" in (request.header("accept") or "") else "subresource"


class Gate:
    """One session's gate: start it, give the browser `switches()`, close it after."""

    def __init__(
        self,
        allows: Callable[[str], bool],
        *,
        upstream: Upstream | None = None,
        on_blocked: OnBlocked | None = None,
        blocked_page: Callable[[str], str] | None = None,
    ) -> None:
        if upstream is not None and upstream.setting.scheme == "socks5" and upstream.password:
            raise GateError("a SOCKS5 proxy with a password is not supported")
        self._allows = allows
        self._upstream = upstream
        self._report = on_blocked or (lambda _kind, _host: None)
        self._blocked_page = blocked_page or (lambda host: f"blocked: {host}")
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._password = HiddenStr(secrets.token_urlsafe(24))
        token = base64.b64encode(f"{GATE_USER}:{self._password}".encode()).decode("ascii")
        self._expected = f"Basic {token}".encode("ascii")

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the gate is not started")
        return int(self._server.sockets[0].getsockname()[1])

    def switches(self) -> tuple[str, ...]:
        # `<-loopback>` takes away Chromium's implicit bypass of localhost and
        # 127/8: without it every loopback host would go around the gate.
        return (f"--proxy-server=http://127.0.0.1:{self.port}", "--proxy-bypass-list=<-loopback>")

    def login(self) -> dict[str, str]:
        """Playwright's `proxy` option: the browser's login to this gate."""
        return {
            "server": f"http://127.0.0.1:{self.port}",
            "username": GATE_USER,
            "password": self._password,
        }

    async def start(self) -> Gate:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", 0, limit=_HEAD_LIMIT, reuse_address=True
        )
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(OSError):
                await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (TimeoutError, GateError, OSError, asyncio.IncompleteReadError):
            with contextlib.suppress(OSError):
                writer.write(_response("502 Bad Gateway"))
        except asyncio.CancelledError:
            # The gate is closing; this connection's task ends here, quietly.
            pass
        finally:
            await _close(writer)
            if task is not None:
                self._connections.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await _read_head(reader)
        if head is None:
            return
        request = _parse_head(head)
        given = (request.header("proxy-authorization") or "").encode("latin-1")
        if not hmac.compare_digest(given, self._expected):
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="station"\r\n'
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return
        if request.method == "CONNECT":
            host, port = _split_host_port(request.target, 443)
            if not host or not self._allows(host):
                if host not in BROWSER_SERVICE_HOSTS:
                    self._report("connection", host or "-")
                writer.write(_response("403 Forbidden"))
                return
            up_reader, up_writer = await self._tunnel(host, port)
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await self._relay(reader, writer, up_reader, up_writer)
            return
        parts = urlsplit(request.target)
        host = (parts.hostname or "").lower()
        if parts.scheme != "http" or not host:
            writer.write(_response("400 Bad Request"))
            return
        if not self._allows(host):
            if host not in BROWSER_SERVICE_HOSTS:
                self._report(_kind(request), host)
            body = self._blocked_page(host).encode()
            writer.write(_response("403 Forbidden", body, "text/html; charset=utf-8"))
            return
        await self._forward(request, reader, writer, host, parts.port or 80)

    async def _forward(
        self,
        request: _Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        port: int,
    ) -> None:
        """One plain HTTP request, then the connection closes.

        One request per connection: Chromium may reuse a kept-alive proxy
        connection for a request to another host, which must get its own
        allowlist check and its own way out.
        """
        upgrade = request.header("upgrade") is not None
        by_proxy = self._upstream is not None and self._upstream.setting.scheme == "http"
        if by_proxy and not is_loopback(host):
            assert self._upstream is not None  # noqa: S101 - by_proxy says so
            up_reader, up_writer = await self._open(
                self._upstream.setting.host, self._upstream.setting.port
            )
            target = request.target
            auth = self._upstream.authorization()
            extra = [("Proxy-Authorization", auth)] if auth else []
        else:
            up_reader, up_writer = await self._tunnel(host, port)
            parts = urlsplit(request.target)
            target = parts._replace(scheme="", netloc="").geturl() or "/"
            extra = []
        kept = [(k, v) for k, v in request.headers if k.lower() not in _HOP_HEADERS]
        kept += extra
        kept.append(("Connection", "Upgrade" if upgrade else "close"))
        lines = [f"{request.method} {target} {request.version}", *(f"{k}: {v}" for k, v in kept)]
        up_writer.write("\r\n".join(lines).encode("latin-1") + b"\r\n\r\n")
        if upgrade:
            await self._relay(reader, writer, up_reader, up_writer)
            return
        try:
            with contextlib.suppress(OSError):
                # A site may answer before reading the whole body (and close):
                # its answer is still passed on.
                await self._send_body(request, reader, up_writer)
            await _pipe(up_reader, writer)
        finally:
            await _close(up_writer)

    async def _send_body(
        self, request: _Request, reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter
    ) -> None:
        if (request.header("transfer-encoding") or "").lower() == "chunked":
            while True:
                size_line = await reader.readuntil(b"\r\n")
                up_writer.write(size_line)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers, if any, up to the blank line.
                    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                        up_writer.write(line)
                    up_writer.write(b"\r\n")
                    break
                up_writer.write(await reader.readexactly(size + 2))
                await up_writer.drain()
        else:
            remaining = int(request.header("content-length") or "0")
            while remaining > 0:
                data = await reader.read(min(_CHUNK, remaining))
                if not data:
                    raise GateError("request body cut short")
                up_writer.write(data)
                await up_writer.drain()
                remaining -= len(data)
        await up_writer.drain()

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            await _close(up_writer)

    async def _open(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(host, port), _CONNECT_TIMEOUT)

    async def _tunnel(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A byte stream to host:port: through the persona's proxy, or straight for loopback."""
        upstream = self._upstream
        if upstream is None or is_loopback(host):
            return await self._open(host, port)
        reader, writer = await self._open(upstream.setting.host, upstream.setting.port)
        try:
            if upstream.setting.scheme == "http":
                await self._http_connect(reader, writer, upstream, host, port)
            else:
                await self._socks_connect(reader, writer, host, port)
        except BaseException:
            await _close(writer)
            raise
        return reader, writer

    async def _http_connect(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: Upstream,
        host: str,
        port: int,
    ) -> None:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if (auth := upstream.authorization()) is not None:
            lines.append(f"Proxy-Authorization: {auth}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        head = await asyncio.wait_for(_read_head(reader), _CONNECT_TIMEOUT)
        status = head.split(b"\r\n", 1)[0].split(b" ") if head else []
        if len(status) < 2 or status[1] != b"200":
            raise GateError("the persona's proxy refused the connection")

    async def _socks_connect(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int
    ) -> None:
        writer.write(b"\x05\x01\x00")  # version 5, one method: no authentication
        await writer.drain()
        if await reader.readexactly(2) != b"\x05\x00":
            raise GateError("the persona's SOCKS5 proxy wants a login")
        try:
            packed = ipaddress.ip_address(host).packed
            address = (b"\x01" if len(packed) == 4 else b"\x04") + packed
        except ValueError:
            # A name, resolved by the proxy: no lookup of it leaves this machine.
            name = host.encode("idna")
            address = b"\x03" + bytes([len(name)]) + name
        writer.write(b"\x05\x01\x00" + address + struct.pack("!H", port))
        await writer.drain()
        reply = await reader.readexactly(4)
        if reply[1] != 0:
            raise GateError("the persona's SOCKS5 proxy refused the connection")
        bound = {1: 4, 4: 16}.get(reply[3])
        if bound is None:
            bound = (await reader.readexactly(1))[0]
        await reader.readexactly(bound + 2)
