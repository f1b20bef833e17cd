"""The PROXY protocol header (HAProxy, versions 1 and 2), parsed without sockets (sans-I/O).

A catcher behind HAProxy (``send-proxy`` / ``send-proxy-v2``) receives, before
the first SocketHandler frame, one header naming the original client.  The
contract of :class:`ProxyHeaderParser`:

* ``feed(data)`` is called with every chunk the transport delivers, from the
  first byte of the connection (one byte at a time, or the header and the first
  frames in a single segment).
* It returns ``None`` while the bytes seen so far are a valid beginning of a
  header, and ``(header, rest)`` once a complete header has arrived: ``rest`` is
  every byte after the header (possibly ``b""``) and belongs to the frame decoder.
* It raises :class:`ProxyProtocolError` as soon as the bytes cannot be the start
  of a valid header: a wrong signature is refused on the first byte that differs
  (a plain SocketHandler frame, whose first byte is the high byte of its length,
  is refused on byte one); a v1 line with an unknown protocol or a character
  its family does not allow is refused on that byte, one without CRLF at its
  family's maximum length; a v2 version, command or family byte on arrival, a
  declared length beyond the cap or too short for the family as soon as the
  16-byte fixed part is in.  The caller closes
  the connection; the spec forbids guessing whether a header is there.
* End of stream is the caller's business: a truncated header simply keeps
  ``feed`` returning ``None``.  After a header was returned the parser is spent
  (``feed`` raises ``RuntimeError``); after an error, ``feed`` raises it again.

What a header yields (:class:`ProxyHeader`): ``source``/``destination`` are
``(host, port)`` with ``host`` in ``ipaddress`` normal form (IPv6 compressed,
lower case) for TCP over IPv4/IPv6, and ``None`` when the header carries no
usable address: v1 ``UNKNOWN``, v2 ``LOCAL`` (the balancer's own health checks;
its family byte and address block are ignored, as the spec says), and v2
``PROXY`` with family ``UNSPEC``, ``UNIX`` (stream or datagram) or UDP.  Those
valid combinations fall back to UNSPEC mode, as the spec requires of a receiver
that does not implement them, so the caller uses the real peer address.  Family
bytes the spec does not define are refused.

Limits:

* v1: at most 107 bytes including CRLF (the spec's maximum); tighter per family
  (``TCP4`` 56, ``TCP6`` 104), so an overlong line is refused at that byte.
  Addresses must be valid for the family (``ipaddress``: IPv4 dotted quad
  without leading zeroes; IPv6 in any RFC 4291 text form, without zone id),
  ports decimal 0-65535 without sign or leading zeroes, fields separated by
  exactly one space.  A lone CR or LF is refused, in an ``UNKNOWN`` line too
  (whose other content up to CRLF is ignored).
* v2: ``16 + len`` bytes in all; ``len`` may be up to 65535 on the wire but is
  capped by ``max_header_bytes`` (default 536, the IPv4 default MSS, as the
  spec has the sender emit the header in one segment: the largest address
  block, UNIX's 216 bytes, plus 304 bytes of TLVs; TCP over IPv4 leaves 508).
  Raise it if the balancer sends bulky TLVs (HAProxy's SSL sub-TLVs, authority,
  unique id can together exceed that).  TLVs after a known
  address block are checked to be well framed (type, 2-byte length, value
  inside the header) and otherwise skipped; a CRC32C TLV is not verified
  (optional for receivers).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["V1_MAX_BYTES", "V2_SIGNATURE", "ProxyHeader", "ProxyHeaderParser", "ProxyProtocolError"]

V1_PREFIX: Final = b"PROXY "
V1_MAX_BYTES: Final = 107
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_BYTES: Final = 16
V2_MIN_CAP: Final = V2_FIXED_BYTES + 216  # every address block without TLVs fits
V2_MAX_CAP: Final = V2_FIXED_BYTES + 0xFFFF

_CMD_LOCAL: Final = 0x0
_CMD_PROXY: Final = 0x1
_FAM_TCP4: Final = 0x11
_FAM_TCP6: Final = 0x21
# Valid v2 family/transport bytes under the PROXY command -> size of their address block.
_V2_ADDRESS_BYTES: Final[dict[int, int]] = {0x00: 0, 0x11: 12, 0x12: 12, 0x21: 36, 0x22: 36, 0x31: 216, 0x32: 216}
_V2_FAMILY_NAMES: Final[dict[int, str]] = {
    0x00: "UNSPEC",
    0x11: "TCP over IPv4",
    0x12: "UDP over IPv4",
    0x21: "TCP over IPv6",
    0x22: "UDP over IPv6",
    0x31: "UNIX stream",
    0x32: "UNIX datagram",
}
_TLV_HEADER_BYTES: Final = 3

# v1 protocol tokens (after "PROXY ") -> longest valid line for that token, CRLF included.
_V1_TOKENS: Final[tuple[tuple[bytes, int], ...]] = (
    (b"TCP4 ", 56),
    (b"TCP6 ", 104),
    (b"UNKNOWN ", V1_MAX_BYTES),
    (b"UNKNOWN\r\n", V1_MAX_BYTES),
)
# Characters a TCP4/TCP6 line may hold after its token and before CRLF.
_V1_BODY_CHARS: Final[dict[bytes, bytes]] = {
    b"TCP4 ": b"0123456789. ",
    b"TCP6 ": b"0123456789abcdefABCDEF:. ",
}
_PORT_RE: Final = re.compile(r"0|[1-9][0-9]{0,4}")
_SHOWN_BYTES: Final = 16


class ProxyProtocolError(ValueError):
    """The connection did not start with a valid PROXY protocol header; close it."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """One parsed header; addresses are ``None`` when the real peer address is to be used."""

    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    version: int


class ProxyHeaderParser:
    """Fed the first bytes of a connection; finds one PROXY v1 or v2 header.

    ``max_header_bytes`` caps a v2 header (16-byte fixed part + addresses + TLVs),
    between 232 (the UNIX address block, no TLVs) and 65551 (the wire maximum).
    A v1 header is always capped at 107 bytes by the spec.
    """

    __slots__ = ("_buffer", "_done", "_error", "_max_header_bytes")

    def __init__(self, *, max_header_bytes: int = 536) -> None:
        if not V2_MIN_CAP <= max_header_bytes <= V2_MAX_CAP:
            raise ValueError(f"max_header_bytes must be between {V2_MIN_CAP} and {V2_MAX_CAP}, got {max_header_bytes}")
        self._max_header_bytes = max_header_bytes
        self._buffer = bytearray()
        self._done = False
        self._error: ProxyProtocolError | None = None

    @property
    def max_header_bytes(self) -> int:
        return self._max_header_bytes

    def feed(self, data: bytes) -> tuple[ProxyHeader, bytes] | None:
        """Return ``(header, rest)`` once a complete header has arrived, ``None`` while more bytes are needed.

        Raises :class:`ProxyProtocolError` as soon as the bytes cannot be a valid header.
        """
        if self._done:
            raise RuntimeError("the PROXY header was already parsed; feed the rest to the frame decoder")
        if self._error is not None:
            raise ProxyProtocolError(*self._error.args)
        self._buffer += data
        try:
            parsed = self._parse()
        except ProxyProtocolError as exc:
            self._error = exc
            self._buffer = bytearray()
            raise
        if parsed is None:
            return None
        header, end = parsed
        rest = bytes(self._buffer[end:])
        self._buffer = bytearray()
        self._done = True
        return header, rest

    # ------------------------------------------------------------------ dispatch

    def _parse(self) -> tuple[ProxyHeader, int] | None:
        buf = self._buffer
        if not buf:
            return None
        if buf[0] == V1_PREFIX[0]:
            return self._parse_v1()
        if buf[0] == V2_SIGNATURE[0]:
            return self._parse_v2()
        raise self._not_proxy()

    def _not_proxy(self) -> ProxyProtocolError:
        shown = bytes(self._buffer[:_SHOWN_BYTES])
        return ProxyProtocolError(
            "connection did not start with a PROXY protocol header "
            f"(expected 'PROXY ' or the v2 signature, got {shown!r})"
        )

    # ------------------------------------------------------------------ version 1

    def _parse_v1(self) -> tuple[ProxyHeader, int] | None:
        buf = self._buffer
        n = len(buf)
        if buf[: len(V1_PREFIX)] != V1_PREFIX[:n]:
            raise self._not_proxy()
        if n <= len(V1_PREFIX):
            return None

        # The line ends at the first CR, which must be followed by LF; no bare LF before it.
        cr = buf.find(b"\r", 0, V1_MAX_BYTES)
        if buf.find(b"\n", 0, cr if cr != -1 else min(n, V1_MAX_BYTES)) != -1:
            raise ProxyProtocolError(f"PROXY v1 header with a bare LF (CRLF expected): {self._v1_shown()}")
        line_end: int | None = None
        if cr != -1 and cr + 1 < n:
            if buf[cr + 1] != ord("\n"):
                raise ProxyProtocolError(f"PROXY v1 header with a bare CR (CRLF expected): {self._v1_shown()}")
            line_end = cr + 2

        after = bytes(buf[len(V1_PREFIX) : len(V1_PREFIX) + 9])
        candidates = [(token, limit) for token, limit in _V1_TOKENS if token[: len(after)] == after[: len(token)]]
        if not candidates:
            raise ProxyProtocolError(
                f"PROXY v1 header with an unsupported protocol (expected TCP4, TCP6 or UNKNOWN): {self._v1_shown()}"
            )
        limit = max(limit for _, limit in candidates)
        if (line_end is None and (n >= limit or cr == limit - 1)) or (line_end is not None and line_end > limit):
            raise ProxyProtocolError(
                f"PROXY v1 header without CRLF in its first {limit} bytes (the most it may take): {self._v1_shown()}"
            )

        token = candidates[0][0] if len(candidates) == 1 and len(after) >= len(candidates[0][0]) else None
        allowed = _V1_BODY_CHARS.get(token) if token is not None else None
        if token is not None and allowed is not None:
            body_start = len(V1_PREFIX) + len(token)
            body = bytes(buf[body_start : cr if cr != -1 else n])
            if body.translate(None, allowed):
                raise ProxyProtocolError(f"PROXY v1 header with an invalid character: {self._v1_shown()}")
        if line_end is None:
            return None
        if token is None:  # pragma: no cover - a complete line always settles the token
            raise ProxyProtocolError(f"malformed PROXY v1 header: {self._v1_shown()}")
        if token.startswith(b"UNKNOWN"):
            return ProxyHeader(source=None, destination=None, version=1), line_end
        return self._v1_addresses(token, line_end), line_end

    def _v1_addresses(self, token: bytes, line_end: int) -> ProxyHeader:
        line = bytes(self._buffer[: line_end - 2]).decode("ascii")
        fields = line.split(" ")
        if len(fields) != 6:
            raise ProxyProtocolError(
                f"malformed PROXY v1 header (expected 'PROXY {fields[1]} <src> <dst> <sport> <dport>' "
                f"separated by single spaces): {self._v1_shown()}"
            )
        _, family, src, dst, sport, dport = fields
        address_type: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address] = (
            ipaddress.IPv4Address if token == b"TCP4 " else ipaddress.IPv6Address
        )
        hosts: list[str] = []
        for text in (src, dst):
            try:
                hosts.append(str(address_type(text)))
            except ValueError:
                raise ProxyProtocolError(
                    f"PROXY v1 header with an invalid {family} address {text!r}: {self._v1_shown()}"
                ) from None
        ports: list[int] = []
        for text in (sport, dport):
            if _PORT_RE.fullmatch(text) is None or int(text) > 0xFFFF:
                raise ProxyProtocolError(f"PROXY v1 header with an invalid port {text!r}: {self._v1_shown()}")
            ports.append(int(text))
        return ProxyHeader(source=(hosts[0], ports[0]), destination=(hosts[1], ports[1]), version=1)

    def _v1_shown(self) -> str:
        return repr(bytes(self._buffer[:V1_MAX_BYTES]))

    # ------------------------------------------------------------------ version 2

    def _parse_v2(self) -> tuple[ProxyHeader, int] | None:
        buf = self._buffer
        n = len(buf)
        if buf[: len(V2_SIGNATURE)] != V2_SIGNATURE[:n]:
            raise self._not_proxy()
        if n <= len(V2_SIGNATURE):
            return None

        version, command = buf[12] >> 4, buf[12] & 0x0F
        if version != 2:
            raise ProxyProtocolError(f"PROXY v2 signature with an unsupported version {version} (expected 2)")
        if command not in (_CMD_LOCAL, _CMD_PROXY):
            raise ProxyProtocolError(f"PROXY v2 header with an unknown command {command:#x} (expected LOCAL or PROXY)")
        if n < 14:
            return None

        family = buf[13]
        # LOCAL: "discard the protocol block including the family which is ignored".
        if command == _CMD_PROXY and family not in _V2_ADDRESS_BYTES:
            raise ProxyProtocolError(f"PROXY v2 header with an invalid address family/protocol byte {family:#04x}")
        if n < V2_FIXED_BYTES:
            return None

        length = int.from_bytes(buf[14:16], "big")
        total = V2_FIXED_BYTES + length
        if total > self._max_header_bytes:
            raise ProxyProtocolError(
                f"PROXY v2 header of {total} bytes exceeds max_header_bytes={self._max_header_bytes}"
            )
        if command == _CMD_PROXY and length < _V2_ADDRESS_BYTES[family]:
            raise ProxyProtocolError(
                f"PROXY v2 header length {length} is too short for {_V2_FAMILY_NAMES[family]} "
                f"({_V2_ADDRESS_BYTES[family]} address bytes)"
            )
        if n < total:
            return None

        if command == _CMD_LOCAL:
            return ProxyHeader(source=None, destination=None, version=2), total
        if family != 0x00:
            self._check_tlvs(V2_FIXED_BYTES + _V2_ADDRESS_BYTES[family], total)
        block = bytes(buf[V2_FIXED_BYTES:total])
        if family == _FAM_TCP4:
            source = (str(ipaddress.IPv4Address(block[0:4])), int.from_bytes(block[8:10], "big"))
            destination = (str(ipaddress.IPv4Address(block[4:8])), int.from_bytes(block[10:12], "big"))
        elif family == _FAM_TCP6:
            source = (str(ipaddress.IPv6Address(block[0:16])), int.from_bytes(block[32:34], "big"))
            destination = (str(ipaddress.IPv6Address(block[16:32])), int.from_bytes(block[34:36], "big"))
        else:  # UNSPEC, UDP, UNIX: valid, but no address this TCP service can use.
            return ProxyHeader(source=None, destination=None, version=2), total
        return ProxyHeader(source=source, destination=destination, version=2), total

    def _check_tlvs(self, start: int, end: int) -> None:
        buf = self._buffer
        offset = start
        while offset < end:
            if offset + _TLV_HEADER_BYTES > end:
                raise ProxyProtocolError(f"PROXY v2 header with a truncated TLV at byte {offset}")
            value_end = offset + _TLV_HEADER_BYTES + int.from_bytes(buf[offset + 1 : offset + 3], "big")
            if value_end > end:
                raise ProxyProtocolError(
                    f"PROXY v2 header with a TLV (type {buf[offset]:#04x}) running past the header end at byte {end}"
                )
            offset = value_end
