#!/bin/bash
# In the guest: the emulator on UHID + the demo RP + headless Chromium (Playwright).
set -u
PY=${FIDO_EMU_PYTHON:-.venv/bin/python}
export HOME=/tmp/home; mkdir -p $HOME
$PY tools/rp-demo/server.py --port 8080 > /tmp/rp.log 2>&1 &
rc=0
run_config() {  # name strict emulator-args... -- steps...
  name=$1; strict=$2; shift 2
  emu_args=(); while [ "$1" != "--" ]; do emu_args+=("$1"); shift; done; shift
  $PY -m authenticator.frontdoor.cli run --transport uhid --presence auto --store /tmp/$name.db "${emu_args[@]}" > /tmp/emu-$name.log 2>&1 &
  EMU=$!
  for _ in $(seq 1 240); do fido2-token -L 2>/dev/null | grep -q hidraw && break; sleep 0.5; done
  $PY tests/authenticator/rp_testing/browser/vm_roaming.py "$name" "$strict" "$@" || rc=1
  grep -E "makeCredential|getAssertion|clientPIN" /tmp/emu-$name.log | sed "s/^/EMU $name: /" | tail -n 12
  kill -TERM $EMU; wait $EMU; sleep 1
}
# built-in UV, no clientPIN, account chosen on the device (userSelected): every flow must
# work headless
run_config builtin-uv 1 --set builtin_uv=true --set client_pin=false --set select_account_on_device=true -- register-rk signin reauth
# the credential Chromium registered over USB, used through the CLI on the same store
$PY tests/authenticator/rp_testing/browser/vm_cli_signin.py /tmp/builtin-uv.db "$PY" || { echo "CHECK FAIL cli-signin-same-store"; rc=1; }
# the same without userSelected: Chromium shows its own account sheet (reported only)
run_config builtin-uv-picker 0 --set builtin_uv=true --set client_pin=false -- register-rk signin
# a plain security key (clientPIN supported, no PIN set, no built-in UV): non-discoverable
# must work; the discoverable flow is reported as Chromium handles it
run_config plain-key 1 -- register-nonrk reauth-bob
run_config plain-key-rk 0 -- register-rk
echo "ROAMING DONE rc=$rc"
exit $rc
