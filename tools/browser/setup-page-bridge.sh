#!/usr/bin/env bash
# npm packages the page-bridge suites load into a real page: @simplewebauthn/browser (its UMD
# bundle is served unmodified). Into a git-ignored directory: $FIDO_EMU_NODE_DIR, default
# <repo>/.vm/node (never commit them). Idempotent; needs node and npm (apt-get install npm).
# Options: FIDO_EMU_SIMPLEWEBAUTHN_VERSION (npm range, default 14).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${FIDO_EMU_NODE_DIR:-$repo/.vm/node}"
version="${FIDO_EMU_SIMPLEWEBAUTHN_VERSION:-14}"
bundle="$dir/node_modules/@simplewebauthn/browser/dist/bundle/index.umd.min.js"
if [[ -f "$bundle" ]]; then
  echo "setup-page-bridge: @simplewebauthn/browser present in $dir"
  exit 0
fi
command -v npm >/dev/null || { echo "setup-page-bridge: npm missing (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dir"
[[ -f "$dir/package.json" ]] || echo '{"name": "fido-emu-browser-tools", "private": true}' > "$dir/package.json"
npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "@simplewebauthn/browser@$version"
echo "setup-page-bridge: @simplewebauthn/browser $(node -p "require('$dir/node_modules/@simplewebauthn/browser/package.json').version") in $dir"
