#!/usr/bin/env bash
# Set up what tests/authenticator/rp_testing/browser/test_firefox_vm.py needs to drive Firefox: Debian's firefox-esr and
# puppeteer-core (npm), which speaks WebDriver BiDi to it (Firefox >= 129 has no CDP; Playwright
# would need its own patched Firefox; geckodriver is not packaged in bookworm). puppeteer-core
# never downloads a browser. node_modules go to a git-ignored directory:
# $FIDO_EMU_NODE_DIR, default <repo>/.vm/node (never commit them).
# Idempotent. As root, apt-installs firefox-esr / nodejs / npm when missing (.ci/run installs
# firefox-esr itself). Options: FIDO_EMU_PUPPETEER_VERSION (npm range, default 24).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${FIDO_EMU_NODE_DIR:-$repo/.vm/node}"
version="${FIDO_EMU_PUPPETEER_VERSION:-24}"

missing=()
command -v firefox-esr >/dev/null || missing+=(firefox-esr)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "setup-firefox: missing ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "setup-firefox: apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$dir"
if [[ -f "$dir/node_modules/puppeteer-core/package.json" ]]; then
  echo "setup-firefox: puppeteer-core present in $dir"
  exit 0
fi
[[ -f "$dir/package.json" ]] || echo '{"name": "fido-emu-browser-tools", "private": true}' > "$dir/package.json"
# PUPPETEER_SKIP_DOWNLOAD: belt and braces (puppeteer-core has no download step)
PUPPETEER_SKIP_DOWNLOAD=1 npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
  "puppeteer-core@$version"
echo "setup-firefox: puppeteer-core $(node -p "require('$dir/node_modules/puppeteer-core/package.json').version") in $dir"
