"""Tunnel-server ids -> domains, and the tunnel URLs built on them.

Ids 0 and 1 are assigned; 2..255 are reserved (rejected); ids >= 256 name a domain derived
from SHA-256 so that new servers need no client update.
"""

from __future__ import annotations

from hashlib import sha256

ASSIGNED_DOMAINS = ("cable.ua5v.com", "cable.auth.com")
_TLDS = (".com", ".org", ".net", ".info")
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_HASH_LABEL = b"caBLEv2 tunnel server domain"
SUBPROTOCOL = "fido.cable"
ROUTING_ID_HEADER = "X-caBLE-Routing-ID"


def is_known_domain_id(server_id: int) -> bool:
    return server_id < len(ASSIGNED_DOMAINS) or 256 <= server_id <= 0xFFFF


def tunnel_domain(server_id: int) -> str | None:
    """The host name for a tunnel-server id, or None if the id is unassigned."""
    if server_id < len(ASSIGNED_DOMAINS):
        return ASSIGNED_DOMAINS[server_id]
    if not 256 <= server_id <= 0xFFFF:
        return None
    digest = sha256(_HASH_LABEL + server_id.to_bytes(2, "little") + b"\x00").digest()
    value = int.from_bytes(digest[:8], "little")
    tld = _TLDS[value & 3]
    value >>= 2
    label = []
    while value:
        label.append(_BASE32[value & 31])
        value >>= 5
    return "cable." + "".join(label) + tld


def tunnel_base(server_id: int) -> str:
    domain = tunnel_domain(server_id)
    if domain is None:
        raise ValueError(f"unassigned tunnel server id {server_id}")
    return "wss://" + domain


def new_tunnel_url(base: str, tunnel_id: bytes) -> str:
    """Where the phone opens its half: base is "wss://host" or e.g. "ws://127.0.0.1:8080"."""
    return f"{base.rstrip('/')}/cable/new/{tunnel_id.hex().upper()}"


def connect_url(base: str, routing_id: bytes, tunnel_id: bytes) -> str:
    return f"{base.rstrip('/')}/cable/connect/{routing_id.hex().upper()}/{tunnel_id.hex().upper()}"
