"""Noise handshakes with both roles ours, random keys, and tampering."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from transports.hybrid.crypter import Crypter
from transports.hybrid.noise import HandshakeError, Initiator, Pattern, Responder


def _pair(pattern: Pattern, psk: bytes) -> tuple[Initiator, Responder]:
    identity = ec.generate_private_key(ec.SECP256R1())
    if pattern is Pattern.KN:
        return Initiator(psk, identity=identity), Responder(
            psk, peer_identity=identity.public_key()
        )
    return Initiator(psk, peer_identity=identity.public_key()), Responder(psk, identity=identity)


@pytest.mark.parametrize("pattern", [Pattern.KN, Pattern.NK])
def test_handshake_agrees_and_crypters_talk(pattern: Pattern) -> None:
    psk = os.urandom(32)
    initiator, responder = _pair(pattern, psk)
    assert initiator.pattern is responder.pattern is pattern
    msg1 = initiator.start()
    msg2, r = responder.respond(msg1)
    i = initiator.finish(msg2)
    assert len(msg1) == len(msg2) == 81
    assert i.handshake_hash == r.handshake_hash
    assert (i.write_key, i.read_key) == (r.read_key, r.write_key)
    desktop, phone = Crypter(i.read_key, i.write_key), Crypter(r.read_key, r.write_key)
    for n in range(3):
        assert phone.decrypt(desktop.encrypt(b"\x01\x04" * n)) == b"\x01\x04" * n
        assert desktop.decrypt(phone.encrypt(bytes(n * 40))) == bytes(n * 40)


@pytest.mark.parametrize("pattern", [Pattern.KN, Pattern.NK])
def test_wrong_psk_fails(pattern: Pattern) -> None:
    identity = ec.generate_private_key(ec.SECP256R1())
    if pattern is Pattern.KN:
        initiator = Initiator(os.urandom(32), identity=identity)
        responder = Responder(os.urandom(32), peer_identity=identity.public_key())
    else:
        initiator = Initiator(os.urandom(32), peer_identity=identity.public_key())
        responder = Responder(os.urandom(32), identity=identity)
    with pytest.raises(HandshakeError):
        responder.respond(initiator.start())


def test_wrong_identity_fails_kn() -> None:
    psk = os.urandom(32)
    initiator = Initiator(psk, identity=ec.generate_private_key(ec.SECP256R1()))
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(HandshakeError):
        Responder(psk, peer_identity=other).respond(initiator.start())


def test_tampered_response_fails() -> None:
    initiator, responder = _pair(Pattern.KN, bytes(32))
    msg2, _ = responder.respond(initiator.start())
    with pytest.raises(HandshakeError):
        initiator.finish(msg2[:-1] + bytes([msg2[-1] ^ 1]))


@pytest.mark.parametrize("junk", [b"", bytes(81), b"\x04" + bytes(80), os.urandom(100)])
def test_malformed_messages_rejected(junk: bytes) -> None:
    _, responder = _pair(Pattern.KN, bytes(32))
    with pytest.raises(HandshakeError):
        responder.respond(junk)


def test_role_arguments_are_checked() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError):
        Initiator(bytes(32))
    with pytest.raises(ValueError):
        Responder(bytes(32), identity=key, peer_identity=key.public_key())
