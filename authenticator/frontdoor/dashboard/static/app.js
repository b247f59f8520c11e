// fido-emu dashboard. Plain DOM, no framework, no build step. Every value that came from a
// client (rpId, user name) is inserted with textContent, never as HTML.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function api(path, body, extra = {}) {
  const opts = { credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    opts.method = "POST";
    opts.headers["X-Fido-Emu-Csrf"] = "1";
    if (body instanceof Blob) {
      opts.headers["Content-Type"] = body.type || "application/octet-stream";
      opts.body = body;
    } else {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
  }
  const { raw, ...headers } = extra;
  Object.assign(opts.headers, headers);
  const r = await fetch(path, opts);
  if (raw) return r;
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `${r.status} ${r.statusText}`);
  return data;
}

let toastTimer;
function toast(message, isError = false) {
  const t = $("#toast");
  t.textContent = message;
  t.className = isError ? "error" : "";
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, isError ? 8000 : 3000);
}

async function act(fn, okMessage) {
  try {
    const result = await fn();
    if (okMessage) toast(typeof okMessage === "function" ? okMessage(result) : okMessage);
    return result;
  } catch (e) {
    toast(e.message, true);
    return null;
  } finally {
    refreshSoon();
  }
}

// ISO 8601 in local time with the zone offset, e.g. 2026-12-03T09:14:07+01:00
const pad = (n, w = 2) => String(Math.trunc(Math.abs(n))).padStart(w, "0");
function iso(t, ms = false) {
  const d = new Date(t * 1000);
  const off = -d.getTimezoneOffset();
  const zone = off === 0 ? "Z" : `${off > 0 ? "+" : "-"}${pad(off / 60)}:${pad(off % 60)}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:` +
    `${pad(d.getMinutes())}:${pad(d.getSeconds())}${ms ? "." + pad(d.getMilliseconds(), 3) : ""}${zone}`;
}
const fmtTime = (t) => (t ? iso(t) : "—");
const clock = (t) => iso(t, true);

// -- tabs ---------------------------------------------------------------------------------
function showTab(name) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== `tab-${name}`;
  history.replaceState(null, "", `#${name}`);
}
for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));

// -- presence -----------------------------------------------------------------------------
let pending = [];
function renderPresence(list) {
  const now = Date.now() / 1000;
  // count down from what the server said, on the local clock (clocks may differ)
  pending = list.map((p) => ({ ...p, localDeadline: now + (p.deadline - p.created) }));
  const box = $("#presence");
  box.replaceChildren(...pending.map((p) => {
    const answer = (a) => act(() => api("/api/presence", { id: p.id, answer: a }),
      a === "approve" ? "Approved" : "Declined");
    const uv = p.kind === "uv";
    return el("div", { class: "presence-card", dataset: { id: p.id } },
      el("div", { class: "who" },
        el("strong", {}, uv ? "User verification requested" : "Touch requested"), el("br"),
        el("span", {}, `${p.command} for `), el("code", { class: "rp-id" }, p.rpId || "the authenticator"),
        p.user ? [el("span", {}, " as "), el("code", { class: "user" }, p.user)] : null,
        el("span", { class: "muted" }, ` via ${p.transport}`)),
      el("progress", { max: String(p.deadline - p.created), value: "0" }),
      el("span", { class: "count" }, ""),
      el("button", { type: "button", class: "primary", dataset: { answer: "approve" }, onclick: () => answer("approve") }, "Approve"),
      uv ? el("button", { type: "button", dataset: { answer: "fail" }, onclick: () => answer("fail") }, "No match") : null,
      el("button", { type: "button", class: "deny", dataset: { answer: "deny" }, onclick: () => answer("deny") }, "Deny"));
  }));
  tickPresence();
}
function tickPresence() {
  const now = Date.now() / 1000;
  for (const p of pending) {
    const card = document.querySelector(`.presence-card[data-id="${p.id}"]`);
    if (!card) continue;
    const left = Math.max(0, p.localDeadline - now);
    $(".count", card).textContent = `${left.toFixed(0)} s`;
    $("progress", card).value = left;
  }
}
setInterval(tickPresence, 250);

// -- credentials --------------------------------------------------------------------------
function renderCredentials(rps) {
  const box = $("#rps");
  if (!rps.length) {
    box.replaceChildren(el("p", { class: "muted" }, "No stored credentials."));
    return;
  }
  box.replaceChildren(...rps.map((rp) => el("div", { class: "rp", dataset: { rpId: rp.rpId } },
    el("h3", {}, rp.rpId, rp.rpName && rp.rpName !== rp.rpId ? el("span", { class: "muted" }, ` — ${rp.rpName}`) : null),
    el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, ["User", "Credential ID", "Alg", "Created", "Last used", "Counter",
        "Discoverable", "credProtect", "BE / BS", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, rp.credentials.map(credentialRow))))));
}

function credentialRow(c) {
  const rename = () => {
    const name = prompt("User name (empty removes it)", c.userName || "");
    if (name === null) return;
    const displayName = prompt("Display name (empty removes it)", c.displayName || "");
    if (displayName === null) return;
    act(() => api("/api/credentials/update", { credentialId: c.credentialId, name, displayName }), "Renamed");
  };
  const remove = () => {
    if (!confirm(`Delete the credential of ${c.userName || "this user"} at ${c.rpId}? This cannot be undone.`)) return;
    act(() => api("/api/credentials/delete", { credentialId: c.credentialId }), "Deleted");
  };
  return el("tr", { dataset: { credentialId: c.credentialId } },
    el("td", {}, el("div", { class: "user-name" }, c.userName || "—"),
      c.displayName ? el("div", { class: "muted" }, c.displayName) : null),
    el("td", { class: "mono", title: c.credentialId }, c.credentialId.slice(0, 16) + "…"),
    el("td", {}, c.algorithm),
    el("td", {}, fmtTime(c.created)),
    el("td", { class: "last-used" }, fmtTime(c.lastUsed)),
    el("td", { class: "counter" }, String(c.counter)),
    el("td", {}, c.discoverable ? "yes" : "no"),
    el("td", {}, String(c.credProtect)),
    el("td", {}, `${c.backupEligible ? 1 : 0} / ${c.backupState ? 1 : 0}`),
    el("td", {},
      c.discoverable ? el("button", { type: "button", class: "rename", onclick: rename }, "Rename") : null, " ",
      el("button", { type: "button", class: "danger delete", onclick: remove }, "Delete")));
}

$("#export-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const body = {};
  if ($("#export-rp").value) body.rpId = $("#export-rp").value;
  act(async () => {
    const r = await api("/api/credentials/export", body, { raw: true });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || `${r.status}`);
    const blob = await r.blob();
    const a = el("a", { href: URL.createObjectURL(blob), download: "fido-emu-credentials.json" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }, "Downloaded (it holds private keys: keep it secret)");
});
$("#import-file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (!file) return;
  act(() => api("/api/credentials/import", new Blob([file], { type: "application/json" })),
    (r) => `Imported: ${r.added} added, ${r.counters} counters moved`);
  e.target.value = "";
});

// -- device -------------------------------------------------------------------------------
let state = null;
let resetDeadline = null;
function renderState(s) {
  state = s;
  $("#summary").textContent = `${s.profile} · ${s.transportsUp.join(", ") || "no transport"} · ` +
    `${s.discoverable} discoverable`;
  if (s.presence.mode) $("#presence-mode").value = s.presence.mode;
  const pin = !s.pin.supported ? "not supported" : s.pin.set
    ? `set · ${s.pin.retries} of ${s.pin.maxRetries} retries left` : "not set";
  const rows = [
    ["Profile", s.profile],
    ["AAGUID", s.aaguid],
    ["Transports up", s.transportsUp.join(", ") || "—"],
    ["Advertised transports", s.transports.join(", ")],
    ["Counters", s.counterMode],
    ["Attestation", s.attestation],
    ["Built-in UV", s.builtinUv ? `yes (${s.uvRetries} retries left)` : "no"],
    ["PIN", pin],
    ["Minimum PIN length", String(s.pin.minLength) + (s.pin.forceChange ? " (change required)" : "")],
    ["Discoverable credentials", `${s.discoverable} of ${s.maxDiscoverable}`],
    ["Presence", `${s.presence.mode || "—"} (ask: ${s.presence.source}), timeout ${s.presence.timeout} s`],
    ["Active faults", s.faults.active.join(", ") || "none"],
  ];
  $("#device").replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", { class: "mono" }, v))));
  $("#pin-current").hidden = !s.pin.set;
  $("#pin-current").required = s.pin.set;
  $("#pin-submit").textContent = s.pin.set ? "Change PIN" : "Set PIN";
  resetDeadline = s.reset.remaining === null ? null : Date.now() / 1000 + s.reset.remaining;
  tickReset();
  renderFaults(s.faults);
  renderHybrid(s.hybrid);
}

function tickReset() {
  const span = $("#reset-window");
  if (!state) return;
  if (resetDeadline === null) { span.textContent = "reset allowed any time"; return; }
  const left = resetDeadline - Date.now() / 1000;
  span.textContent = left > 0 ? `reset window open: ${left.toFixed(0)} s left`
    : `reset only within ${state.reset.window} s of power-up: power cycle first`;
}
setInterval(tickReset, 500);

function renderFaults(f) {
  const flags = Object.keys(f.known).filter((k) => !k.includes("="));
  $("#faults").replaceChildren(...flags.map((name) => {
    const box = el("input", { type: "checkbox", id: `fault-${name}`, checked: f.active.includes(name) });
    box.addEventListener("change", () => act(() => api("/api/faults", box.checked ? { arm: name } : { disarm: name }),
      (r) => `Faults: ${r.active.join(", ") || "none"}`));
    return el("label", { class: "fault", title: f.known[name] }, box, name);
  }), ...f.active.filter((a) => a.includes("=")).map((a) => el("span", { class: "fault" }, el("code", {}, a),
    el("button", { type: "button", onclick: () => act(() => api("/api/faults", { disarm: a }), "Disarmed") }, "×"))));
}

$("#pin-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const cur = $("#pin-current"), neu = $("#pin-new"), rep = $("#pin-repeat");
  if (neu.value !== rep.value) { toast("The new PINs do not match", true); return; }
  const body = state && state.pin.set
    ? { action: "change", currentPin: cur.value, newPin: neu.value } : { action: "set", newPin: neu.value };
  for (const i of [cur, neu, rep]) i.value = "";  // the page keeps no PIN
  act(() => api("/api/pin", body), body.action === "set" ? "PIN set" : "PIN changed");
});
$("#power-cycle").addEventListener("click", () => act(() => api("/api/power-cycle", {}), "Power cycled"));
$("#reset").addEventListener("click", () => {
  if (!confirm("Factory reset deletes every credential and the PIN. Continue? (approve the touch request that follows)")) return;
  act(() => api("/api/reset", { confirm: "RESET" }), "Authenticator reset");
});
$("#fault-form").addEventListener("submit", (e) => {
  e.preventDefault();
  act(() => api("/api/faults", { arm: $("#fault-spec").value }), (r) => `Faults: ${r.active.join(", ") || "none"}`);
});
$("#faults-clear").addEventListener("click", () => act(() => api("/api/faults", { clear: true }), "Faults cleared"));

// -- live log -----------------------------------------------------------------------------
const logRows = [];
function isOk(status) { return status === "OK" || status === "SW 9000"; }
function logRow(e) {
  const d = e.details || {};
  const id = d.credential_id || "";
  return el("tr", { dataset: { command: e.command, transport: e.transport, kind: e.kind } },
    el("td", { class: "mono" }, clock(e.time)),
    el("td", {}, e.transport),
    el("td", {}, e.command),
    el("td", {}, e.rp_id || "—"),
    el("td", { class: "user" }, d.user || "—"),
    el("td", { class: "mono credential", title: id }, id ? id.slice(0, 8) + "…" : "—"),
    el("td", { class: "mono flags" }, d.flags || "—"),
    el("td", { class: "mono counter" }, d.counter === undefined ? "—" : String(d.counter)),
    el("td", { class: isOk(e.status) ? "status-ok" : "status-error" }, e.status),
    el("td", { class: "mono" }, e.duration_ms.toFixed(1)));
}
function matches(e) {
  const q = $("#log-filter").value.trim().toLowerCase();
  const s = $("#log-status").value;
  if (s === "ok" && !isOk(e.status)) return false;
  if (s === "error" && isOk(e.status)) return false;
  if (!q) return true;
  const d = e.details || {};
  return [e.command, e.rp_id, e.transport, e.status, d.user, d.credential_id]
    .some((v) => v && v.toLowerCase().includes(q));
}
function addLog(e) {
  logRows.push(e);
  if (logRows.length > 1000) logRows.shift();
  if (matches(e)) $("#log tbody").prepend(logRow(e));
}
function renderLog() {
  $("#log tbody").replaceChildren(...logRows.filter(matches).reverse().map(logRow));
}
$("#log-filter").addEventListener("input", renderLog);
$("#log-status").addEventListener("change", renderLog);
$("#log-clear").addEventListener("click", () => { logRows.length = 0; renderLog(); });

// -- hybrid -------------------------------------------------------------------------------
function renderHybrid(h) {
  let text = h.state;
  if (h.advert) text += ` · BLE advert ${h.advert}`;
  if (h.error) text += ` · ${h.error}`;
  $("#hybrid-status").textContent = text;
}
$("#hybrid-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const body = { qr: $("#hybrid-qr").value.trim() };
  if ($("#hybrid-tunnel").value) body.tunnelUrl = $("#hybrid-tunnel").value.trim();
  act(() => api("/api/hybrid", body), "Hybrid session started");
});
$("#hybrid-image").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (!file) return;
  const tunnel = $("#hybrid-tunnel").value.trim();
  const q = tunnel ? `?tunnelUrl=${encodeURIComponent(tunnel)}` : "";
  act(() => api(`/api/hybrid/image${q}`, file), "Hybrid session started");
  e.target.value = "";
});

$("#qr-form").addEventListener("submit", (e) => {
  e.preventDefault();
  act(async () => {
    const r = await api("/api/hybrid/qr", { text: $("#qr-text").value.trim() }, { raw: true });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || `${r.status}`);
    const img = $("#qr-image");
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(await r.blob());
    img.hidden = false;
  });
});
$("#presence-mode").addEventListener("change", (e) =>
  act(() => api("/api/presence/mode", { mode: e.target.value }), (r) => `Presence: ${r.mode}`));

// -- data flow ----------------------------------------------------------------------------
async function refresh() {
  try {
    const [s, creds] = await Promise.all([api("/api/state"), api("/api/credentials")]);
    renderState(s);
    renderCredentials(creds);
  } catch (e) {
    toast(e.message, true);
  }
}
let refreshTimer = null;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 150);
}

function connect() {
  const es = new EventSource("/api/events");
  const conn = $("#conn");
  es.addEventListener("open", () => { conn.textContent = "live"; conn.className = "badge live"; });
  es.addEventListener("error", () => { conn.textContent = "reconnecting…"; conn.className = "badge down"; });
  es.addEventListener("hello", (m) => {
    const d = JSON.parse(m.data);
    logRows.length = 0;
    for (const e of d.log) logRows.push(e);
    renderLog();
    renderPresence(d.presence);
    refresh();
  });
  es.addEventListener("log", (m) => { addLog(JSON.parse(m.data)); refreshSoon(); });
  es.addEventListener("presence", (m) => renderPresence(JSON.parse(m.data)));
  es.addEventListener("changed", refreshSoon);
  es.addEventListener("hybrid", (m) => renderHybrid(JSON.parse(m.data)));
  es.addEventListener("presenceMode", (m) => { $("#presence-mode").value = JSON.parse(m.data); });
}

const initialTab = (location.hash || "").slice(1);
showTab(document.getElementById(`tab-${initialTab}`) ? initialTab : "credentials");
connect();
setInterval(refresh, 10000);
