"""The OpenAPI 3.1 document of ``fido-emu serve`` (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

AUTH = "/webauthn/authenticator/{authenticatorId}"
ID = {"name": "authenticatorId", "in": "path", "required": True, "schema": {"type": "string"}}
CID = {"name": "credentialId", "in": "path", "required": True, "schema": {"type": "string"}}
RID = {"name": "requestId", "in": "path", "required": True, "schema": {"type": "string"}}


def _op(summary: str, params: list | None = None, body: dict | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            "200": {"description": "{\"value\": …}", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Value"}}}},
            "400": {"description": "invalid argument / WebAuthn refusal", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "401": {"description": "token missing or wrong"},
        },
    }
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = required
    return out


B = {"type": "boolean"}
S = {"type": "string"}
CREDENTIAL = _obj({
    "credentialId": S, "isResidentCredential": B, "rpId": S, "privateKey": S, "userHandle": S,
    "signCount": {"type": "integer", "minimum": 0, "maximum": 4294967295}, "largeBlob": S,
    "backupEligibility": B, "backupState": B, "userName": S, "userDisplayName": S,
}, ["credentialId", "rpId", "privateKey"])
CEREMONY = _obj({"authenticatorId": S, "origin": S, "topOrigin": S, "pin": S,
                 "options": {"type": "object"}}, ["origin", "options"])


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "fido-emu serve", "version": "1",
                 "description": "W3C WebAuthn WebDriver-extension vocabulary plus WebAuthn L3 "
                                "JSON ceremonies. Every request needs the token."},
        "security": [{"header": []}, {"bearer": []}, {"query": []}],
        "paths": {
            "/openapi.json": {"get": {"summary": "this document", "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["openapi", "paths"]}}}},
                "401": {"description": "token missing or wrong"}}}},
            "/webauthn/authenticators": {"get": _op("list the authenticators")},
            "/webauthn/authenticator": {"post": _op("Add Virtual Authenticator", body=_obj({
                "protocol": {"enum": ["ctap1/u2f", "ctap2", "ctap2_1"]},
                "transport": {"enum": ["usb", "nfc", "ble", "smart-card", "hybrid", "internal"]},
                "hasResidentKey": B, "hasUserVerification": B, "isUserConsenting": B,
                "isUserVerified": B, "defaultBackupEligibility": B, "defaultBackupState": B,
                "extensions": {"type": "array", "items": S}, "fidoEmu:profile": S}))},
            AUTH: {"delete": _op("Remove Virtual Authenticator", [ID])},
            AUTH + "/credential": {"post": _op("Add Credential", [ID], CREDENTIAL)},
            AUTH + "/credentials": {"get": _op("Get Credentials", [ID]),
                                    "delete": _op("Remove All Credentials", [ID])},
            AUTH + "/credentials/{credentialId}": {"delete": _op("Remove Credential", [ID, CID])},
            AUTH + "/uv": {"post": _op("Set User Verified", [ID], _obj({"isUserVerified": B},
                                                                        ["isUserVerified"]))},
            AUTH + "/presence": {
                "get": _op("presence mode and pending requests", [ID]),
                "post": _op("set presence mode", [ID], _obj({"mode": {"enum": ["auto", "ask", "deny"]}},
                                                            ["mode"]))},
            AUTH + "/presence/{requestId}": {"post": _op("answer a pending request", [ID, RID], _obj(
                {"answer": {"enum": ["approve", "deny", "fail"]}}, ["answer"]))},
            AUTH + "/faults": {"get": _op("armed and known faults", [ID]),
                               "post": _op("arm a fault", [ID], _obj({"arm": S}, ["arm"])),
                               "delete": _op("clear all faults", [ID])},
            AUTH + "/power-cycle": {"post": _op("unplug and replug", [ID])},
            "/webauthn/create": {"post": _op("navigator.credentials.create() (L3 JSON)", body=CEREMONY)},
            "/webauthn/get": {"post": _op("navigator.credentials.get() (L3 JSON)", body=CEREMONY)},
        },
        "components": {
            "securitySchemes": {
                "header": {"type": "apiKey", "in": "header", "name": "X-Fido-Emu-Token"},
                "bearer": {"type": "http", "scheme": "bearer"},
                "query": {"type": "apiKey", "in": "query", "name": "token"},
            },
            "schemas": {
                "Value": _obj({"value": {}}, ["value"]),
                "Error": _obj({"value": _obj({"error": S, "message": S, "name": S},
                                             ["error", "message"])}, ["value"]),
            },
        },
    }
