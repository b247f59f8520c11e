// fido-emulator page bridge: navigator.credentials.create/get and the PublicKeyCredential
// statics, answered by our authenticator instead of the browser's WebAuthn stack.
// Installed before any page script, in every frame, by authenticator/rp_testing/page_bridge.py,
// which calls this function with a channel: send(request) -> Promise of a reply
// ({ok: value} | {error: {name, message}} | {pending: id}), and the name of a hidden global
// through which Python delivers the reply of a pending call (conditional mediation, BiDi).
(function fidoEmuPageBridge(send, deliverName, config) {
  "use strict";
  if (globalThis.__fidoEmuPageBridgeInstalled) return;
  Object.defineProperty(globalThis, "__fidoEmuPageBridgeInstalled", { value: true });
  const nav = globalThis.navigator;
  if (!nav || !globalThis.isSecureContext) return; // no WebAuthn outside secure contexts

  // Captured before any page script can replace them.
  const DOMExc = globalThis.DOMException;
  const Native = globalThis.PublicKeyCredential;
  const userActivation = nav.userActivation;
  const defineProperty = Object.defineProperty;
  const setTimeout_ = globalThis.setTimeout.bind(globalThis);
  const clearTimeout_ = globalThis.clearTimeout.bind(globalThis);

  const pending = new Map(); // call id -> {resolve, reject}
  defineProperty(globalThis, deliverName, {
    value: (id, reply) => {
      const p = pending.get(id);
      if (!p) return false;
      settle(reply, p.resolve, p.reject);
      return true;
    },
    enumerable: false,
  });

  // -- bytes ---------------------------------------------------------------------------------
  function isBufferSource(v) {
    return v instanceof ArrayBuffer || ArrayBuffer.isView(v);
  }
  function bytesOf(v, field) {
    if (v instanceof ArrayBuffer) return new Uint8Array(v);
    if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    throw new TypeError(`${field} is not a BufferSource`);
  }
  function b64url(v, field) {
    const u8 = bytesOf(v, field);
    let s = "";
    for (let i = 0; i < u8.length; i += 0x8000) {
      s += String.fromCharCode.apply(null, u8.subarray(i, i + 0x8000));
    }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function unb64url(text, field) {
    if (typeof text !== "string" || !/^[A-Za-z0-9_-]*={0,2}$/.test(text)) {
      throw new TypeError(`${field} is not base64url`);
    }
    const s = text.replace(/=+$/, "").replace(/-/g, "+").replace(/_/g, "/");
    let bin;
    try {
      bin = atob(s + "===".slice((s.length + 3) % 4));
    } catch (e) {
      throw new TypeError(`${field} is not base64url`);
    }
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }

  // -- options: WebIDL-ish checks (TypeError naming the field), then to L3 JSON ----------------
  function need(obj, key, where) {
    if (obj[key] === undefined) throw new TypeError(`${where}.${key} is required`);
    return obj[key];
  }
  function descriptorsJSON(list, where) {
    if (list === undefined) return undefined;
    if (!Array.isArray(list)) throw new TypeError(`${where} must be a sequence`);
    return list.map((d, i) => {
      const f = `${where}[${i}]`;
      const out = { type: String(need(d, "type", f)), id: b64url(need(d, "id", f), `${f}.id`) };
      if (d.transports !== undefined) out.transports = Array.from(d.transports, String);
      return out;
    });
  }
  function extensionsJSON(ext) {
    if (ext === undefined) return undefined;
    const walk = (v) => {
      if (isBufferSource(v)) return b64url(v, "extension input");
      if (Array.isArray(v)) return v.map(walk);
      if (v && typeof v === "object") {
        const o = {};
        for (const k of Object.keys(v)) o[k] = walk(v[k]);
        return o;
      }
      return v;
    };
    return walk(ext);
  }
  function creationJSON(pk) {
    const w = "publicKey";
    const rp = need(pk, "rp", w);
    const user = need(pk, "user", w);
    const params = need(pk, "pubKeyCredParams", w);
    if (!Array.isArray(params)) throw new TypeError(`${w}.pubKeyCredParams must be a sequence`);
    const out = {
      rp: { name: String(need(rp, "name", `${w}.rp`)) },
      user: {
        id: b64url(need(user, "id", `${w}.user`), `${w}.user.id`),
        name: String(need(user, "name", `${w}.user`)),
        displayName: String(need(user, "displayName", `${w}.user`)),
      },
      challenge: b64url(need(pk, "challenge", w), `${w}.challenge`),
      pubKeyCredParams: params.map((p, i) => ({
        type: String(need(p, "type", `${w}.pubKeyCredParams[${i}]`)),
        alg: Number(need(p, "alg", `${w}.pubKeyCredParams[${i}]`)),
      })),
    };
    if (rp.id !== undefined) out.rp.id = String(rp.id);
    if (pk.timeout !== undefined) out.timeout = Number(pk.timeout);
    const exclude = descriptorsJSON(pk.excludeCredentials, `${w}.excludeCredentials`);
    if (exclude) out.excludeCredentials = exclude;
    if (pk.authenticatorSelection !== undefined) out.authenticatorSelection = { ...pk.authenticatorSelection };
    if (pk.hints !== undefined) out.hints = Array.from(pk.hints, String);
    if (pk.attestation !== undefined) out.attestation = String(pk.attestation);
    if (pk.attestationFormats !== undefined) out.attestationFormats = Array.from(pk.attestationFormats, String);
    const ext = extensionsJSON(pk.extensions);
    if (ext) out.extensions = ext;
    return out;
  }
  function requestJSON(pk) {
    const w = "publicKey";
    const out = { challenge: b64url(need(pk, "challenge", w), `${w}.challenge`) };
    if (pk.timeout !== undefined) out.timeout = Number(pk.timeout);
    if (pk.rpId !== undefined) out.rpId = String(pk.rpId);
    const allow = descriptorsJSON(pk.allowCredentials, `${w}.allowCredentials`);
    if (allow) out.allowCredentials = allow;
    if (pk.userVerification !== undefined) out.userVerification = String(pk.userVerification);
    if (pk.hints !== undefined) out.hints = Array.from(pk.hints, String);
    const ext = extensionsJSON(pk.extensions);
    if (ext) out.extensions = ext;
    return out;
  }

  // -- replies -------------------------------------------------------------------------------
  function domError(err) {
    const name = (err && err.name) || "NotAllowedError";
    const message = (err && err.message) || name;
    if (name === "TypeError") return new TypeError(message);
    return new DOMExc(message, name);
  }
  function settle(reply, resolve, reject) {
    if (reply && reply.error) reject(domError(reply.error));
    else if (reply && "ok" in reply) resolve(reply.ok);
    else reject(new DOMExc("fido-emu bridge: malformed reply", "UnknownError"));
  }
  let nextId = 1;
  function call(request, signal, timeoutMs) {
    return new Promise((resolve, reject) => {
      const id = `${nextId++}`;
      let timer = null;
      const finish = (fn) => (v) => {
        if (!pending.has(id)) return;
        pending.delete(id);
        if (timer !== null) clearTimeout_(timer);
        if (signal) signal.removeEventListener("abort", onAbort);
        fn(v);
      };
      const entry = { resolve: finish(resolve), reject: finish(reject) };
      pending.set(id, entry);
      const cancel = (why) => {
        send({ op: "cancel", id, reason: why }).catch(() => {});
      };
      const onAbort = () => {
        if (!pending.has(id)) return;
        entry.reject(signal.reason !== undefined ? signal.reason : new DOMExc("signal is aborted", "AbortError"));
        cancel("abort");
      };
      if (signal) signal.addEventListener("abort", onAbort);
      if (timeoutMs !== null) {
        timer = setTimeout_(() => {
          if (!pending.has(id)) return;
          entry.reject(new DOMExc("The operation either timed out or was not allowed.", "NotAllowedError"));
          cancel("timeout");
        }, timeoutMs);
      }
      send({ ...request, id }).then(
        (reply) => {
          if (reply && reply.pending !== undefined) return; // delivered later through deliverName
          settle(reply, entry.resolve, entry.reject);
        },
        (e) => entry.reject(new DOMExc(`fido-emu bridge: ${e && e.message ? e.message : e}`, "UnknownError")),
      );
    });
  }
  function clampTimeout(t) {
    // Chromium's range: 10 s .. 10 min, 5 min when the RP gives none.
    if (config.noTimeout) return null;
    const ms = t === undefined || Number.isNaN(Number(t)) ? 300000 : Number(t);
    return Math.min(Math.max(ms, config.minTimeoutMs), 600000);
  }

  // -- returned objects ------------------------------------------------------------------------
  const protoOf = (name) => (globalThis[name] && globalThis[name].prototype) || Object.prototype;
  function ro(obj, props) {
    for (const [k, v] of Object.entries(props)) defineProperty(obj, k, { value: v, enumerable: true });
  }
  function publicKeyCredential(json, kind) {
    const r = json.response;
    let response;
    if (kind === "create") {
      response = Object.create(protoOf("AuthenticatorAttestationResponse"));
      const authData = unb64url(r.authenticatorData, "authenticatorData");
      const pub = r.publicKey !== undefined ? unb64url(r.publicKey, "publicKey") : null;
      const transports = Array.from(r.transports || []);
      ro(response, {
        clientDataJSON: unb64url(r.clientDataJSON, "clientDataJSON"),
        attestationObject: unb64url(r.attestationObject, "attestationObject"),
        getTransports: () => transports.slice(),
        getAuthenticatorData: () => authData.slice(0),
        getPublicKey: () => (pub ? pub.slice(0) : null),
        getPublicKeyAlgorithm: () => r.publicKeyAlgorithm,
        toJSON: () => ({ ...r, transports: transports.slice() }),
      });
    } else {
      response = Object.create(protoOf("AuthenticatorAssertionResponse"));
      ro(response, {
        clientDataJSON: unb64url(r.clientDataJSON, "clientDataJSON"),
        authenticatorData: unb64url(r.authenticatorData, "authenticatorData"),
        signature: unb64url(r.signature, "signature"),
        userHandle: r.userHandle ? unb64url(r.userHandle, "userHandle") : null,
        toJSON: () => ({ ...r }),
      });
    }
    const cred = Object.create(Native ? Native.prototype : BridgePublicKeyCredential.prototype);
    const ext = json.clientExtensionResults || {};
    ro(cred, {
      id: json.id,
      rawId: unb64url(json.rawId, "rawId"),
      type: "public-key",
      response,
      authenticatorAttachment: json.authenticatorAttachment || null,
      getClientExtensionResults: () => structuredClone(ext),
      toJSON: () => ({
        id: json.id,
        rawId: json.rawId,
        type: "public-key",
        response: response.toJSON(),
        authenticatorAttachment: json.authenticatorAttachment || null,
        clientExtensionResults: structuredClone(ext),
      }),
    });
    return cred;
  }

  // -- navigator.credentials -------------------------------------------------------------------
  function activation() {
    return userActivation ? userActivation.isActive : null;
  }
  async function create(options) {
    if (!options || typeof options !== "object" || options.publicKey === undefined) {
      throw new DOMExc("Only 'publicKey' credentials are supported by the fido-emu bridge.", "NotSupportedError");
    }
    const signal = options.signal;
    if (signal && signal.aborted) throw signal.reason;
    const json = creationJSON(options.publicKey);
    const request = { op: "create", options: json, mediation: options.mediation || "optional", activation: activation() };
    const out = await call(request, signal, clampTimeout(json.timeout));
    return publicKeyCredential(out, "create");
  }
  async function get(options) {
    if (!options || typeof options !== "object" || options.publicKey === undefined) {
      throw new DOMExc("Only 'publicKey' credentials are supported by the fido-emu bridge.", "NotSupportedError");
    }
    const signal = options.signal;
    if (signal && signal.aborted) throw signal.reason;
    const json = requestJSON(options.publicKey);
    const mediation = options.mediation || "optional";
    const request = { op: "get", options: json, mediation, activation: activation() };
    // a conditional request waits for the user (the test) with no timeout, as browsers do
    const timeout = mediation === "conditional" ? null : clampTimeout(json.timeout);
    const out = await call(request, signal, timeout);
    return publicKeyCredential(out, "get");
  }
  const credentials = nav.credentials;
  if (credentials) {
    defineProperty(credentials, "create", { value: create, writable: true, configurable: true });
    defineProperty(credentials, "get", { value: get, writable: true, configurable: true });
  }

  // -- PublicKeyCredential statics -------------------------------------------------------------
  function BridgePublicKeyCredential() {
    throw new TypeError("Illegal constructor");
  }
  const PKC = Native || BridgePublicKeyCredential;
  if (!Native) defineProperty(globalThis, "PublicKeyCredential", { value: PKC, writable: true, configurable: true });
  const statics = {
    isUserVerifyingPlatformAuthenticatorAvailable: async () => config.uvpaa,
    isConditionalMediationAvailable: async () => true,
    getClientCapabilities: async () => ({ ...config.capabilities }),
    parseCreationOptionsFromJSON: (json) => {
      if (!json || typeof json !== "object") throw new TypeError("options is not an object");
      const o = structuredClone(json);
      o.challenge = unb64url(need(json, "challenge", "options"), "options.challenge");
      o.user = { ...need(json, "user", "options"), id: unb64url(need(json.user, "id", "options.user"), "options.user.id") };
      if (json.excludeCredentials) {
        o.excludeCredentials = json.excludeCredentials.map((d, i) => ({ ...d, id: unb64url(d.id, `options.excludeCredentials[${i}].id`) }));
      }
      return o;
    },
    parseRequestOptionsFromJSON: (json) => {
      if (!json || typeof json !== "object") throw new TypeError("options is not an object");
      const o = structuredClone(json);
      o.challenge = unb64url(need(json, "challenge", "options"), "options.challenge");
      if (json.allowCredentials) {
        o.allowCredentials = json.allowCredentials.map((d, i) => ({ ...d, id: unb64url(d.id, `options.allowCredentials[${i}].id`) }));
      }
      return o;
    },
    signalUnknownCredential: (opts) => signal("unknownCredential", opts),
    signalAllAcceptedCredentials: (opts) => signal("allAcceptedCredentials", opts),
    signalCurrentUserDetails: (opts) => signal("currentUserDetails", opts),
  };
  async function signal(kind, opts) {
    if (!opts || typeof opts !== "object") throw new TypeError("options is not an object");
    const out = await call({ op: "signal", kind, options: structuredClone(opts) }, null, null);
    return out === null ? undefined : out;
  }
  for (const [name, fn] of Object.entries(statics)) {
    defineProperty(PKC, name, { value: fn, writable: true, configurable: true });
  }
})
