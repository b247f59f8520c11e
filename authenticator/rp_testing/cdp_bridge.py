"""Our credentials inside Chromium's virtual authenticator, over the CDP ``WebAuthn`` domain.

Why: CI runners rarely have /dev/uhid, but every Chromium has DevTools' virtual
authenticator. The bridge makes one that looks like our profile (transport, resident keys,
UV, backup flags), copies our stored credentials into it (PKCS#8 private keys, user
handles, counters) and, on :meth:`CdpBridge.export`, copies back what the browser created
or counted, sealed exactly as :mod:`authenticator.core.credentials` seals its own. So a passkey
registered with ``fido-emu webauthn create --store`` signs in through a headless browser,
and one registered in the browser signs in through the CLI or USB afterwards.

The bridge takes a plain "send a CDP command" callable, so it works with any driver:

* Playwright (async): ``bridge = await playwright_bridge(page, auth)``
* Playwright (sync):  ``bridge = playwright_sync_bridge(page, auth)``
* Selenium (Chromium): ``bridge = selenium_bridge(driver, auth)`` (``execute_cdp_cmd``)

While attached, Chromium signs, not our core: faults that change a signature, flags or
authData (``bad-signature``, ``up-0``, ...) do not apply, nor do credProtect,
hmac-secret/PRF outputs, credBlob or large blobs. Counter faults apply at import:
``counter-regress`` makes the next browser assertion go back by one, ``counter-reset``
restarts it at 1. Chromium always increments counters (registration included), so
``counter_mode="zero"`` profiles (synced-passkey) show 1, 2, ... in the browser and 0 again
through our core: an RP that checks counters takes that 0 for a clone. The virtual authenticator belongs to one tab (CDP target);
pages opened later need their own bridge.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from authenticator.core import Authenticator, keys
from authenticator.core.credentials import Credential
from authenticator.core.params import encode
from storage.base import CredentialRecord, check_counter

SyncSend = Callable[[str, dict[str, Any]], dict[str, Any]]
AsyncSend = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

# Our transport names -> CDP AuthenticatorTransport (CDP still calls hybrid "cable").
TRANSPORTS = {"usb": "usb", "internal": "internal", "hybrid": "cable", "ble": "ble", "nfc": "nfc"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


@dataclass
class ExportResult:
    """What :meth:`CdpBridge.export` changed in our store."""

    added: list[bytes] = field(default_factory=list)
    counters: dict[bytes, int] = field(default_factory=dict)  # credential id -> new value


def virtual_authenticator_options(
    auth: Authenticator, *, user_verified: bool = True, transport: str | None = None
) -> dict[str, Any]:
    """``VirtualAuthenticatorOptions`` that match the authenticator's profile."""
    cfg = auth.config
    name = transport or (cfg.transports[0] if cfg.transports else "usb")
    ext = set(cfg.extensions)
    return {
        "protocol": "ctap2",
        "ctap2Version": "ctap2_1",
        "transport": TRANSPORTS.get(name, name),
        "hasResidentKey": cfg.resident_keys,
        "hasUserVerification": bool(cfg.builtin_uv or auth.pin.is_set),
        "isUserVerified": user_verified,
        "automaticPresenceSimulation": True,
        "hasLargeBlob": cfg.resident_keys and "largeBlobKey" in ext,
        "hasCredBlob": "credBlob" in ext,
        "hasMinPinLength": "minPinLength" in ext,
        "hasPrf": "hmac-secret" in ext,
        "defaultBackupEligibility": cfg.backup_eligible,
        "defaultBackupState": cfg.backup_state,
    }


def _counter_key(auth: Authenticator, cred: Credential) -> bytes:
    """Where the browser's counter lives in our store. Chromium cannot sign with counter 0,
    so ``counter_mode="zero"`` credentials keep the browser's counter under their own id
    (the core never reads it) and a re-import continues from it instead of replaying."""
    return auth.counter_key(cred) or cred.id


def _import_count(auth: Authenticator, cred: Credential) -> int:
    """The signCount to hand Chromium (it adds one before its next signature)."""
    value = auth.counters.peek(_counter_key(auth, cred))
    faults = auth.faults
    if faults.counter_reset:
        return 0
    if faults.counter_regress:
        return max(0, value - 2)
    return value


def credential_params(auth: Authenticator, cred: Credential, rp_id: str) -> dict[str, Any]:
    """One CDP ``Credential`` for ``WebAuthn.addCredential``."""
    private = auth.credentials.private_key(cred)
    out: dict[str, Any] = {
        "credentialId": _b64(cred.id),
        "isResidentCredential": cred.discoverable,
        "rpId": rp_id,
        "privateKey": _b64(keys.pkcs8(cred.algorithm, private)),
        "signCount": _import_count(auth, cred),
        "backupEligibility": cred.backup_eligible,
        "backupState": cred.backup_state,
    }
    record = cred.record
    if record is not None and record.user_id:
        out["userHandle"] = _b64(record.user_id)
        out["userName"] = record.user_name or ""
        out["userDisplayName"] = record.user_display_name or ""
    return out


def stored_records(auth: Authenticator, rp_ids: Iterable[str] | None = None) -> list[CredentialRecord]:
    """Every stored credential (optionally of some RPs): what the bridge imports."""
    wanted = set(rp_ids) if rp_ids is not None else None
    out: list[CredentialRecord] = []
    for rp in auth.store.list_rps():
        if wanted is None or rp.rp_id in wanted:
            out.extend(auth.store.credentials_for_rp(rp.rp_id_hash))
    return out


def _algorithm(private: Any) -> int:
    if isinstance(private, ec.EllipticCurvePrivateKey):
        return {"secp256r1": keys.ES256, "secp384r1": keys.ES384}[private.curve.name]
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return keys.EDDSA
    if isinstance(private, rsa.RSAPrivateKey):
        return keys.RS256
    raise ValueError(f"unsupported key type {type(private).__name__}")


def apply_export(auth: Authenticator, credentials: list[dict[str, Any]]) -> ExportResult:
    """Bring ``WebAuthn.getCredentials`` output into our store: new credentials become
    stored records (Chromium's id kept, key sealed under our device key), known ones only
    move their counter forward. Counters never go back here."""
    result = ExportResult()
    for c in credentials:  # refuse a bad counter before anything is written
        check_counter(int(c.get("signCount") or 0))
    for c in credentials:
        cred_id = _unb64(c["credentialId"])
        rp_id = c.get("rpId") or ""
        rp_id_hash = hashlib.sha256(rp_id.encode()).digest()
        count = int(c.get("signCount") or 0)
        cred = auth.credentials.resolve(cred_id, rp_id_hash)
        if cred is None:
            cred = _add_record(auth, c, cred_id, rp_id, rp_id_hash)
            result.added.append(cred_id)
        key = _counter_key(auth, cred)
        if count > auth.counters.peek(key):
            auth.counters.set(key, count)
            result.counters[cred_id] = count
    return result


def _add_record(
    auth: Authenticator, c: dict[str, Any], cred_id: bytes, rp_id: str, rp_id_hash: bytes
) -> Credential:
    private = serialization.load_der_private_key(_unb64(c["privateKey"]), None)
    alg = _algorithm(private)
    raw, cose = keys.material(alg, private)
    cfg = auth.config
    record = CredentialRecord(
        credential_id=cred_id,
        rp_id=rp_id,
        rp_id_hash=rp_id_hash,
        user_id=_unb64(c["userHandle"]) if c.get("userHandle") else b"",
        user_name=c.get("userName") or None,
        user_display_name=c.get("userDisplayName") or None,
        algorithm=alg,
        sealed_key=auth.device_keys.records.seal(raw, cred_id),
        public_key=encode(cose),
        discoverable=bool(c.get("isResidentCredential")),
        backup_eligible=bool(c.get("backupEligibility", cfg.backup_eligible)),
        backup_state=bool(c.get("backupState", cfg.backup_state)),
        created=auth.wall_clock(),
        extra={"origin": "cdp-virtual-authenticator"},
    )
    replaced = auth.store.put_credential(record)
    if replaced is not None:  # same rpId + user.id: the browser overwrote it, as we would
        auth.credentials.forget(replaced.credential_id)
        auth.counters.forget(replaced.credential_id)
    return auth.credentials.from_record(record)


class _Plan:
    """The commands both bridges send; subclasses only differ in how they send them."""

    def __init__(
        self,
        auth: Authenticator,
        *,
        user_verified: bool = True,
        transport: str | None = None,
        enable_ui: bool = False,
    ) -> None:
        self.auth = auth
        self.user_verified = user_verified
        self.transport = transport
        self.enable_ui = enable_ui
        self.authenticator_id: str | None = None

    def _options(self) -> dict[str, Any]:
        return {"options": virtual_authenticator_options(
            self.auth, user_verified=self.user_verified, transport=self.transport)}

    def _imports(self, rp_ids: Iterable[str] | None) -> list[dict[str, Any]]:
        return [
            credential_params(self.auth, self.auth.credentials.from_record(r), r.rp_id)
            for r in stored_records(self.auth, rp_ids)
        ]

    def _resolve(self, cred_id: bytes, rp_id: str) -> dict[str, Any]:
        cred = self.auth.credentials.resolve(cred_id, hashlib.sha256(rp_id.encode()).digest())
        if cred is None:
            raise KeyError(f"credential {cred_id.hex()[:16]}… is not ours for {rp_id}")
        return credential_params(self.auth, cred, rp_id)

    def _id(self) -> dict[str, Any]:
        if self.authenticator_id is None:
            raise RuntimeError("bridge not attached")
        return {"authenticatorId": self.authenticator_id}


class CdpBridge(_Plan):
    """Async bridge (Playwright async API, pyppeteer, raw CDP websockets)."""

    def __init__(self, auth: Authenticator, send: AsyncSend, **kw: Any) -> None:
        super().__init__(auth, **kw)
        self.send = send

    async def attach(self, rp_ids: Iterable[str] | None = None) -> str:
        """Enable virtual authenticators on the tab, add ours, import stored credentials."""
        await self.send("WebAuthn.enable", {"enableUI": self.enable_ui})
        reply = await self.send("WebAuthn.addVirtualAuthenticator", self._options())
        self.authenticator_id = reply["authenticatorId"]
        for params in self._imports(rp_ids):
            await self.send("WebAuthn.addCredential", {**self._id(), "credential": params})
        return self.authenticator_id

    async def add_credential(self, cred_id: bytes, rp_id: str) -> None:
        """Import one credential by id, e.g. a non-discoverable one (not in the store)."""
        await self.send("WebAuthn.addCredential",
                        {**self._id(), "credential": self._resolve(cred_id, rp_id)})

    async def credentials(self) -> list[dict[str, Any]]:
        return (await self.send("WebAuthn.getCredentials", self._id()))["credentials"]

    async def export(self) -> ExportResult:
        """Copy new credentials and counters from the browser back into our store."""
        return apply_export(self.auth, await self.credentials())

    async def set_user_verified(self, verified: bool) -> None:
        await self.send("WebAuthn.setUserVerified", {**self._id(), "isUserVerified": verified})

    async def set_presence(self, automatic: bool) -> None:
        await self.send("WebAuthn.setAutomaticPresenceSimulation",
                        {**self._id(), "enabled": automatic})

    async def detach(self, export: bool = True) -> ExportResult | None:
        """Export (by default) and remove the virtual authenticator."""
        if self.authenticator_id is None:
            return None
        result = await self.export() if export else None
        await self.send("WebAuthn.removeVirtualAuthenticator", self._id())
        self.authenticator_id = None
        return result


class SyncCdpBridge(_Plan):
    """Blocking bridge (Selenium's ``execute_cdp_cmd``, Playwright's sync API)."""

    def __init__(self, auth: Authenticator, send: SyncSend, **kw: Any) -> None:
        super().__init__(auth, **kw)
        self.send = send

    def attach(self, rp_ids: Iterable[str] | None = None) -> str:
        self.send("WebAuthn.enable", {"enableUI": self.enable_ui})
        self.authenticator_id = self.send("WebAuthn.addVirtualAuthenticator",
                                          self._options())["authenticatorId"]
        for params in self._imports(rp_ids):
            self.send("WebAuthn.addCredential", {**self._id(), "credential": params})
        return self.authenticator_id

    def add_credential(self, cred_id: bytes, rp_id: str) -> None:
        self.send("WebAuthn.addCredential",
                  {**self._id(), "credential": self._resolve(cred_id, rp_id)})

    def credentials(self) -> list[dict[str, Any]]:
        return self.send("WebAuthn.getCredentials", self._id())["credentials"]

    def export(self) -> ExportResult:
        return apply_export(self.auth, self.credentials())

    def set_user_verified(self, verified: bool) -> None:
        self.send("WebAuthn.setUserVerified", {**self._id(), "isUserVerified": verified})

    def set_presence(self, automatic: bool) -> None:
        self.send("WebAuthn.setAutomaticPresenceSimulation", {**self._id(), "enabled": automatic})

    def detach(self, export: bool = True) -> ExportResult | None:
        if self.authenticator_id is None:
            return None
        result = self.export() if export else None
        self.send("WebAuthn.removeVirtualAuthenticator", self._id())
        self.authenticator_id = None
        return result


# -- driver adapters --------------------------------------------------------------------


async def playwright_bridge(page: Any, auth: Authenticator, *,
                            rp_ids: Iterable[str] | None = None, **kw: Any) -> CdpBridge:
    """Attach to a Playwright async ``Page`` (Chromium only: CDP sessions)."""
    session = await page.context.new_cdp_session(page)
    bridge = CdpBridge(auth, session.send, **kw)
    await bridge.attach(rp_ids)
    return bridge


def playwright_sync_bridge(page: Any, auth: Authenticator, *,
                           rp_ids: Iterable[str] | None = None, **kw: Any) -> SyncCdpBridge:
    """Attach to a Playwright sync ``Page`` (e.g. pytest-playwright's ``page`` fixture)."""
    session = page.context.new_cdp_session(page)
    if inspect.iscoroutinefunction(session.send):
        raise TypeError("an async Playwright page: use `await playwright_bridge(page, auth)`")
    bridge = SyncCdpBridge(auth, session.send, **kw)
    bridge.attach(rp_ids)
    return bridge


def selenium_bridge(driver: Any, auth: Authenticator, *,
                    rp_ids: Iterable[str] | None = None, **kw: Any) -> SyncCdpBridge:
    """Attach to a Selenium Chromium/Chrome driver through ``execute_cdp_cmd``."""
    bridge = SyncCdpBridge(auth, driver.execute_cdp_cmd, **kw)
    bridge.attach(rp_ids)
    return bridge


__all__ = [
    "CdpBridge",
    "ExportResult",
    "SyncCdpBridge",
    "TRANSPORTS",
    "apply_export",
    "credential_params",
    "playwright_bridge",
    "playwright_sync_bridge",
    "selenium_bridge",
    "stored_records",
    "virtual_authenticator_options",
]
