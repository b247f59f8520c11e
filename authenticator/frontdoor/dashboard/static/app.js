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
  Object.assign(opts.headers, extra);
  const r = await fetch(path, opts);
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

const fmtTime = (t) => {
  if (!t) return "—";
  const d = new Date(t * 1000);
  return d.toLocaleString(undefined, { hour12: false });
};
const clock = (t) => {
  const d = new Date(t * 1000);
  return d.toTimeString().slice(0, 8) + "." + String(d.getMilliseconds()).padStart(3, "0");
};

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
    el("td", {}, fmtTime(c.lastUsed)),
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
  const body = { path: $("#export-path").value };
  if ($("#export-rp").value) body.rpId = $("#export-rp").value;
  act(() => api("/api/credentials/export", body), (r) => `Exported ${r.count} credential(s) to ${r.path}`);
});
$("#import-form").addEventListener("submit", (e) => {
  e.preventDefault();
  act(() => api("/api/credentials/import", { path: $("#import-path").value }),
    (r) => `Imported: ${r.added} added, ${r.counters} counters moved`);
});

// -- device -------------------------------------------------------------------------------
let state = null;
let resetDeadline = null;
function renderState(s) {
  state = s;
  $("#summary").textContent = `${s.profile} · ${s.transportsUp.join(", ") || "no transport"} · ` +
    `${s.discoverable} discoverable · presence: ${s.presence.web ? "web" : s.presence.source}`;
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
    ["Presence", `${s.presence.source}, timeout ${s.presence.timeout} s`],
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
  return el("tr", { dataset: { command: e.command, transport: e.transport, kind: e.kind } },
    el("td", { class: "mono" }, clock(e.time)),
    el("td", {}, e.transport),
    el("td", {}, e.command),
    el("td", {}, e.rp_id || "—"),
    el("td", { class: isOk(e.status) ? "status-ok" : "status-error" }, e.status),
    el("td", { class: "mono" }, e.duration_ms.toFixed(1)));
}
function matches(e) {
  const q = $("#log-filter").value.trim().toLowerCase();
  const s = $("#log-status").value;
  if (s === "ok" && !isOk(e.status)) return false;
  if (s === "error" && isOk(e.status)) return false;
  if (!q) return true;
  return [e.command, e.rp_id, e.transport, e.status].some((v) => v && v.toLowerCase().includes(q));
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
}

const initialTab = (location.hash || "").slice(1);
showTab(document.getElementById(`tab-${initialTab}`) ? initialTab : "credentials");
connect();
setInterval(refresh, 10000);
