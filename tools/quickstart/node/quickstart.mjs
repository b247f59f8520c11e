// Quickstart: a SimpleWebAuthn server (its defaults untouched) registers and signs in a
// passkey made by the fido-emu CLI. No browser, no hardware.
//
//   cd tools/quickstart/node && npm install && node quickstart.mjs
//
// Options (all optional; the defaults are SimpleWebAuthn's own):
//   --store PATH          fido-emu store (default: a fresh file in the OS temp dir)
//   --profile NAME        security-key | synced-passkey | platform
//   --rk required|discouraged   authenticatorSelection.residentKey (default: SimpleWebAuthn's)
//   --allow listed|empty  allowCredentials at sign-in (default: listed)
//   --alg=N               supportedAlgorithmIDs: [N] (default: SimpleWebAuthn's [-8, -7, -257])
//   --attestation direct  attestationType (default: "none")
//   --root FILE           trust this root CA (PEM) for packed x5c (fido-emu attestation init)
// Environment: FIDO_EMU is the command to run (default "fido-emu"; e.g. "python -m
// authenticator.frontdoor.cli"). Prints one JSON line with what the RP verified; exits 1 if
// anything did not verify.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  SettingsService,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';

const { values: opt } = parseArgs({
  options: {
    store: { type: 'string' },
    profile: { type: 'string' },
    rk: { type: 'string' },
    allow: { type: 'string', default: 'listed' },
    alg: { type: 'string' },
    attestation: { type: 'string' },
    root: { type: 'string' },
  },
});

const origin = 'http://localhost:8080'; // a secure context without TLS, as browsers allow
const rpID = 'localhost';
const store = opt.store ?? join(mkdtempSync(join(tmpdir(), 'fido-emu-')), 'quickstart.db');
const [command, ...prefix] = (process.env.FIDO_EMU ?? 'fido-emu').split(' ');

function fidoEmu(verb, options) {
  const args = [...prefix, 'webauthn', verb, '--origin', origin, '--store', store];
  if (opt.profile) args.push('--profile', opt.profile);
  const run = spawnSync(command, args, { input: JSON.stringify(options), encoding: 'utf8' });
  if (run.status !== 0) return { error: run.stderr.trim(), status: run.status };
  return { response: JSON.parse(run.stdout) };
}

if (opt.root) {
  SettingsService.setRootCertificates({ identifier: 'packed', certificates: [readFileSync(opt.root, 'utf8')] });
}

// 1. registration: SimpleWebAuthn's options, only what the run asks for changed
const regOptions = await generateRegistrationOptions({
  rpName: 'fido-emu quickstart',
  rpID,
  userName: 'alice',
  ...(opt.rk ? { authenticatorSelection: { residentKey: opt.rk, userVerification: 'preferred' } } : {}),
  ...(opt.alg ? { supportedAlgorithmIDs: [Number(opt.alg)] } : {}),
  ...(opt.attestation ? { attestationType: opt.attestation } : {}),
});
const created = fidoEmu('create', regOptions);
if (created.error) {
  console.log(JSON.stringify({ ok: false, step: 'create', error: created.error }));
  process.exit(1);
}
const registration = await verifyRegistrationResponse({
  response: created.response,
  expectedChallenge: regOptions.challenge,
  expectedOrigin: origin,
  expectedRPID: rpID,
  requireUserVerification: false,
  ...(opt.alg ? { supportedAlgorithmIDs: [Number(opt.alg)] } : {}),
});
if (!registration.verified) {
  console.log(JSON.stringify({ ok: false, step: 'verifyRegistration' }));
  process.exit(1);
}
const { credential, fmt, aaguid, credentialBackedUp, credentialDeviceType } = registration.registrationInfo;

// 2. sign in twice: the counter must grow (or stay 0 for synced passkeys)
const signIns = [];
let counter = credential.counter;
for (let i = 0; i < 2; i++) {
  const authOptions = await generateAuthenticationOptions({
    rpID,
    ...(opt.allow === 'empty' ? {} : { allowCredentials: [{ id: credential.id, transports: credential.transports }] }),
  });
  const got = fidoEmu('get', authOptions);
  if (got.error) {
    console.log(JSON.stringify({ ok: false, step: 'get', error: got.error, status: got.status, fmt }));
    process.exit(1);
  }
  const auth = await verifyAuthenticationResponse({
    response: got.response,
    expectedChallenge: authOptions.challenge,
    expectedOrigin: origin,
    expectedRPID: rpID,
    credential: { ...credential, counter },
    requireUserVerification: false,
  });
  if (!auth.verified) {
    console.log(JSON.stringify({ ok: false, step: 'verifyAuthentication' }));
    process.exit(1);
  }
  counter = auth.authenticationInfo.newCounter;
  signIns.push({ counter, userVerified: auth.authenticationInfo.userVerified });
}
console.log(JSON.stringify({
  ok: true,
  fmt,
  aaguid,
  alg: created.response.response.publicKeyAlgorithm,
  deviceType: credentialDeviceType,
  backedUp: credentialBackedUp,
  rk: created.response.clientExtensionResults?.credProps?.rk ?? null,
  signIns,
}));
