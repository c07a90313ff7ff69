#!/usr/bin/env bash
# System packages the tests need: headless Chromium (report rendering test).
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
    echo "[deps] installing chromium (apt)" >&2
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq chromium >/dev/null \
        || echo "[deps] could not install chromium: the report rendering test will be skipped" >&2
fi
