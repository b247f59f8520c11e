"""UHID event encoding and the UHID transport over a socketpair standing in for /dev/uhid."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct

from fido2.hid.base import parse_report_descriptor

from transports import uhid
from transports.ctaphid import BROADCAST_CID, Cmd, fragment
from transports.hid_descriptor import FIDO_REPORT_DESCRIPTOR, report_descriptor


class FakeHandler:
    async def handle_cbor(self, request: bytes, ctx: object = None) -> bytes:
        return b"\x00"

    async def handle_u2f(self, apdu: bytes, ctx: object = None) -> bytes:
        return b"\x90\x00"

    def power_cycle(self) -> None:
        pass

    def wink(self) -> None:
        pass


def test_report_descriptor_is_fido_64_in_64_out() -> None:
    assert parse_report_descriptor(FIDO_REPORT_DESCRIPTOR) == (64, 64)
    assert FIDO_REPORT_DESCRIPTOR[:5] == bytes([0x06, 0xD0, 0xF1, 0x09, 0x01])
    assert parse_report_descriptor(report_descriptor(32)) == (32, 32)


def test_event_size_matches_uhid_h() -> None:
    # u32 type + struct uhid_create2_req (128 + 64 + 64 + 2 + 2 + 16 + 4096)
    assert uhid.UHID_EVENT_SIZE == 4 + 4372


def test_create2_layout() -> None:
    dev = uhid.UhidDevice(name="key", uniq="sn1", pid=0x1234, version=0x0102)
    ev = uhid.encode_create2(dev)
    assert len(ev) == uhid.UHID_EVENT_SIZE
    assert struct.unpack_from("=I", ev)[0] == uhid.UHID_CREATE2 == 11
    assert ev[4:132].rstrip(b"\0") == b"key"
    assert ev[132:196] == bytes(64)  # phys
    assert ev[196:260].rstrip(b"\0") == b"sn1"
    rd_size, bus, vendor, product, version, country = struct.unpack_from("=HHIIII", ev, 260)
    assert (rd_size, bus, vendor, product, version, country) == (
        len(FIDO_REPORT_DESCRIPTOR),
        0x03,
        0x1209,
        0x1234,
        0x0102,
        0,
    )
    assert ev[280 : 280 + rd_size] == FIDO_REPORT_DESCRIPTOR


def test_input2_output_destroy_replies() -> None:
    report = bytes(range(64))
    ev = uhid.encode_input2(report)
    assert struct.unpack_from("=IH", ev) == (uhid.UHID_INPUT2, 64)
    assert ev[6:70] == report
    assert struct.unpack_from("=I", uhid.encode_destroy())[0] == uhid.UHID_DESTROY
    assert struct.unpack_from("=IIH", uhid.encode_get_report_reply(7, errno.EIO)) == (10, 7, 5)
    assert struct.unpack_from("=IIH", uhid.encode_set_report_reply(8, errno.EIO)) == (14, 8, 5)


def kernel_output(payload: bytes, rtype: int = uhid.UHID_OUTPUT_REPORT) -> bytes:
    """What the kernel writes for a hidraw write() of ``payload``."""
    data = payload.ljust(uhid.UHID_DATA_MAX, b"\0")
    return struct.pack(f"=I{uhid.UHID_DATA_MAX}sHB", uhid.UHID_OUTPUT, data, len(payload), rtype)


def test_decode_events() -> None:
    ev = uhid.decode_event(kernel_output(b"\x00" + bytes(range(64))))
    assert (ev.type, ev.rtype, len(ev.data)) == (uhid.UHID_OUTPUT, uhid.UHID_OUTPUT_REPORT, 65)
    assert uhid.output_report(ev.data) == bytes(range(64))
    get = struct.pack("=IIBB", uhid.UHID_GET_REPORT, 99, 0, 0)  # short: zero-extended
    assert uhid.decode_event(get).request_id == 99
    start = uhid.decode_event(struct.pack("=IQ", uhid.UHID_START, 4))
    assert (start.type, start.dev_flags) == (uhid.UHID_START, 4)
    assert uhid.decode_event(struct.pack("=I", uhid.UHID_OPEN)).type == uhid.UHID_OPEN


def test_output_report_strips_report_number_and_pads() -> None:
    assert uhid.output_report(b"\x00" + b"\xaa" * 64) == b"\xaa" * 64
    assert uhid.output_report(b"\x00\x01\x02") == b"\x01\x02" + bytes(62)


async def test_uhid_transport_round_trip_over_socketpair() -> None:
    kernel, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    kernel.setblocking(False)
    handler = FakeHandler()
    transport = uhid.UhidTransport(handler, uhid.UhidDevice(name="test"))
    await transport.start(fd=os.dup(ours.fileno()))
    ours.close()
    loop = asyncio.get_running_loop()
    try:
        create = await loop.sock_recv(kernel, 8192)
        assert len(create) == uhid.UHID_EVENT_SIZE
        assert struct.unpack_from("=I", create)[0] == uhid.UHID_CREATE2
        kernel.send(struct.pack("=IQ", uhid.UHID_START, 0))
        kernel.send(struct.pack("=I", uhid.UHID_OPEN))
        nonce = bytes(range(8))
        kernel.send(kernel_output(b"\x00" + fragment(BROADCAST_CID, Cmd.INIT, nonce)[0]))
        ev = await asyncio.wait_for(loop.sock_recv(kernel, 8192), 2)
        etype, size = struct.unpack_from("=IH", ev)
        assert (etype, size) == (uhid.UHID_INPUT2, 64)
        report = ev[6:70]
        assert struct.unpack_from(">IBH", report) == (BROADCAST_CID, 0x86, 17)
        assert report[7:15] == nonce
        assert transport.started.is_set() and transport.opened

        kernel.send(struct.pack("=IIBB", uhid.UHID_GET_REPORT, 42, 0, 0))
        reply = await asyncio.wait_for(loop.sock_recv(kernel, 8192), 2)
        assert struct.unpack_from("=IIH", reply) == (uhid.UHID_GET_REPORT_REPLY, 42, errno.EIO)
    finally:
        await transport.close()
    destroy = await asyncio.wait_for(loop.sock_recv(kernel, 8192), 2)
    assert struct.unpack_from("=I", destroy)[0] == uhid.UHID_DESTROY
    kernel.close()
