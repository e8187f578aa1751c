#!/usr/bin/env bash
# Installs (idempotently, from Debian's packages) what the real data-plane tests
# (crates/dataplane-tests) and `cargo xtask bench data-plane` run: nginx with the
# ssl, http_v2, slice and realip modules, docker-registry (the upstream), skopeo
# and containerd/ctr (the pull clients), htpasswd, openssl and curl.
#
#   dataplane-deps.sh           install what is missing, then verify nginx's modules
#   dataplane-deps.sh --check   only verify; exit 1 naming what is missing
set -euo pipefail

PACKAGES=(nginx docker-registry skopeo containerd apache2-utils openssl curl)
# binary → the package that provides it
declare -A BINARIES=(
  [nginx]=nginx
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [containerd]=containerd
  [ctr]=containerd
  [htpasswd]=apache2-utils
  [openssl]=openssl
  [curl]=curl
)
# nginx must have been built with these (`nginx -V`).
NGINX_MODULES=(http_ssl_module http_v2_module http_slice_module http_realip_module)

log() { printf 'dataplane-deps: %s\n' "$*" >&2; }

missing_binaries() {
  local bin
  for bin in "${!BINARIES[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || printf '%s ' "$bin"
  done
}

check_nginx_modules() {
  local flags module missing=()
  flags=$(nginx -V 2>&1)
  for module in "${NGINX_MODULES[@]}"; do
    grep -q -- "--with-$module" <<<"$flags" || missing+=("$module")
  done
  if ((${#missing[@]})); then
    log "nginx lacks ${missing[*]} (nginx -V); install Debian's nginx 1.22 package"
    return 1
  fi
}

install_packages() {
  local sudo=()
  if ((EUID != 0)); then sudo=(sudo); fi
  log "installing ${PACKAGES[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The nginx package's postinst starts a system nginx on :80; the tests run their own
  # nginx with their own config, so keep the service from starting where it can.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d
    local remove_policy=1
  fi
  if ! "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${PACKAGES[@]}" >/dev/null; then
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update >/dev/null
    "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${PACKAGES[@]}" >/dev/null
  fi
  if [[ -n ${remove_policy:-} ]]; then "${sudo[@]}" rm -f /usr/sbin/policy-rc.d; fi
}

main() {
  local missing
  missing=$(missing_binaries)
  if [[ ${1:-} == --check ]]; then
    if [[ -n $missing ]]; then
      log "missing: $missing— run: bash xtask/scripts/dataplane-deps.sh"
      exit 1
    fi
    check_nginx_modules
    exit 0
  fi
  if [[ -n $missing ]]; then install_packages; fi
  missing=$(missing_binaries)
  if [[ -n $missing ]]; then
    log "still missing after apt-get install: $missing"
    exit 1
  fi
  check_nginx_modules
  log "ok: $(nginx -v 2>&1), docker-registry $(docker-registry --version 2>/dev/null | awk '{print $3}'), $(skopeo --version), ctr $(ctr --version | awk '{print $3}')"
}

main "$@"
