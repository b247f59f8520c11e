"""Hybrid transport (caBLE v2): QR code + BLE advert + Noise-encrypted WebSocket tunnel.

Modules: ``qr`` (FIDO:/ digits, CBOR payload), ``keys`` (HKDF purposes, P-256 from seed),
``advert`` (the 20-byte EID), ``domains`` (tunnel-server ids, URLs), ``noise`` (KNpsk0/NKpsk0
handshakes), ``crypter`` (post-handshake AES-GCM), ``messages`` (post-handshake message, frame
types), ``tunnel_server`` (a relay), ``authenticator_role`` (the phone), ``client_role``
(the desktop, also as a python-fido2 CtapDevice). Networking modules need ``websockets``.
"""
