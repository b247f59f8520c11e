#!/bin/bash
# In the guest: the demo RP, then tests/authenticator/rp_testing/browser/vm_firefox.mjs (headless firefox-esr driven by
# puppeteer-core over WebDriver BiDi), which runs the emulator as a UHID security key in each
# configuration below. Needs udev=True (Firefox's authenticator-rs finds hidraw devices through
# libudev) and the modules uhid hid_generic.
set -u
export FIDO_EMU_PYTHON=${FIDO_EMU_PYTHON:-.venv/bin/python}
export FIDO_EMU_NODE_DIR=${FIDO_EMU_NODE_DIR:-.vm/node}
export HOME=/tmp/home TMPDIR=/tmp; mkdir -p $HOME
$FIDO_EMU_PYTHON tools/rp-demo/server.py --port 8080 > /tmp/rp.log 2>&1 &
RP=$!
# a security key with a PIN set (Firefox must ask for it: reported only)
$FIDO_EMU_PYTHON -m authenticator.frontdoor.cli pin set --store /tmp/ff-pin-set.db --new-pin 123456 > /tmp/pin.log 2>&1 \
  || { echo "CHECK FAIL pin-set setup"; cat /tmp/pin.log; }
rc=0
# NAME:fido-emu run options:steps (a trailing "?" = reported only)
node tests/authenticator/rp_testing/browser/vm_firefox.mjs \
  "builtin-uv:--set builtin_uv=true --set client_pin=false --set select_account_on_device=true:register-nonrk,reauth-bob,register-rk,signin,reauth" \
  "builtin-uv-picker:--set builtin_uv=true --set client_pin=false:register-rk,register-rk-carol,signin?" \
  "plain-key::register-nonrk,reauth-bob,register-rk?" \
  "pin-set::register-nonrk?,reauth-bob?,register-rk?" \
  || rc=1
kill $RP
echo "FIREFOX DONE rc=$rc"
exit $rc
