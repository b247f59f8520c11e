// In the guest: headless firefox-esr, driven by puppeteer-core over WebDriver BiDi, uses the
// emulator as a USB (UHID) security key against the demo RP (tools/rp-demo/server.py, already
// running on BASE). One Firefox for all configurations; for each configuration this script
// starts `fido-emu run --transport uhid` with that configuration's options, waits for its
// /dev/hidraw node, runs the ceremonies and stops the emulator. Prints one
// "CHECK ok|FAIL|INFO <config> <step> state=... <seconds> <RP verdict>" line per ceremony.
//
// argv: CONFIG...   each CONFIG is  NAME:EMU_ARGS:STEPS
//   EMU_ARGS  space-separated `fido-emu run` options (e.g. "--set builtin_uv=true")
//   STEPS     comma-separated, from STEPS below; a step with a trailing "?" is only reported
//             (its failure does not fail the script)
// env: FIDO_EMU_PYTHON (python with the project), FIDO_EMU_NODE_DIR (where puppeteer-core is
//      installed, default .vm/node), FIREFOX (default /usr/bin/firefox-esr),
//      BASE (default http://localhost:8080), CEREMONY_LIMIT (s, default 90),
//      INFO_LIMIT (s, limit of a "?" step, default 45)
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const nodeDir = process.env.FIDO_EMU_NODE_DIR || ".vm/node";
const require = createRequire(path.resolve(nodeDir, "package.json"));
const puppeteer = require("puppeteer-core");

const PY = process.env.FIDO_EMU_PYTHON || ".venv/bin/python";
const BASE = process.env.BASE || "http://localhost:8080";
const LIMIT = Number(process.env.CEREMONY_LIMIT || 90);
const INFO_LIMIT = Number(process.env.INFO_LIMIT || 45);
const STEPS = {
  "register-rk": ["/register", "demo.register('alice')"],
  "register-rk-carol": ["/register", "demo.register('carol')"],
  "register-nonrk": ["/register?residentKey=discouraged&userVerification=discouraged", "demo.register('bob')"],
  "signin": ["/signin", "demo.signIn('')"],
  "reauth": ["/reauth", "demo.signIn('alice')"],
  "reauth-bob": ["/reauth", "demo.signIn('bob')"],
};
const PREFS = {
  // USB HID tokens through authenticator-rs (the defaults; set for clarity), no soft token
  "security.webauth.webauthn": true,
  "security.webauth.webauthn_enable_usbtoken": true,
  "security.webauth.webauthn_enable_softtoken": false,
  "security.webauthn.ctap2": true,
  "browser.shell.checkDefaultBrowser": false,
  "datareporting.policy.dataSubmissionEnabled": false,
  "toolkit.telemetry.reportingpolicy.firstRun": false,
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const secs = (t) => ((Date.now() - t) / 1000).toFixed(1);
const hidraws = () => fs.readdirSync("/dev").filter((n) => n.startsWith("hidraw"));

async function startEmulator(name, args) {
  const log = fs.openSync(`/tmp/emu-${name}.log`, "w");
  const emu = spawn(PY, ["-m", "authenticator.frontdoor.cli", "run", "--transport", "uhid", "--presence", "auto",
    "--store", `/tmp/ff-${name}.db`, ...args], { stdio: ["ignore", log, log] });
  const exited = new Promise((r) => emu.on("exit", r));
  for (let i = 0; i < 480 && hidraws().length === 0 && emu.exitCode === null; i++) await sleep(250);
  if (hidraws().length === 0) throw new Error(`emulator ${name}: no /dev/hidraw* (see /tmp/emu-${name}.log)`);
  return { emu, exited };
}

async function stopEmulator(name, { emu, exited }) {
  emu.kill("SIGTERM");
  await Promise.race([exited, sleep(30_000)]);
  for (let i = 0; i < 120 && hidraws().length; i++) await sleep(250);  // device gone
  const lines = fs.readFileSync(`/tmp/emu-${name}.log`, "utf8").split("\n")
    .filter((l) => /makeCredential|getAssertion|clientPIN|selection|reset|ERROR|Traceback/.test(l));
  for (const l of lines.slice(-20)) console.log(`EMU ${name}: ${l}`);
}

async function ceremony(page, urlPath, js, limit) {
  await page.goto(BASE + urlPath, { waitUntil: "load" });  // leaving the page cancels a stalled one
  // fire and forget: a stalled ceremony must not block evaluate() itself
  await page.evaluate(`demo.run(() => ${js}); undefined`);
  try {
    await page.waitForSelector("#result[data-state]", { timeout: limit * 1000 });
  } catch {
    return ["timeout", `no answer within ${limit} s (Firefox waits for a prompt headless cannot answer?)`];
  }
  return page.$eval("#result", (e) => [e.dataset.state, e.textContent.replace(/\s+/g, " ").slice(0, 300)]);
}

async function main() {
  const configs = process.argv.slice(2).map((spec) => {
    const [name, emuArgs, steps] = spec.split(":");
    return { name, emuArgs: emuArgs.split(" ").filter(Boolean), steps: steps.split(",").filter(Boolean) };
  });
  let failed = false;
  let t = Date.now();
  const browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: process.env.FIREFOX || "/usr/bin/firefox-esr",
    headless: true,
    protocol: "webDriverBiDi",
    extraPrefsFirefox: PREFS,
    protocolTimeout: 300_000,
    timeout: 300_000,
    dumpio: !!process.env.FIREFOX_DUMPIO,
  });
  const page = await browser.newPage();
  console.log(`CHECK INFO firefox ${await browser.version()} (WebDriver BiDi) started in ${secs(t)} s`);
  for (const { name, emuArgs, steps } of configs) {
    const emu = await startEmulator(name, emuArgs);
    for (const raw of steps) {
      const info = raw.endsWith("?");
      const step = raw.replace(/\?$/, "");
      const [urlPath, js] = STEPS[step];
      t = Date.now();
      let state, text;
      try {
        [state, text] = await ceremony(page, urlPath, js, info ? INFO_LIMIT : LIMIT);
      } catch (e) {
        [state, text] = ["driver-error", String(e)];
      }
      const ok = state === "ok";
      failed ||= !info && !ok;
      const tag = ok ? "ok" : info ? "INFO" : "FAIL";
      console.log(`CHECK ${tag} ${name} ${step} state=${state} ${secs(t)}s ${JSON.stringify(text).slice(0, 220)}`);
    }
    await stopEmulator(name, emu);
  }
  await browser.close();
  return failed ? 1 : 0;
}

main().then((rc) => process.exit(rc), (e) => { console.log(`CHECK FAIL driver ${e.stack || e}`); process.exit(2); });
