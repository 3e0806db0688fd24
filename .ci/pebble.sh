#!/usr/bin/env bash
# Installs Pebble, the ACME test server the TLS end-to-end tests run on
# loopback, from the Go module proxy, and prints what the tests need:
#
#   eval "$(bash .ci/pebble.sh)"    # sets PEBBLE=/path/to/pebble
#
# Progress goes to stderr so that stdout stays evaluable.
set -euo pipefail

PEBBLE_VERSION="${PEBBLE_VERSION:-v2.10.1}"
bin="$(go env GOPATH | cut -d: -f1)/bin"

# The module version the binary was built from (`go version -m`); awk reads
# all of its input, so no early exit breaks the pipe under pipefail.
installed() {
  go version -m "$bin/pebble" 2>/dev/null | awk '$1 == "mod" && $2 ~ /pebble\/v2$/ { print $3 }'
}

if [ "$(installed)" != "$PEBBLE_VERSION" ]; then
  echo "installing pebble $PEBBLE_VERSION" >&2
  # Outside the module: Pebble's dependencies must not touch go.mod.
  (cd / && GOFLAGS=-mod=mod go install "github.com/letsencrypt/pebble/v2/cmd/pebble@$PEBBLE_VERSION") >&2
fi
echo "pebble $(installed) at $bin/pebble" >&2
echo "export PEBBLE=$bin/pebble"
