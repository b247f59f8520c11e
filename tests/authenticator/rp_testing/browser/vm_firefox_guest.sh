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
rc=0
# a security key with a PIN set; without the PIN the pin-set cells below would test nothing
$FIDO_EMU_PYTHON -m authenticator.frontdoor.cli pin set --store /tmp/ff-pin-set.db --new-pin 123456 > /tmp/pin.log 2>&1 \
  || { echo "CHECK FAIL pin-set setup"; cat /tmp/pin.log; rc=1; }
# NAME:fido-emu run options:steps. A trailing "?" = reported only: used only for the cells the
# README's Firefox matrix calls "stalls" (a prompt headless Firefox cannot answer); every cell
# it calls "ok" is asserted.
node tests/authenticator/rp_testing/browser/vm_firefox.mjs \
  "builtin-uv:--set builtin_uv=true --set client_pin=false --set select_account_on_device=true:register-nonrk,reauth-bob,register-rk,signin,reauth" \
  "builtin-uv-picker:--set builtin_uv=true --set client_pin=false:register-nonrk,reauth-bob,register-rk,register-rk-carol,signin?" \
  "plain-key::register-nonrk,reauth-bob,register-rk" \
  "pin-set::register-nonrk,reauth-bob?,register-rk?" \
  || rc=1
kill $RP
echo "FIREFOX DONE rc=$rc"
exit $rc
