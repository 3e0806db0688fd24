#!/usr/bin/env bash
# Installs what the inspector and dashboard end-to-end tests need, from
# Debian's packages: chromium (the inspector page, driven headless through
# the DevTools protocol) and tmux (the terminal dashboard, read with
# capture-pane). Those tests fail instead of skipping when CI=true, so this
# must run before `go test` in CI.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v tmux >/dev/null 2>&1 || need+=(tmux)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update
  # chromium's recommended packages include the fonts it renders with.
  apt-get install -y "${need[@]}"
fi
chromium --version
tmux -V
