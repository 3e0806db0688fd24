#!/usr/bin/env bash
# Builds the container image and smoke-tests it, where a container runtime
# works: `porthole version` prints the stamped version, and a server in the
# image answers /healthz on 127.0.0.1. Without a runtime, or when the base
# image cannot be pulled (no registry reachable), it prints why and skips.
# A failure of our own build or of the smoke test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() { echo "docker: SKIP: $*"; exit 0; }

command -v docker >/dev/null 2>&1 || skip "no docker command on this machine"
docker info >/dev/null 2>&1 || skip "docker is installed but no daemon answers (docker info failed)"

go_image=$(sed -n 's/^ARG GO_IMAGE=//p' Dockerfile)
go_image=${GO_IMAGE:-$go_image}
if ! docker image inspect "$go_image" >/dev/null 2>&1; then
	if ! out=$(docker pull "$go_image" 2>&1); then
		skip "cannot pull the base image $go_image: $(tail -n1 <<<"$out")"
	fi
fi

version="ci-$(git rev-parse --short=12 HEAD 2>/dev/null || echo local)"
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
img="porthole-ci:$version"
docker build --build-arg GO_IMAGE="$go_image" --build-arg VERSION="$version" --build-arg COMMIT="$commit" -t "$img" .
trap 'docker rm -f porthole-ci-smoke >/dev/null 2>&1 || true; docker rmi -f "$img" >/dev/null 2>&1 || true' EXIT

echo "docker: image $img, $(docker image inspect -f '{{.Size}}' "$img") bytes, user $(docker image inspect -f '{{.Config.User}}' "$img")"
user=$(docker image inspect -f '{{.Config.User}}' "$img")
case "${user%%:*}" in
"" | 0 | root) echo "docker: FAIL: the image runs as root (user '$user')"; exit 1 ;;
esac

got=$(docker run --rm "$img" version)
echo "docker: $got"
case "$got" in
"porthole $version (commit ${commit:0:12},"*) ;;
*) echo "docker: FAIL: version printed '$got', want 'porthole $version (commit ${commit:0:12}, ...'"; exit 1 ;;
esac

# A server on the host's loopback (host network) on ports the kernel picks;
# its "server started" line names the admin address.
docker run -d --name porthole-ci-smoke --network host "$img" server --no-auth --log-format json \
	--data-dir /var/lib/porthole --http-addr 127.0.0.1:0 --tunnel-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 >/dev/null
for _ in $(seq 1 50); do
	admin=$(docker logs porthole-ci-smoke 2>&1 | grep -o '"admin":"127.0.0.1:[0-9]*"' | head -n1 | cut -d'"' -f4 || true)
	if [ -n "$admin" ] && body=$(curl -fsS "http://$admin/healthz" 2>/dev/null); then
		echo "docker: /healthz on $admin answered: $body"
		docker stop -t 10 porthole-ci-smoke >/dev/null
		echo "docker: OK"
		exit 0
	fi
	sleep 0.2
done
echo "docker: FAIL: the server in the image did not answer /healthz"
docker logs porthole-ci-smoke 2>&1 | tail -n 20
exit 1
