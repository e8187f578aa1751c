#!/usr/bin/env bash
# Installs what the registry-auth and registry-controller tests run for real, from Debian
# packages, when missing: the distribution registry (docker-registry 2.8, /usr/bin/docker-registry),
# skopeo (push/pull client) and curl (raw token requests). Idempotent; prints nothing when all
# are present. Needs root (apt-get) the first time.
set -euo pipefail

missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "registry-test-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y --no-install-recommends "$@" >&2; }
if ! apt_install "${missing[@]}"; then
  apt-get update >&2
  apt_install "${missing[@]}"
fi
# The Debian package starts no daemon without systemd; a test starts its own registries.
for binary in docker-registry skopeo curl; do
  command -v "$binary" >/dev/null 2>&1 || { echo "error: $binary still missing after apt-get install" >&2; exit 1; }
done
