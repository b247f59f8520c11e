"""Attestation statements: packed (self or x5c batch certificate), fido-u2f, none.

The batch certificate and its key come from ``fido-emu attestation init`` and are held in
the store (key sealed); see ``authenticator/attestation_ca.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from authenticator.core import keys

if TYPE_CHECKING:
    from authenticator.core.credentials import Credential
    from authenticator.core.device import Device

STATE_CHAIN = "attestation.chain"  # CBOR array of DER certs, leaf first
STATE_KEY = "attestation.key"  # sealed PKCS#8 of the batch key


@dataclass
class BatchAttestation:
    key: ec.EllipticCurvePrivateKey
    chain: list[bytes]  # DER, leaf first (the root is not sent)


_UNSET = object()


def save_sealed_key(dev: Device, name: str, key: ec.EllipticCurvePrivateKey) -> None:
    """An attestation key into the store as PKCS#8, sealed under the device key."""
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    dev.store.set_state(name, dev.device_keys.state.seal(der, name.encode()))


def load_sealed_key(dev: Device, name: str) -> ec.EllipticCurvePrivateKey | None:
    sealed = dev.store.get_state(name)
    if sealed is None:
        return None
    key = serialization.load_der_private_key(dev.device_keys.state.open(sealed, name.encode()), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def load_batch(dev: Device) -> BatchAttestation | None:
    """The installed batch key and chain (cached on the authenticator; save_batch and
    factory reset refresh it)."""
    import cbor2

    cached = getattr(dev, "_batch_cache", _UNSET)
    if cached is not _UNSET:
        return cached  # type: ignore[return-value]
    chain = dev.store.get_state(STATE_CHAIN)
    key = load_sealed_key(dev, STATE_KEY) if chain is not None else None
    if chain is None or key is None:
        dev._batch_cache = None  # type: ignore[attr-defined]
        return None
    batch = BatchAttestation(key, list(cbor2.loads(chain)))
    dev._batch_cache = batch  # type: ignore[attr-defined]
    return batch


def save_batch(dev: Device, key: ec.EllipticCurvePrivateKey, chain: list[bytes]) -> None:
    import cbor2

    save_sealed_key(dev, STATE_KEY, key)
    dev.store.set_state(STATE_CHAIN, cbor2.dumps(chain))
    dev.__dict__.pop("_batch_cache", None)


def statement(
    dev: Device,
    cred: Credential,
    private_key: Any,
    auth_data: bytes,
    client_data_hash: bytes,
    *,
    mode: str,
    batch: BatchAttestation | None,
) -> tuple[str, dict]:
    """(fmt, attStmt) for a new credential."""
    if mode == "none":
        return "none", {}
    to_sign = auth_data + client_data_hash
    if mode == "packed" and batch is not None:
        sig = batch.key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
        return "packed", {"alg": -7, "sig": dev.faults.signature(sig), "x5c": batch.chain}
    sig = keys.sign(cred.algorithm, private_key, to_sign)
    return "packed", {"alg": cred.algorithm, "sig": dev.faults.signature(sig)}
