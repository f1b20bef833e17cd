"""ProxyHeaderParser, fed PROXY v1 lines and v2 headers built here with struct (independently of the parser).

The bytes after a header are a real ``SocketHandler.makePickle`` frame, as a
catcher behind HAProxy receives them.
"""

from __future__ import annotations

import logging
import logging.handlers
import random
import socket
import struct
from collections.abc import Iterable

import pytest

from relay.net.proxy_header import ProxyHeader, ProxyHeaderParser, ProxyProtocolError

SIGNATURE = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"
NOT_PROXY = "did not start with a PROXY protocol header"

LOCAL = 0x20
PROXY = 0x21
UNSPEC = 0x00
TCP4 = 0x11
UDP4 = 0x12
TCP6 = 0x21
UDP6 = 0x22
UNIX_STREAM = 0x31
UNIX_DGRAM = 0x32


# --------------------------------------------------------------------------- helpers


def frame(msg: str = "hello %s", *args: object) -> bytes:
    """One frame exactly as ``SocketHandler`` puts it on the wire."""
    record = logging.LogRecord("app.db", logging.WARNING, "/srv/app/db.py", 42, msg, args or None, None)
    handler = logging.handlers.SocketHandler("x", 0)
    try:
        return handler.makePickle(record)
    finally:
        handler.close()


def v2(ver_cmd: int, fam: int, payload: bytes = b"", *, length: int | None = None) -> bytes:
    return SIGNATURE + struct.pack("!BBH", ver_cmd, fam, len(payload) if length is None else length) + payload


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def v2_tcp4(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"", *, ver_cmd: int = PROXY) -> bytes:
    block = struct.pack(
        "!4s4sHH", socket.inet_pton(socket.AF_INET, src), socket.inet_pton(socket.AF_INET, dst), sport, dport
    )
    return v2(ver_cmd, TCP4, block + tlvs)


def v2_tcp6(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"", *, ver_cmd: int = PROXY) -> bytes:
    block = struct.pack(
        "!16s16sHH", socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst), sport, dport
    )
    return v2(ver_cmd, TCP6, block + tlvs)


def parse(data: bytes, **kwargs: int) -> tuple[ProxyHeader, bytes]:
    result = ProxyHeaderParser(**kwargs).feed(data)
    assert result is not None
    return result


def feed_all(parser: ProxyHeaderParser, chunks: Iterable[bytes]) -> tuple[ProxyHeader, bytes] | None:
    """Feed chunks until a header comes out; chunks after it are appended to ``rest`` as a caller would."""
    chunks = iter(chunks)
    for chunk in chunks:
        result = parser.feed(chunk)
        if result is not None:
            header, rest = result
            return header, rest + b"".join(chunks)
    return None


def reject(data: bytes, match: str, **kwargs: int) -> None:
    with pytest.raises(ProxyProtocolError, match=match):
        ProxyHeaderParser(**kwargs).feed(data)


def rejected_at(data: bytes, **kwargs: int) -> int:
    """Feed one byte at a time; return how many bytes had arrived when the parser refused them."""
    parser = ProxyHeaderParser(**kwargs)
    for count in range(1, len(data) + 1):
        try:
            assert parser.feed(data[count - 1 : count]) is None
        except ProxyProtocolError:
            return count
    raise AssertionError("never rejected")


AWS_VPCE = tlv(0xEA, b"\x01vpce-08d2bf15fac5001c9")
SSL_TLVS = (
    tlv(0x01, b"h2") + tlv(0x02, b"logs.example.com") + tlv(0x20, b"\x01\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3"))
)

# (id, header bytes, expected header)
VALID: list[tuple[str, bytes, ProxyHeader]] = [
    (
        "v1-tcp4",
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 5140\r\n",
        ProxyHeader(("192.168.0.1", 56324), ("192.168.0.11", 5140), 1),
    ),
    (
        "v1-tcp4-extremes",
        b"PROXY TCP4 255.255.255.255 0.0.0.0 65535 0\r\n",
        ProxyHeader(("255.255.255.255", 65535), ("0.0.0.0", 0), 1),
    ),
    (
        "v1-tcp6",
        b"PROXY TCP6 2001:db8::1 2001:DB8:0:0:0:0:0:2 40000 9020\r\n",
        ProxyHeader(("2001:db8::1", 40000), ("2001:db8::2", 9020), 1),
    ),
    (
        "v1-tcp6-v4mapped",
        b"PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n",
        ProxyHeader(("::ffff:c000:201", 1), ("::1", 2), 1),
    ),
    ("v1-unknown-short", b"PROXY UNKNOWN\r\n", ProxyHeader(None, None, 1)),
    ("v1-unknown-long", b"PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n", ProxyHeader(None, None, 1)),
    (
        "v2-tcp4",
        v2_tcp4("203.0.113.7", "10.0.0.5", 51000, 9020),
        ProxyHeader(("203.0.113.7", 51000), ("10.0.0.5", 9020), 2),
    ),
    (
        "v2-tcp4-tlvs",
        v2_tcp4("203.0.113.7", "10.0.0.5", 51000, 9020, AWS_VPCE + SSL_TLVS + tlv(0x04, b"")),
        ProxyHeader(("203.0.113.7", 51000), ("10.0.0.5", 9020), 2),
    ),
    (
        "v2-tcp6",
        v2_tcp6("2001:db8::dead:beef", "fd00::5", 443, 9020),
        ProxyHeader(("2001:db8::dead:beef", 443), ("fd00::5", 9020), 2),
    ),
    (
        "v2-tcp6-tlvs",
        v2_tcp6("2001:db8::dead:beef", "fd00::5", 443, 9020, SSL_TLVS),
        ProxyHeader(("2001:db8::dead:beef", 443), ("fd00::5", 9020), 2),
    ),
    ("v2-local", v2(LOCAL, UNSPEC), ProxyHeader(None, None, 2)),
    (
        "v2-local-with-addresses",
        v2_tcp4("10.0.0.2", "10.0.0.5", 40000, 9020, ver_cmd=LOCAL),
        ProxyHeader(None, None, 2),
    ),
    ("v2-proxy-unspec", v2(PROXY, UNSPEC), ProxyHeader(None, None, 2)),
]
VALID_IDS = [case[0] for case in VALID]


# --------------------------------------------------------------------------- valid headers


@pytest.mark.parametrize(("header", "expected"), [case[1:] for case in VALID], ids=VALID_IDS)
def test_valid_header_in_one_chunk(header: bytes, expected: ProxyHeader) -> None:
    assert parse(header) == (expected, b"")


@pytest.mark.parametrize(("header", "expected"), [case[1:] for case in VALID], ids=VALID_IDS)
def test_rest_keeps_the_frames_of_the_same_segment(header: bytes, expected: ProxyHeader) -> None:
    frames = frame("first %d", 1) + frame("second")
    assert struct.unpack("!L", frames[:4])[0] == len(frame("first %d", 1)) - 4

    assert parse(header + frames) == (expected, frames)


@pytest.mark.parametrize(("header", "expected"), [case[1:] for case in VALID], ids=VALID_IDS)
def test_one_byte_at_a_time(header: bytes, expected: ProxyHeader) -> None:
    data = header + frame()
    parser = ProxyHeaderParser()
    for index in range(len(header) - 1):
        assert parser.feed(data[index : index + 1]) is None, f"completed early at byte {index + 1}"
    # The last header byte completes it; later bytes are the caller's, fed to the frame decoder.
    assert parser.feed(data[len(header) - 1 : len(header)]) == (expected, b"")


@pytest.mark.parametrize(("header", "expected"), [case[1:] for case in VALID], ids=VALID_IDS)
def test_every_two_way_split(header: bytes, expected: ProxyHeader) -> None:
    data = header + frame()
    for cut in range(len(data) + 1):
        result = feed_all(ProxyHeaderParser(), [data[:cut], data[cut:]])
        assert result == (expected, data[len(header) :]), f"split at {cut}"


@pytest.mark.parametrize(("header", "expected"), [case[1:] for case in VALID], ids=VALID_IDS)
def test_empty_chunks_are_harmless(header: bytes, expected: ProxyHeader) -> None:
    assert feed_all(ProxyHeaderParser(), [b"", header[:3], b"", header[3:], b""]) == (expected, b"")


@pytest.mark.parametrize("header", [case[1] for case in VALID], ids=VALID_IDS)
def test_truncated_then_closed_just_waits(header: bytes) -> None:
    # EOF is the caller's to handle: every proper prefix only asks for more bytes.
    for cut in range(len(header)):
        assert ProxyHeaderParser().feed(header[:cut]) is None


def test_v1_worst_case_107_bytes_is_accepted() -> None:
    line = b"PROXY UNKNOWN " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n"
    assert len(line) == 107
    assert parse(line + b"\x00\x00") == (ProxyHeader(None, None, 1), b"\x00\x00")


def test_v1_longest_tcp_lines_are_accepted() -> None:
    tcp4 = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
    tcp6 = b"PROXY TCP6 " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n"
    assert (len(tcp4), len(tcp6)) == (56, 104)
    assert parse(tcp4)[0].source == ("255.255.255.255", 65535)
    assert parse(tcp6)[0].source == ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)


def test_v1_unknown_ignores_what_precedes_crlf() -> None:
    assert parse(b"PROXY UNKNOWN whatever \xff\x00 it says\r\nrest") == (ProxyHeader(None, None, 1), b"rest")


@pytest.mark.parametrize(("fam", "size"), [(UDP4, 12), (UDP6, 36), (UNIX_STREAM, 216), (UNIX_DGRAM, 216)])
def test_v2_families_without_a_tcp_address_fall_back_to_unspec(fam: int, size: int) -> None:
    header = v2(PROXY, fam, b"\x07" * size + AWS_VPCE)
    assert parse(header + b"rest") == (ProxyHeader(None, None, 2), b"rest")


def test_v2_unspec_address_bytes_are_skipped_uninterpreted() -> None:
    # Not TLV-framed on purpose: with UNSPEC the receiver ignores the address information.
    assert parse(v2(PROXY, UNSPEC, b"\xff\xff") + b"rest") == (ProxyHeader(None, None, 2), b"rest")


def test_v2_local_ignores_the_family_byte() -> None:
    # "discard the protocol block including the family which is ignored"
    assert parse(v2(LOCAL, 0x45, b"\x01\x02\x03") + b"rest") == (ProxyHeader(None, None, 2), b"rest")


def test_v2_header_exactly_at_the_cap_is_accepted() -> None:
    header = v2_tcp4("192.0.2.1", "192.0.2.2", 1, 2, tlv(0x04, b"\x00" * (536 - 16 - 12 - 3)))
    assert len(header) == 536
    assert parse(header)[0].source == ("192.0.2.1", 1)


def test_v2_cap_can_be_raised() -> None:
    header = v2_tcp6("2001:db8::1", "2001:db8::2", 1, 2, tlv(0x05, b"u" * 128) + tlv(0xE0, b"x" * 800))
    assert 536 < len(header) <= 16 + 1024
    reject(header, "exceeds max_header_bytes=536")
    parser = ProxyHeaderParser(max_header_bytes=16 + 1024)
    assert parser.max_header_bytes == 1040
    result = parser.feed(header)
    assert result is not None
    assert result[0].source == ("2001:db8::1", 1)


@pytest.mark.parametrize("cap", [231, 16 + 65536, 0, -1])
def test_cap_outside_its_range_is_refused(cap: int) -> None:
    with pytest.raises(ValueError, match="max_header_bytes must be between 232 and 65551"):
        ProxyHeaderParser(max_header_bytes=cap)


def test_parser_is_spent_after_a_header() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY UNKNOWN\r\n") == (ProxyHeader(None, None, 1), b"")
    with pytest.raises(RuntimeError, match="already parsed"):
        parser.feed(b"more")


def test_error_is_sticky() -> None:
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError, match=NOT_PROXY):
        parser.feed(b"\x00")
    with pytest.raises(ProxyProtocolError, match=NOT_PROXY):
        parser.feed(b"PROXY UNKNOWN\r\n")


def test_header_is_frozen() -> None:
    header = parse(b"PROXY UNKNOWN\r\n")[0]
    with pytest.raises(AttributeError):
        header.version = 2  # type: ignore[misc]


# --------------------------------------------------------------------------- not a PROXY header at all


def test_plain_socket_handler_frame_is_refused_on_its_first_byte() -> None:
    data = frame()
    assert data[0] == 0  # the high byte of the big-endian length
    reject(data[:1], NOT_PROXY)
    reject(data, NOT_PROXY)


@pytest.mark.parametrize(
    ("data", "at"),
    [
        pytest.param(b"\x00\x00\x02\x1a", 1, id="frame-length"),
        pytest.param(b"GET / HTTP/1.1\r\n", 1, id="http-get"),
        pytest.param(b"POST / HTTP/1.1\r\n", 2, id="http-post"),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 1, id="tls-client-hello"),
        pytest.param(b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", 1, id="lower-case"),
        pytest.param(b"PROXY\tTCP4 1.2.3.4 1.2.3.4 1 2\r\n", 6, id="tab"),
        pytest.param(b"PROXYTCP4 1.2.3.4 1.2.3.4 1 2\r\n", 6, id="no-space"),
        pytest.param(b"PRO", 0, id="v1-prefix-only"),
        pytest.param(b"\r\n\r\n\x00\r\nQUIX\n!\x11\x00\x0c", 11, id="v2-signature-typo"),
        pytest.param(b"\r\n\r\n", 0, id="v2-prefix-only"),
        pytest.param(b"\r\nGET", 3, id="crlf-then-http"),
    ],
)
def test_foreign_bytes_are_refused_at_the_first_wrong_byte(data: bytes, at: int) -> None:
    if at == 0:
        assert ProxyHeaderParser().feed(data) is None
        return
    assert rejected_at(data) == at
    reject(data, NOT_PROXY)


def test_refusal_shows_the_first_bytes() -> None:
    reject(b"\x00\x00\x02\x1a}q\x00", r"got b'\\x00\\x00\\x02\\x1a\}q\\x00'")


# --------------------------------------------------------------------------- bad v1 lines


def test_v1_without_crlf_is_refused_within_107_bytes() -> None:
    long_line = b"PROXY UNKNOWN " + b"f" * 200 + b"\r\n"
    # No CRLF among the first 107 bytes: a valid line cannot follow, so byte 107 is refused (never byte 109+).
    assert rejected_at(long_line) == 107
    reject(long_line, "without CRLF in its first 107 bytes")
    parser = ProxyHeaderParser()
    assert parser.feed(long_line[:106]) is None


def test_v1_108_byte_line_is_refused() -> None:
    line = b"PROXY UNKNOWN " + b"f" * 92 + b"\r\n"
    assert len(line) == 108
    assert rejected_at(line) == 107
    reject(line, "without CRLF")


@pytest.mark.parametrize(("family", "limit"), [(b"TCP4", 56), (b"TCP6", 104)], ids=["tcp4-56-bytes", "tcp6-104-bytes"])
def test_v1_tcp_lines_are_refused_beyond_their_family_maximum(family: bytes, limit: int) -> None:
    line = b"PROXY " + family + b" " + b"1" * 200
    assert rejected_at(line) == limit
    reject(line[:limit], f"without CRLF in its first {limit} bytes")


@pytest.mark.parametrize(
    ("line", "match"),
    [
        pytest.param(b"PROXY TCP4 256.1.1.1 10.0.0.1 1 2\r\n", "invalid TCP4 address '256.1.1.1'", id="octet-256"),
        pytest.param(b"PROXY TCP4 1.2.3 10.0.0.1 1 2\r\n", "invalid TCP4 address", id="three-octets"),
        pytest.param(b"PROXY TCP4 01.2.3.4 10.0.0.1 1 2\r\n", "invalid TCP4 address", id="leading-zero"),
        pytest.param(b"PROXY TCP4 1.2.3.4 10..0.1 1 2\r\n", "invalid TCP4 address", id="empty-octet"),
        pytest.param(b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n", "invalid character", id="tcp4-with-ipv6"),
        pytest.param(b"PROXY TCP6 10.0.0.1 2001:db8::1 1 2\r\n", "invalid TCP6 address '10.0.0.1'", id="tcp6-ipv4"),
        pytest.param(b"PROXY TCP6 2001:db8::1 ::1::2 1 2\r\n", "invalid TCP6 address", id="two-double-colons"),
        pytest.param(b"PROXY TCP6 2001:db8:1 ::1 1 2\r\n", "invalid TCP6 address", id="too-few-groups"),
        pytest.param(b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "invalid character", id="zone-id"),
        pytest.param(b"PROXY TCP6 fe80::g ::1 1 2\r\n", "invalid character", id="non-hex"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "invalid port '65536'", id="port-65536"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 999999\r\n", "invalid port '999999'", id="port-six-digits"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "invalid port '080'", id="port-leading-zero"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n", "invalid character", id="port-plus"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "invalid character", id="port-minus"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", "invalid port ''", id="port-empty"),
        pytest.param(b"PROXY TCP6 ::1 ::2 1 ff\r\n", "invalid port 'ff'", id="port-hex"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "malformed", id="missing-port"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "malformed", id="extra-field"),
        pytest.param(b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "malformed", id="double-space"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "malformed", id="trailing-space"),
        pytest.param(b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "malformed", id="space-after-family"),
        pytest.param(b"PROXY TCP4\r\n", "unsupported protocol", id="tcp4-no-fields"),
        pytest.param(b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unsupported protocol", id="tcp5"),
        pytest.param(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "unsupported protocol", id="udp4"),
        pytest.param(b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "unsupported protocol", id="lower-case-family"),
        pytest.param(b"PROXY UNKNOWNX\r\n", "unsupported protocol", id="unknown-suffix"),
        pytest.param(b"PROXY \r\n", "unsupported protocol", id="empty-family"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bare LF", id="lf-only"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", "bare CR", id="cr-only"),
        pytest.param(b"PROXY UNKNOWN\n", "bare LF", id="unknown-lf-only"),
        pytest.param(b"PROXY UNKNOWN a\rb\r\n", "bare CR", id="unknown-bare-cr"),
        pytest.param(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x00\r\n", "invalid character", id="nul"),
    ],
)
def test_bad_v1_lines_are_refused(line: bytes, match: str) -> None:
    reject(line, match)
    # Fed byte by byte, the same line is refused too, never accepted.
    with pytest.raises(ProxyProtocolError):
        feed_all(ProxyHeaderParser(), [line[i : i + 1] for i in range(len(line))])


def test_v1_bad_character_is_refused_before_the_line_ends() -> None:
    line = b"PROXY TCP4 1.2.3.4 x"
    assert rejected_at(line) == len(line)


# --------------------------------------------------------------------------- bad v2 headers


@pytest.mark.parametrize("ver_cmd", [0x01, 0x11, 0x31, 0xF1, 0x10])
def test_v2_wrong_version_nibble_is_refused_on_byte_13(ver_cmd: int) -> None:
    header = v2(ver_cmd, TCP4, b"\x00" * 12)
    assert rejected_at(header) == 13
    reject(header, f"unsupported version {ver_cmd >> 4}")


@pytest.mark.parametrize("ver_cmd", [0x22, 0x23, 0x2F])
def test_v2_unknown_command_is_refused_on_byte_13(ver_cmd: int) -> None:
    header = v2(ver_cmd, TCP4, b"\x00" * 12)
    assert rejected_at(header) == 13
    reject(header, "unknown command")


@pytest.mark.parametrize("fam", [0x01, 0x10, 0x13, 0x20, 0x23, 0x30, 0x41, 0xFF])
def test_v2_undefined_family_byte_is_refused_on_byte_14(fam: int) -> None:
    header = v2(PROXY, fam, b"\x00" * 36)
    assert rejected_at(header) == 14
    reject(header, "invalid address family")


@pytest.mark.parametrize(
    ("fam", "length"),
    [(TCP4, 0), (TCP4, 11), (UDP4, 11), (TCP6, 12), (TCP6, 35), (UDP6, 35), (UNIX_STREAM, 215), (UNIX_DGRAM, 36)],
)
def test_v2_length_too_short_for_the_family_is_refused_on_byte_16(fam: int, length: int) -> None:
    header = v2(PROXY, fam, b"\x00" * length)
    assert rejected_at(header + b"\x00" * 300) == 16
    reject(header, "too short for")


@pytest.mark.parametrize("length", [536 - 16 + 1, 1024, 0xFFFF])
def test_v2_oversized_length_is_refused_on_byte_16(length: int) -> None:
    fixed = v2(PROXY, TCP4, length=length)
    assert len(fixed) == 16
    reject(fixed, f"{16 + length} bytes exceeds max_header_bytes=536")
    assert rejected_at(fixed + b"\x00" * 100) == 16


def test_v2_oversized_local_is_refused_too() -> None:
    reject(v2(LOCAL, UNSPEC, length=1000), "exceeds max_header_bytes")


@pytest.mark.parametrize(
    ("tlvs", "match"),
    [
        pytest.param(b"\x04", "truncated TLV", id="one-byte"),
        pytest.param(b"\x04\x00", "truncated TLV", id="two-bytes"),
        pytest.param(struct.pack("!BH", 0x02, 10) + b"short", "running past the header end", id="value-overrun"),
        pytest.param(tlv(0x04, b"ok") + b"\xea\x00\x05", "running past the header end", id="second-overruns"),
    ],
)
def test_v2_badly_framed_tlvs_are_refused(tlvs: bytes, match: str) -> None:
    reject(v2_tcp4("192.0.2.1", "192.0.2.2", 1, 2, tlvs) + frame(), match)
    reject(v2_tcp6("2001:db8::1", "2001:db8::2", 1, 2, tlvs), match)


def test_v2_tlv_framing_is_checked_after_a_unix_block() -> None:
    reject(v2(PROXY, UNIX_STREAM, b"\x00" * 216 + b"\x04\x00"), "truncated TLV")


# --------------------------------------------------------------------------- chunking never changes the verdict


def outcome(chunks: Iterable[bytes]) -> tuple[ProxyHeader, bytes] | str | None:
    try:
        return feed_all(ProxyHeaderParser(), chunks)
    except ProxyProtocolError:
        # Only the verdict: which check fires first (and the bytes quoted) may depend on how much had arrived.
        return "refused"


@pytest.mark.parametrize("header", [case[1] for case in VALID], ids=VALID_IDS)
def test_mutated_headers_get_the_same_verdict_however_they_are_chunked(header: bytes) -> None:
    rng = random.Random(header)
    data = header + frame()
    for position in range(len(header)):
        for value in {0x00, 0x0A, 0x0D, 0x20, 0x31, 0x3A, 0xFF, rng.randrange(256)}:
            mutated = data[:position] + bytes([value]) + data[position + 1 :]
            whole = outcome([mutated])
            assert whole is not None  # a frame follows: always settled, one way or the other
            assert outcome([mutated[i : i + 1] for i in range(len(mutated))]) == whole, (position, value)
            cut = rng.randrange(len(mutated) + 1)
            assert outcome([mutated[:cut], mutated[cut:]]) == whole, (position, value, cut)
