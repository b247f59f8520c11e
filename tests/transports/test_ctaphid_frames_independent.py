"""CTAPHID error frames judged without our own ``fragment()`` (issue 18).

Requests are built byte by byte from the CTAP 2.1 HID framing (§11.2.4: init packet
CID(4) CMD|0x80 BCNTH BCNTL data(57), continuation CID SEQ data(59)) and answers are parsed
the same way here, or by python-fido2's ``CtapHidDevice``, which raises ``CtapError`` with
the code of a CTAPHID_ERROR frame. So a framing bug shared by our fragmenter and our
reassembler cannot hide.
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from fido2.ctap import CtapError
from fido2.hid import CTAPHID

from authenticator import Authenticator
from transports.udp import UdpTransport, open_udp_device

LOOPBACK = "127.0.0.1"
BROADCAST = 0xFFFFFFFF
ERROR = 0x3F
INIT, PING = 0x06, 0x01
ERR_INVALID_CMD, ERR_INVALID_LEN, ERR_INVALID_SEQ, ERR_INVALID_CHANNEL = 0x01, 0x03, 0x04, 0x0B


def init_packet(cid: int, cmd: int, bcnt: int, data: bytes) -> bytes:
    body = struct.pack(">IBH", cid, 0x80 | cmd, bcnt) + data[:57]
    return body.ljust(64, b"\x00")


def cont_packet(cid: int, seq: int, data: bytes) -> bytes:
    return (struct.pack(">IB", cid, seq) + data[:59]).ljust(64, b"\x00")


def parse(report: bytes) -> tuple[int, int, bytes]:
    """(cid, cmd, data) of a single-packet answer, read by the spec's layout."""
    assert len(report) == 64
    cid, cmd, bcnt = struct.unpack(">IBH", report[:7])
    assert cmd & 0x80, "an answer starts with an init packet"
    assert bcnt <= 57, "these answers fit one packet"
    return cid, cmd & 0x7F, report[7 : 7 + bcnt]


@pytest.fixture
async def udp():
    transport = UdpTransport(Authenticator(), listen=(LOOPBACK, 0))
    await transport.start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, 0))
    sock.settimeout(5)
    yield transport, sock
    sock.close()
    await transport.close()


async def _exchange(sock: socket.socket, address, *reports: bytes) -> bytes:
    for report in reports:
        sock.sendto(report, address)
    data, _ = await asyncio.to_thread(sock.recvfrom, 2048)
    return data


async def _allocate(sock: socket.socket, address) -> int:
    nonce = bytes(range(8))
    cid, cmd, data = parse(await _exchange(sock, address, init_packet(BROADCAST, INIT, 8, nonce)))
    assert (cid, cmd) == (BROADCAST, INIT) and data[:8] == nonce and len(data) == 17
    (new_cid,) = struct.unpack(">I", data[8:12])
    assert new_cid not in (0, BROADCAST)
    return new_cid


async def test_unknown_command_answers_an_invalid_cmd_error_frame(udp) -> None:
    transport, sock = udp
    cid = await _allocate(sock, transport.address)
    answer = parse(await _exchange(sock, transport.address, init_packet(cid, 0x05, 0, b"")))
    assert answer == (cid, ERROR, bytes([ERR_INVALID_CMD]))


async def test_continuation_out_of_sequence_answers_invalid_seq(udp) -> None:
    transport, sock = udp
    cid = await _allocate(sock, transport.address)
    payload = bytes(range(100))  # 57 bytes in the init packet, 43 in continuation seq 0
    sock.sendto(init_packet(cid, PING, len(payload), payload), transport.address)
    answer = await _exchange(sock, transport.address, cont_packet(cid, 1, payload[57:]))
    assert parse(answer) == (cid, ERROR, bytes([ERR_INVALID_SEQ]))
    # and the channel still works, with a correctly sequenced message
    sock.sendto(init_packet(cid, PING, len(payload), payload), transport.address)
    first = await _exchange(sock, transport.address, cont_packet(cid, 0, payload[57:]))
    got_cid, cmd, bcnt = struct.unpack(">IBH", first[:7])
    assert (got_cid, cmd, bcnt) == (cid, 0x80 | PING, len(payload))
    rest, _ = await asyncio.to_thread(sock.recvfrom, 2048)
    assert rest[:5] == struct.pack(">IB", cid, 0)
    assert first[7:64] + rest[5 : 5 + 43] == payload


async def test_declared_length_over_the_maximum_answers_invalid_len(udp) -> None:
    transport, sock = udp
    cid = await _allocate(sock, transport.address)
    answer = await _exchange(sock, transport.address, init_packet(cid, PING, 7610, b"x"))
    assert parse(answer) == (cid, ERROR, bytes([ERR_INVALID_LEN]))


async def test_reserved_channel_zero_answers_invalid_channel(udp) -> None:
    transport, sock = udp
    answer = await _exchange(sock, transport.address, init_packet(0, PING, 1, b"x"))
    assert parse(answer) == (0, ERROR, bytes([ERR_INVALID_CHANNEL]))


async def test_python_fido2_reads_our_error_frames(udp) -> None:
    transport, _ = udp
    dev = await asyncio.to_thread(open_udp_device, transport.address, (LOOPBACK, 0), 5)
    try:
        with pytest.raises(CtapError) as err:
            await asyncio.to_thread(dev.call, 0x05)
        assert err.value.code == ERR_INVALID_CMD
        with pytest.raises(CtapError) as err:
            await asyncio.to_thread(dev.call, CTAPHID.CBOR, b"")
        assert err.value.code == ERR_INVALID_LEN
        assert await asyncio.to_thread(dev.ping, b"still alive") == b"still alive"
    finally:
        dev.close()
