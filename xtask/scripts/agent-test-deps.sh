#!/usr/bin/env bash
# Installs the system packages hostess-agent's tests need (Debian): containerd
# (containerd + ctr, for the real-pull test), docker-registry (upstream and
# pull-through mirror), skopeo (pushes the test image). Idempotent: installs
# only what is missing; runs `apt-get update` only when it has to install.
#   bash xtask/scripts/agent-test-deps.sh
set -euo pipefail

# binary -> Debian package that provides it
declare -A PACKAGE_OF=(
  [containerd]=containerd
  [ctr]=containerd
  [docker-registry]=docker-registry
  [skopeo]=skopeo
)

missing=()
for binary in "${!PACKAGE_OF[@]}"; do
  if ! command -v "$binary" >/dev/null 2>&1; then
    missing+=("${PACKAGE_OF[$binary]}")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "agent-test-deps: everything is installed" >&2
  exit 0
fi

# one copy of each package, stable order
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
SUDO=
if ((EUID != 0)); then SUDO=sudo; fi
echo "agent-test-deps: installing ${packages[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
# --no-install-recommends: docker-registry/containerd would otherwise pull in
# services we never start.
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${packages[@]}"
# Debian starts packaged daemons on install where an init system runs; the tests
# start their own private instances, so stop the system ones if they came up.
for unit in containerd docker-registry; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
    $SUDO systemctl stop "$unit" || true
  fi
done
echo "agent-test-deps: done" >&2
