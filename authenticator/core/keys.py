"""Credential key pairs per COSE algorithm: generate, serialise, sign.

Private keys travel only as raw bytes to be sealed (EC scalars, Ed25519 seeds, RSA
PKCS#8). Loading an EC key recomputes its public point, so callers cache loaded keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

if TYPE_CHECKING:
    from fido2.cose import CoseKey

ES256, EDDSA, ES384, RS256 = -7, -8, -35, -257
NAMES = {ES256: "ES256", EDDSA: "EdDSA", ES384: "ES384", RS256: "RS256"}
SUPPORTED = tuple(NAMES)

_CURVES = {ES256: (ec.SECP256R1, 32, hashes.SHA256), ES384: (ec.SECP384R1, 48, hashes.SHA384)}


def generate(alg: int) -> Any:
    if alg in _CURVES:
        return ec.generate_private_key(_CURVES[alg][0]())
    if alg == EDDSA:
        return ed25519.Ed25519PrivateKey.generate()
    if alg == RS256:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unsupported algorithm {alg}")


def _ec_cose(alg: int, public: ec.EllipticCurvePublicNumbers) -> dict:
    size = _CURVES[alg][1]
    crv = 1 if alg == ES256 else 2
    return {1: 2, 3: alg, -1: crv, -2: public.x.to_bytes(size, "big"), -3: public.y.to_bytes(size, "big")}


def material(alg: int, key: Any) -> tuple[bytes, dict]:
    """(private bytes to seal, COSE public key) from one look at the key: for EC keys
    both come from one private_numbers() call, the costliest step of makeCredential."""
    if alg in _CURVES:
        numbers = key.private_numbers()
        raw = numbers.private_value.to_bytes(_CURVES[alg][1], "big")
        return raw, _ec_cose(alg, numbers.public_numbers)
    return private_bytes(alg, key), cose_public_key(alg, key)


def private_bytes(alg: int, key: Any) -> bytes:
    if alg in _CURVES:
        return key.private_numbers().private_value.to_bytes(_CURVES[alg][1], "big")
    if alg == EDDSA:
        return key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load(alg: int, data: bytes) -> Any:
    if alg in _CURVES:
        return ec.derive_private_key(int.from_bytes(data, "big"), _CURVES[alg][0]())
    if alg == EDDSA:
        return ed25519.Ed25519PrivateKey.from_private_bytes(data)
    if alg == RS256:
        return serialization.load_der_private_key(data, None)
    raise ValueError(f"unsupported algorithm {alg}")


_ECDSA = {alg: ec.ECDSA(spec[2]()) for alg, spec in _CURVES.items()}


def sign(alg: int, key: Any, data: bytes) -> bytes:
    if alg in _CURVES:
        return key.sign(data, _ECDSA[alg])
    if alg == EDDSA:
        return key.sign(data)
    if alg == RS256:
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise ValueError(f"unsupported algorithm {alg}")


def cose_public_key(alg: int, key: Any) -> dict:
    """The COSE_Key of a credential's public key, as a plain map (cheap to encode)."""
    pub = key.public_key()
    if alg in _CURVES:
        return _ec_cose(alg, pub.public_numbers())
    if alg == EDDSA:
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {1: 1, 3: alg, -1: 6, -2: raw}
    if alg == RS256:
        numbers = pub.public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        return {1: 3, 3: alg, -1: n, -2: e}
    raise ValueError(f"unsupported algorithm {alg}")


def cose_key_object(alg: int, key: Any) -> CoseKey:
    """The same key as python-fido2's CoseKey (for callers that verify with it). Imported
    here: fido2.cose costs every CLI call ~3 ms and only verifiers need it."""
    from fido2.cose import CoseKey

    return CoseKey.for_alg(alg)(cose_public_key(alg, key))


def pkcs8(alg: int, key: Any) -> bytes:
    """PKCS#8 DER, for exporting credentials to Chromium's virtual authenticator."""
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
