#!/usr/bin/env bash
# A real local Kubernetes control plane (etcd + kube-apiserver +
# kube-controller-manager v1.20.2), built from Debian's source package, on
# 127.0.0.1 only, with no Docker; with --node also a real node (containerd,
# kubelet, kube-scheduler, kube-proxy, bridge CNI on 10.244.0.1) whose pods run.
# Recipe: shared/local-cluster.md.
#
#   cluster.sh up [--node]     install/build what is missing, start, wait until usable
#                              (--node: and until the node is Ready; a later plain
#                              `up` keeps the node until `down`)
#   cluster.sh down [--purge]  stop what `up` started (--purge: also delete etcd data)
#   cluster.sh env             print `export KUBECONFIG=...` (for eval), and the
#                              node's containerd socket and certs.d when it runs
#   cluster.sh status          is it up; ports, pids, kubeconfig; the node
#   cluster.sh build [--force] WHAT...   build more cmd targets (e.g. cmd/kubelet) into the cache
#
# Binaries: ${WHARF_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/wharf}/kubernetes-v1.20.2/bin
# State:    ${WHARF_STATE_DIR:-${XDG_STATE_HOME:-~/.local/state}/wharf/cluster}
# Progress and errors go to stderr, prefixed "cluster:" / "error:".
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib-common.sh
. "$SCRIPT_DIR/lib-common.sh"
# shellcheck source=lib-k8s-build.sh
. "$SCRIPT_DIR/lib-k8s-build.sh"
# shellcheck source=lib-images.sh
. "$SCRIPT_DIR/lib-images.sh"
# shellcheck source=lib-node.sh
. "$SCRIPT_DIR/lib-node.sh"

# Stop order: dependents first.
DAEMONS=(kube-controller-manager kube-apiserver etcd)
PORTS_FILE=$WHARF_STATE/ports.env
KUBECONFIG_FILE=$WHARF_STATE/admin.kubeconfig
TOKENS_FILE=$WHARF_STATE/tokens.csv
SA_KEY=$WHARF_STATE/sa.key
ETCD_BIN=/usr/bin/etcd

# The header comment above is the help text.
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2; exit 2; }

load_ports() {
  ETCD_PORT='' ETCD_PEER_PORT='' APISERVER_PORT='' KCM_PORT=''
  # shellcheck disable=SC1090
  [[ -f $PORTS_FILE ]] && . "$PORTS_FILE"
  return 0
}

admin_token() { cut -d, -f1 "$TOKENS_FILE"; }

# curl the API server as admin; prints the body.
api_get() {
  curl -sk --max-time 3 -H "Authorization: Bearer $(admin_token)" "https://127.0.0.1:$APISERVER_PORT$1"
}
apiserver_ready() { [[ $(api_get /readyz 2>/dev/null) == ok ]]; }
etcd_healthy() { curl -s --max-time 3 "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'; }
kcm_healthy() {
  [[ $(curl -sk --max-time 3 -H "Authorization: Bearer $(admin_token)" \
    "https://127.0.0.1:$KCM_PORT/healthz" 2>/dev/null) == ok ]]
}
default_sa_exists() { api_get /api/v1/namespaces/default/serviceaccounts/default 2>/dev/null | grep -q '"kind": *"ServiceAccount"'; }

# Up = every daemon alive (pid file + matching cmdline) and /readyz ok.
cluster_running() {
  local d
  for d in "${DAEMONS[@]}"; do daemon_alive "$d" || return 1; done
  load_ports
  [[ -n $APISERVER_PORT && -f $TOKENS_FILE ]] && apiserver_ready
}

stop_all() { local d; for d in "${DAEMONS[@]}"; do stop_daemon "$d"; done; }

# Secrets and ports. Token, SA key and ports survive restarts, so an existing
# kubeconfig keeps working as long as its port is still free.
prepare_state() {
  mkdir -p "$WHARF_STATE"/{logs,pids,etcd,certs}
  chmod 700 "$WHARF_STATE" "$WHARF_STATE/etcd"
  if [[ ! -s $TOKENS_FILE ]]; then
    (umask 077 && echo "$(openssl rand -hex 24),admin,admin,system:masters" >"$TOKENS_FILE")
  fi
  if [[ ! -s $SA_KEY ]]; then
    (umask 077 && openssl genrsa -out "$SA_KEY.tmp" 2048 2>/dev/null && mv "$SA_KEY.tmp" "$SA_KEY") \
      || fail "openssl genrsa failed"
  fi
  load_ports
  local p
  read -r -a p <<<"$(pick_ports "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT")"
  ((${#p[@]} == 4)) || fail "picking free loopback ports failed"
  ETCD_PORT=${p[0]} ETCD_PEER_PORT=${p[1]} APISERVER_PORT=${p[2]} KCM_PORT=${p[3]}
  printf 'ETCD_PORT=%s\nETCD_PEER_PORT=%s\nAPISERVER_PORT=%s\nKCM_PORT=%s\n' \
    "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT" >"$PORTS_FILE"
  write_kubeconfig
}

write_kubeconfig() {
  (umask 077 && cat >"$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: wharf
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    insecure-skip-tls-verify: true
users:
- name: wharf-admin
  user:
    token: $(admin_token)
contexts:
- name: wharf
  context:
    cluster: wharf
    user: wharf-admin
    namespace: default
current-context: wharf
EOF
  ) && mv -f "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

start_etcd() {
  local peer=http://127.0.0.1:$ETCD_PEER_PORT client=http://127.0.0.1:$ETCD_PORT
  # The initial-cluster flags only matter for a fresh data dir; a restart keeps
  # the member it has even if the peer port changed (single member, no peers).
  start_daemon etcd "$ETCD_BIN" --name wharf --data-dir "$WHARF_STATE/etcd" --logger zap \
    --listen-client-urls "$client" --advertise-client-urls "$client" \
    --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
    --initial-cluster "wharf=$peer" --initial-cluster-state new
  wait_until 30 "etcd health on $client" "$(log_file etcd)" etcd etcd_healthy
}

# Set by `up --node` (or a plain `up` of a cluster whose node is enabled).
NODE_MODE=0

start_apiserver() {
  # Without a node, the advertised address (the `kubernetes` Endpoints) stays the
  # host's default one: Endpoints may not hold a loopback IP. Nothing is served
  # there though. With the node: see node_apiserver_flags.
  local mode_flags=(--disable-admission-plugins=ServiceAccount)
  if ((NODE_MODE)); then node_apiserver_flags; mode_flags=("${NODE_APISERVER_FLAGS[@]}"); fi
  start_daemon kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --cert-dir="$WHARF_STATE/certs" --token-auth-file="$TOKENS_FILE" \
    --authorization-mode=RBAC \
    --service-account-key-file="$SA_KEY" --service-account-signing-key-file="$SA_KEY" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-cluster-ip-range=10.96.0.0/16 \
    --allow-privileged=true "${mode_flags[@]}"
  wait_until 60 "kube-apiserver /readyz on 127.0.0.1:$APISERVER_PORT" \
    "$(log_file kube-apiserver)" kube-apiserver apiserver_ready
}

start_controller_manager() {
  local ca=() crt=$WHARF_STATE/certs/apiserver.crt
  # The self-signed serving cert the API server wrote (cert + its CA) becomes
  # the ca.crt of ServiceAccount token secrets and kube-root-ca.crt.
  [[ -s $crt ]] && ca=(--root-ca-file="$crt")
  # --controllers='*': all default controllers, among them garbagecollector,
  # namespace, serviceaccount and serviceaccount-token. --port=0 turns off the
  # insecure port (default 0.0.0.0:10252); the secure one is on loopback only.
  start_daemon kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig="$KUBECONFIG_FILE" \
    --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --port=0 \
    --cert-dir="$WHARF_STATE/certs/kcm" \
    --leader-elect=false --controllers='*' \
    --service-account-private-key-file="$SA_KEY" "${ca[@]}"
  wait_until 60 "kube-controller-manager /healthz on 127.0.0.1:$KCM_PORT" \
    "$(log_file kube-controller-manager)" kube-controller-manager kcm_healthy
}

cmd_up() {
  local t0
  t0=$(now)
  case ${1:-} in --node) NODE_MODE=1 ;; '') ;; *) usage ;; esac
  mkdir -p "$WHARF_STATE"
  # One `up`/`down` at a time per state dir.
  exec 9>"$WHARF_STATE/.lock"
  flock 9
  node_enabled && NODE_MODE=1
  if cluster_running && { ((!NODE_MODE)) || node_apiserver_has_flags; }; then
    if ((NODE_MODE)); then
      node_running || node_ensure_built
      node_up
    fi
    log "already running: https://127.0.0.1:$APISERVER_PORT, KUBECONFIG=$KUBECONFIG_FILE"
    return 0
  fi
  ((NODE_MODE)) && WHARF_APT_PACKAGES+=("${NODE_APT_PACKAGES[@]}")
  ensure_packages
  build_k8s cmd/kube-apiserver cmd/kube-controller-manager
  if ((NODE_MODE)); then
    node_build
    node_prepare_state   # the API server's node flags name its certificates
    if cluster_running; then
      # Running without the node's flags: restart only the API server (etcd and
      # the controller manager keep running; clients reconnect).
      log "restarting kube-apiserver with the node's flags"
      load_ports
      stop_daemon kube-apiserver
      FAIL_HOOK=stop_all
      start_apiserver
      FAIL_HOOK=
      node_up
      log "up in $(($(now) - t0))s: https://127.0.0.1:$APISERVER_PORT, KUBECONFIG=$KUBECONFIG_FILE"
      return 0
    fi
  fi
  # Not fully up: stop whatever of ours survived, drop stale pid files (e.g.
  # after a reboot), and start everything again on the same etcd data dir.
  stop_all
  prepare_state
  FAIL_HOOK=stop_all   # a failed `up` leaves no half cluster behind
  start_etcd
  start_apiserver
  start_controller_manager
  wait_until 60 "namespace default and ServiceAccount default/default" \
    "$(log_file kube-controller-manager)" kube-controller-manager default_sa_exists
  FAIL_HOOK=
  ((NODE_MODE)) && node_up
  log "up in $(($(now) - t0))s: https://127.0.0.1:$APISERVER_PORT (etcd 127.0.0.1:$ETCD_PORT)"
  log "KUBECONFIG=$KUBECONFIG_FILE"
}

cmd_down() {
  local purge=0 d any=0
  [[ ${1:-} == --purge ]] && purge=1
  [[ $# -le 1 && ( $# -eq 0 || $purge -eq 1 ) ]] || usage
  if [[ -d $WHARF_STATE ]]; then
    exec 9>"$WHARF_STATE/.lock"
    flock 9
    node_stop   # first: its pods and daemons need the API server to the end
    rm -f "$NODE_STATE/enabled"
    for d in "${DAEMONS[@]}"; do [[ -f $(pid_file "$d") ]] && any=1; done
    if ((any)); then stop_all; log "stopped"; else log "no cluster running"; fi
  else
    log "no cluster running (no $WHARF_STATE)"
  fi
  if ((purge)) && [[ -d $WHARF_STATE ]]; then
    exec 9>&-
    rm -rf "$WHARF_STATE"
    log "purged $WHARF_STATE"
  fi
}

cmd_env() {
  cluster_running || { echo "error: no cluster is up (run: $0 up)" >&2; exit 1; }
  echo "export KUBECONFIG=$KUBECONFIG_FILE"
  if node_running; then
    echo "export WHARF_NODE_CONTAINERD_ADDRESS=$NODE_SOCK"
    echo "export WHARF_NODE_CERTS_D=$NODE_CERTS_D"
  fi
}

cmd_status() {
  local d pid up=0
  cluster_running && up=1
  load_ports
  if ((up)); then echo "cluster: up"; else echo "cluster: down"; fi
  echo "  state dir:  $WHARF_STATE"
  echo "  binaries:   $K8S_BIN"
  [[ -f $KUBECONFIG_FILE ]] && echo "  kubeconfig: $KUBECONFIG_FILE"
  [[ -n $ETCD_PORT ]] && echo "  ports:      etcd 127.0.0.1:$ETCD_PORT (peer $ETCD_PEER_PORT)," \
    "kube-apiserver https://127.0.0.1:$APISERVER_PORT, kube-controller-manager 127.0.0.1:$KCM_PORT"
  for d in "${DAEMONS[@]}"; do
    if pid=$(daemon_pid "$d"); then echo "  $d: running (pid $pid)"; else echo "  $d: not running"; fi
  done
  node_status
  ((up))
}

cmd_build() {
  local force=()
  [[ ${1:-} == --force ]] && { force=(--force); shift; }
  (($#)) || usage
  ensure_packages
  build_k8s "${force[@]}" "$@"
}

main() {
  local cmd=${1:-}
  (($#)) && shift
  case $cmd in
    up) (($# <= 1)) || usage; cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    env) cmd_env ;;
    status) cmd_status ;;
    build) cmd_build "$@" ;;
    *) usage ;;
  esac
}

main "$@"
