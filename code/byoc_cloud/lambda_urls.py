"""Fetching an image by URL for the endpoint's Lambda, without becoming a way into private networks.

URLs: http(s) only, parsed strictly (a bad port, bracket or character is a 400, in a redirect
target too). Every address the host resolves to must be public: no private, loopback,
link-local or metadata address, nor one that embeds such an IPv4 address (IPv4-mapped and
-translated, IPv4-compatible, NAT64 64:ff9b::/96, 6to4, Teredo, ISATAP; local-use NAT64
64:ff9b:1::/48 is refused outright). The connection goes to the address that was checked, and
redirects are checked the same way. One deadline bounds the whole fetch (DNS, connect, TLS,
headers, body, redirects): a server that drips a byte at a time cannot hold the invocation. A
fetch that fails gets one generic answer; its cause goes to the log only, so the function is no
port scanner. ALLOW_PRIVATE_URLS=1 lifts the address check (tests on loopback only).

Standard library only: `make lambda-zip` packages it with the function.
"""
import concurrent.futures
import http.client
import io
import ipaddress
import os
import select
import socket
import ssl
import time
import urllib.parse

from byoc_cloud.lambda_events import Refused

MAX_REDIRECTS = 3
MAX_URL_LENGTH = 2048
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052's well-known prefix: the low 32 bits are IPv4
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215 local use: IPv4 at an operator's offset
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # ::a.b.c.d (deprecated)
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # ::ffff:0:a.b.c.d (SIIT)
ISATAP = (0x00005EFE, 0x02005EFE)  # interface identifier ...:0:5efe:a.b.c.d or ...:200:5efe:a.b.c.d

_resolver = concurrent.futures.ThreadPoolExecutor(max_workers=4)  # getaddrinfo has no timeout of its own


class FetchFailed(Exception):
    """The url could not be fetched: the caller hears one generic answer, the log the cause."""


def _private_allowed() -> bool:
    return os.environ.get("ALLOW_PRIVATE_URLS", "") == "1"


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the fetch deadline passed")
        return left


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, by every scheme that routes to them."""
    low = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    found = [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour) if v4] + list(ip.teredo or ())
    if ip in NAT64 or ip in IPV4_COMPATIBLE or ip in IPV4_TRANSLATED or (int(ip) >> 32) & 0xFFFFFFFF in ISATAP:
        found.append(low)
    return found


def _public(ip) -> bool:
    return ip.is_global and not ip.is_multicast


def refusal(ip) -> str | None:
    """Why the function must not connect to ip ("" when it is plainly non-public), or None."""
    if ip.version == 6 and ip in NAT64_LOCAL:
        return "a local-use NAT64 address"
    for inner in (embedded_ipv4(ip) if ip.version == 6 else []):
        if not _public(inner):
            return f"it embeds {inner}"
    return None if _public(ip) else ""


def _resolve(host: str, port: int, deadline: Deadline) -> list[str]:
    """Every address of host, each checked. The 403 shows the address only when the caller wrote
    it: for a name it would tell what an internal name resolves to."""
    try:
        infos = _resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM).result(
            timeout=deadline.remaining())
    except concurrent.futures.TimeoutError:
        raise FetchFailed(f"resolving {host!r} took past the deadline") from None
    except (socket.gaierror, UnicodeError) as error:
        raise FetchFailed(f"resolving {host!r}: {error}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in [] if _private_allowed() else addresses:
        why = refusal(ipaddress.ip_address(address.split("%")[0]))
        if why is not None:
            detail = f" ({address}{', ' + why if why else ''})" if _is_literal(host) else ""
            raise Refused(403, f"host {host!r} resolves to a non-public address{detail}; refused")
    return addresses


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class _DeadlineReader(io.RawIOBase):
    """Socket reads that all together end at the deadline: a socket timeout alone starts over with
    every byte that arrives, so a server dripping one byte a second would never trip it."""

    def __init__(self, sock, deadline: Deadline):
        super().__init__()
        self.sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self.sock.settimeout(self.deadline.remaining())
        return self.sock.recv_into(buffer)


class _DeadlineSocket:
    """What http.client uses of its socket (sendall, makefile, close), under the deadline."""

    def __init__(self, sock, deadline: Deadline):
        self.sock, self.deadline = sock, deadline

    def sendall(self, data) -> None:
        self.sock.settimeout(self.deadline.remaining())
        self.sock.sendall(data)

    def makefile(self, *args, **kwargs):
        return io.BufferedReader(_DeadlineReader(self.sock, self.deadline))

    def close(self) -> None:
        """http.client closes the connection as soon as it has a response it reads to the end of the
        stream (no Content-Length); the socket itself closes with _Pinned.release, after the read."""


def _tls(sock, host: str, deadline: Deadline) -> ssl.SSLSocket:
    """The TLS handshake, non-blocking, so that it too ends at the deadline."""
    tls = ssl.create_default_context().wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    tls.setblocking(False)
    while True:
        try:
            tls.do_handshake()
            return tls
        except ssl.SSLWantReadError:
            select.select([tls], [], [], deadline.remaining())
        except ssl.SSLWantWriteError:
            select.select([], [tls], [], deadline.remaining())


class _Pinned(http.client.HTTPConnection):
    """Connects to the checked addresses, not to whatever the name resolves to next (DNS rebinding)."""

    def __init__(self, scheme: str, host: str, port: int, addresses: list[str], deadline: Deadline):
        super().__init__(host, port)
        self.scheme, self.addresses, self.deadline = scheme, addresses, deadline

    def connect(self) -> None:
        errors = []
        for address in self.addresses:
            try:
                sock = socket.create_connection((address, self.port), timeout=self.deadline.remaining())
                break
            except OSError as error:
                errors.append(f"{address}: {error}")
        else:
            raise OSError("; ".join(errors))
        if self.scheme == "https":
            sock = _tls(sock, self.host, self.deadline)
        self.raw = sock
        self.sock = _DeadlineSocket(sock, self.deadline)

    def release(self) -> None:
        self.close()
        if getattr(self, "raw", None) is not None:
            self.raw.close()


def parse_url(url) -> urllib.parse.SplitResult:
    """An http(s) URL with a host and a valid port, or a 400 saying what is wrong."""
    if not isinstance(url, str):
        raise Refused(400, "url must be a string")
    if len(url) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise Refused(400, f"url must be at most {MAX_URL_LENGTH} characters, without spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:  # "Invalid IPv6 URL", "Port out of range 0-65535", a port that is no number
        raise Refused(400, f"url is not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused(400, "url must be an http:// or https:// URL with a host")
    if port == 0:
        raise Refused(400, "url is not a valid URL: port 0")
    if "[" in parts.netloc and not _is_literal(parts.hostname.split("%")[0]):
        raise Refused(400, f"url is not a valid URL: [{parts.hostname}] is not an IPv6 address")
    return parts._replace(netloc=parts.netloc.rpartition("@")[2])  # userinfo is never sent


def _get(parts, deadline: Deadline, limit: int):
    """One request: (status, Location or None, body)."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    connection = _Pinned(parts.scheme, parts.hostname, port, _resolve(parts.hostname, port, deadline), deadline)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", path, headers={"User-Agent": "byoc-lambda", "Accept": "image/*"})
        response = connection.getresponse()
        if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
            return response.status, response.getheader("Location"), b""
        if response.status != 200:
            return response.status, None, b""
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            raise Refused(413, f"the image is larger than {limit} bytes")
        body = bytearray()
        while chunk := response.read(64 * 1024):
            body += chunk
            if len(body) > limit:
                raise Refused(413, f"the image is larger than {limit} bytes")
        return 200, None, bytes(body)
    finally:
        connection.release()


def fetch(url: str, limit: int, timeout: float) -> bytes:
    """The image at url (following up to MAX_REDIRECTS redirects), all within timeout seconds."""
    deadline = Deadline(timeout)
    parts = parse_url(url)
    for _ in range(MAX_REDIRECTS + 1):
        try:
            status, location, body = _get(parts, deadline, limit)
        except (FetchFailed, OSError, http.client.HTTPException, ssl.SSLError, ValueError) as error:
            print(f"fetching {parts.scheme}://{parts.netloc} failed: {type(error).__name__}: {error}")  # the log only
            raise Refused(502, f"could not fetch an image from the url within {timeout:g} s") from None
        if location is None:
            if status != 200:
                raise Refused(400, f"fetching the url answered HTTP {status}")
            return body
        try:
            parts = parse_url(urllib.parse.urljoin(parts.geturl(), location))
        except ValueError as error:  # urljoin parses the target too
            raise Refused(400, f"the url redirects to an invalid target: url is not a valid URL: {error}") from None
        except Refused as refused:
            raise Refused(400, f"the url redirects to an invalid target: {refused}") from None
    raise Refused(400, f"more than {MAX_REDIRECTS} redirects")
