#!/usr/bin/env bash
# The web chat's browser tests, from a bare Debian machine: installs what they need (Debian's
# Chromium, a font with CJK glyphs for the screenshots, the npm packages locked in
# e2e/package-lock.json), builds socktalk and runs `node --test e2e/`. Exits non-zero on any
# failure. Chromium comes from Debian only: playwright-core never downloads a browser.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
missing=()
need chromium || missing+=(chromium)
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing+=(fonts-wqy-microhei)
need node || missing+=(nodejs)
need npm || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "e2e: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
fi

(cd e2e && npm ci --no-audit --no-fund --loglevel=error)
cargo build --locked
SOCKTALK_BIN="${SOCKTALK_BIN:-target/debug/socktalk}" node --test e2e/
