# shellcheck shell=bash
# A real node for the local cluster (`cluster.sh up --node`): containerd with the
# CRI plugin, a bridge CNI network, kubelet, kube-scheduler and kube-proxy
# v1.20.2, all on this machine. Recipe: shared/local-cluster.md, "A real node".
# Needs lib-common.sh, lib-k8s-build.sh and lib-images.sh sourced first, and
# cluster.sh's load_ports / api_get / KUBECONFIG_FILE.
#
# Addresses: the bridge cni0 is 10.244.0.1/24 (pods get 10.244.0.2-254); the
# Service CIDR 10.96.0.0/16 is routed to the bridge, so no packet for a Service
# leaves the machine; the host forwards only between pods (mangle-table rule).
# The API server stays on 127.0.0.1; a socat forwarder on 10.244.0.1 (the
# address the `kubernetes` Service points at) lets pods reach it. Everything the
# node starts listens on 127.0.0.1 or 10.244.0.1. No cluster DNS: in-cluster
# clients find the API server through KUBERNETES_SERVICE_HOST. Claims of the
# default StorageClass wharf-local get local directories (node-volumes.sh).

# shellcheck disable=SC2034  # used by cluster.sh
NODE_NAME=wharf-node
NODE_IP=10.244.0.1
NODE_BRIDGE=cni0
NODE_POD_SUBNET=10.244.0.0/24
NODE_CLUSTER_CIDR=10.244.0.0/16
NODE_SERVICE_CIDR=10.96.0.0/16
NODE_STATE=$WHARF_STATE/node
NODE_SOCK=$NODE_STATE/containerd/containerd.sock
# containerd's registry.config_path: where hostess-agent writes <host>/hosts.toml. Its
# DaemonSet mounts the node's /etc/containerd/certs.d (what containerd nodes use), so that is
# the default; `down` leaves the agent's files alone.
# WHARF_NODE_CERTS_D overrides it; a running node keeps the one it was started with.
NODE_CERTS_D=${WHARF_NODE_CERTS_D:-$(awk -F'"' '/^ *config_path = / { print $2 }' \
  "$NODE_STATE/containerd/config.toml" 2>/dev/null || true)}
NODE_CERTS_D=${NODE_CERTS_D:-/etc/containerd/certs.d}
NODE_PKI=$NODE_STATE/pki
NODE_PORTS_FILE=$NODE_STATE/ports.env
NODE_PAUSE_IMAGE=docker.io/wharf/pause:3.4
NODE_PAUSE_ARCHIVE=$K8S_CACHE/images/pause-3.4.tar
NODE_CRI_CLEANUP=$K8S_BIN/wharf-cri-cleanup
NODE_CRI_CLEANUP_SRC=$SCRIPT_DIR/cri-cleanup/main.go
# Stop order: dependents first. containerd last: the pods are removed through it.
NODE_DAEMONS=(kube-proxy kubelet kube-scheduler wharf-local-volumes socat containerd)
NODE_APT_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack socat gcc libc6-dev
  iproute2 openssl jq)
NODE_K8S_TARGETS=(cmd/kubelet cmd/kube-scheduler cmd/kube-proxy)
# Kernel settings kubelet, kube-proxy and the bridge CNI plugin change; `down` restores them.
NODE_SYSCTLS=(net.ipv4.ip_forward net.ipv4.conf.all.route_localnet vm.overcommit_memory
  vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# The mangle-table chain that keeps forwarded traffic on the bridge.
NODE_FORWARD_CHAIN=WHARF-NODE-FORWARD

node_log() { log "node: $*"; }

# Whether `up --node` was asked for and no `down` came since (plain `up` keeps it).
node_enabled() { [[ -f $NODE_STATE/enabled ]]; }

load_node_ports() {
  KUBELET_PORT='' KUBELET_HEALTHZ_PORT='' SCHEDULER_PORT='' PROXY_HEALTHZ_PORT='' PROXY_METRICS_PORT=''
  # shellcheck disable=SC1090
  [[ -f $NODE_PORTS_FILE ]] && . "$NODE_PORTS_FILE"
  return 0
}

# ---- build: kubelet & co. (cached with the control plane), pause, the CRI cleanup helper ----

node_build() {
  build_k8s "${NODE_K8S_TARGETS[@]}"
  node_build_pause
  node_build_cri_cleanup
}

# Packages and builds, for an `up --node` that finds the control plane running.
node_ensure_built() {
  WHARF_APT_PACKAGES+=("${NODE_APT_PACKAGES[@]}")
  ensure_packages
  node_build
}

# The sandbox ("pause") image: the static build of build/pause/linux/pause.c from
# the same source tree, as an OCI archive containerd imports.
node_build_pause() {
  local rootfs
  [[ -s $NODE_PAUSE_ARCHIVE && $NODE_PAUSE_ARCHIVE -nt $K8S_BIN/pause ]] && return 0
  if [[ ! -x $K8S_BIN/pause ]]; then
    ensure_k8s_source
    node_log "building the pause binary (gcc -static)"
    gcc -Os -Wall -Werror -static -DVERSION=v3.4-wharf -o "$K8S_BIN/.pause.tmp" \
      "$K8S_SRC/build/pause/linux/pause.c" || fail "gcc -static pause.c failed (packages gcc, libc6-dev)"
    mv -f "$K8S_BIN/.pause.tmp" "$K8S_BIN/pause"
  fi
  rootfs=$(mktemp -d)
  install -m 0755 "$K8S_BIN/pause" "$rootfs/pause"
  oci_write_archive "$rootfs" "$NODE_PAUSE_IMAGE" "$NODE_PAUSE_ARCHIVE" \
    '{"Entrypoint":["/pause"],"User":"65535:65535"}'
  rm -rf "$rootfs"
  node_log "wrote $NODE_PAUSE_IMAGE to $NODE_PAUSE_ARCHIVE"
}

# xtask/scripts/cri-cleanup/main.go, built in the Kubernetes tree (it vendors the
# CRI API and grpc); rebuilt when the source changes.
node_build_cri_cleanup() {
  local sum pkg=$K8S_SRC/cmd/wharf-cri-cleanup blog=$K8S_CACHE/build.log
  sum=$(sha256_of "$NODE_CRI_CLEANUP_SRC")
  [[ -x $NODE_CRI_CLEANUP && $(cat "$NODE_CRI_CLEANUP.sha256" 2>/dev/null) == "$sum" ]] && return 0
  ensure_k8s_source
  node_log "building wharf-cri-cleanup"
  mkdir -p "$pkg"
  cp "$NODE_CRI_CLEANUP_SRC" "$pkg/main.go"
  (
    cd "$K8S_SRC/.go/src/k8s.io/kubernetes/cmd/wharf-cri-cleanup"
    PATH=$GO_ROOT_BIN:$PATH GOPATH=$K8S_SRC/.go GO111MODULE=off CGO_ENABLED=0 \
      go build -o "$NODE_CRI_CLEANUP.tmp" .
  ) >>"$blog" 2>&1 || fail "building wharf-cri-cleanup failed" "$blog"
  mv -f "$NODE_CRI_CLEANUP.tmp" "$NODE_CRI_CLEANUP"
  echo "$sum" >"$NODE_CRI_CLEANUP.sha256"
}

# ---- state: ports, certificates, configuration files ----

# Pulls of images that were not imported must never leave the machine: the public registries an
# image may name resolve to a closed loopback port, so such a pull fails at once instead of
# reaching out to the internet. Only those hosts: a registry on the bridge (a test's upstream)
# must stay reachable directly, which is what a pull falls back to when its mirror goes away.
NODE_GUARDED_REGISTRIES=(docker.io registry-1.docker.io quay.io gcr.io ghcr.io registry.k8s.io
  k8s.gcr.io mcr.microsoft.com public.ecr.aws registry.gitlab.com nvcr.io)
NODE_GUARD_MARK='# Written by wharf cluster.sh --node: unmirrored registries stay on this machine.'
node_default_registry_host() {
  local host dir
  # Earlier versions guarded every host through _default, which also swallowed fallbacks.
  grep -qxF "$NODE_GUARD_MARK" "$NODE_CERTS_D/_default/hosts.toml" 2>/dev/null && rm -rf "$NODE_CERTS_D/_default"
  for host in "${NODE_GUARDED_REGISTRIES[@]}"; do
    dir=$NODE_CERTS_D/$host
    # hostess-agent owns the file of a mirrored upstream: leave it be.
    [[ -f $dir/hosts.toml ]] && ! grep -qxF "$NODE_GUARD_MARK" "$dir/hosts.toml" && continue
    mkdir -p "$dir"
    # containerd 1.6 refuses a `server` without a host table ("invalid host tree"): give both.
    printf '%s\n' "$NODE_GUARD_MARK" \
      'server = "https://127.0.0.1:9"' '' '[host."https://127.0.0.1:9"]' '  capabilities = ["pull", "resolve"]' \
      >"$dir/hosts.toml"
  done
}

node_remove_registry_guards() {
  local host
  for host in "${NODE_GUARDED_REGISTRIES[@]}"; do
    grep -qxF "$NODE_GUARD_MARK" "$NODE_CERTS_D/$host/hosts.toml" 2>/dev/null || continue
    rm -f "$NODE_CERTS_D/$host/hosts.toml"
    rmdir "$NODE_CERTS_D/$host" 2>/dev/null || true
  done
}

# A CA the node's containerd trusts besides the system's (SSL_CERT_FILE, read by Go's TLS): tests
# and the demo sign their registries' certificates with it, as an organisation's own CA would be
# trusted by its nodes. Kept across `down`, so certificates issued earlier stay valid.
NODE_TRUST=$WHARF_STATE/node-trust
node_trust_ca() {
  [[ -s $NODE_TRUST/ca.crt && -s $NODE_TRUST/ca.key && -s $NODE_TRUST/bundle.pem ]] && return 0
  mkdir -p "$NODE_TRUST"
  (
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj "/CN=wharf local node CA" -keyout "$NODE_TRUST/ca.key" -out "$NODE_TRUST/ca.crt" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  ) || fail "cannot create the node's CA in $NODE_TRUST"
  cat /etc/ssl/certs/ca-certificates.crt "$NODE_TRUST/ca.crt" >"$NODE_TRUST/bundle.pem"
  node_log "created the CA the node trusts: $NODE_TRUST/ca.crt"
}

# Whether the running containerd was started with the node's CA bundle (older nodes were not).
node_containerd_trusts_ca() {
  local pid
  pid=$(daemon_pid containerd) || return 1
  [[ -s $NODE_TRUST/bundle.pem ]] || return 1
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "SSL_CERT_FILE=$NODE_TRUST/bundle.pem"
}

node_start_containerd() {
  node_trust_ca
  SSL_CERT_FILE=$NODE_TRUST/bundle.pem \
    start_daemon containerd /usr/bin/containerd --config "$NODE_STATE/containerd/config.toml"
  wait_until 30 "containerd on $NODE_SOCK" "$(log_file containerd)" containerd containerd_ready
}

node_prepare_state() {
  mkdir -p "$NODE_STATE"/{containerd,cni/net.d,cni/ipam,kubelet/root,kubelet/pki,kubelet/volume-plugins} \
    "$NODE_CERTS_D" "$NODE_PKI"
  chmod 700 "$NODE_STATE"
  node_default_registry_host
  load_node_ports
  local p d
  # Daemons still running keep their ports.
  for d in "${NODE_DAEMONS[@]}"; do
    if daemon_alive "$d" && [[ -n $PROXY_METRICS_PORT ]]; then node_pki; node_write_configs; return 0; fi
  done
  read -r -a p <<<"$(pick_ports "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" "$SCHEDULER_PORT" \
    "$PROXY_HEALTHZ_PORT" "$PROXY_METRICS_PORT")"
  ((${#p[@]} == 5)) || fail "picking free ports for the node failed"
  KUBELET_PORT=${p[0]} KUBELET_HEALTHZ_PORT=${p[1]} SCHEDULER_PORT=${p[2]}
  PROXY_HEALTHZ_PORT=${p[3]} PROXY_METRICS_PORT=${p[4]}
  printf 'KUBELET_PORT=%s\nKUBELET_HEALTHZ_PORT=%s\nSCHEDULER_PORT=%s\nPROXY_HEALTHZ_PORT=%s\nPROXY_METRICS_PORT=%s\n' \
    "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" "$SCHEDULER_PORT" "$PROXY_HEALTHZ_PORT" \
    "$PROXY_METRICS_PORT" >"$NODE_PORTS_FILE"
  node_pki
  node_write_configs
}

# A CA the kubelet trusts for client certificates, and the API server's client
# certificate for it (logs, exec, port-forward), in group system:masters.
node_pki() {
  [[ -s $NODE_PKI/apiserver-kubelet-client.crt ]] && return 0
  (
    umask 077
    cd "$NODE_PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=wharf-node-ca" &&
      openssl req -newkey rsa:2048 -nodes -keyout apiserver-kubelet-client.key \
        -out apiserver-kubelet-client.csr -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" &&
      openssl x509 -req -in apiserver-kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
        -out apiserver-kubelet-client.crt -days 3650 &&
      rm -f apiserver-kubelet-client.csr
  ) >/dev/null 2>&1 || fail "openssl could not create the node's certificates in $NODE_PKI"
}

# Flags the API server needs when the node runs: the `kubernetes` Service points
# at the bridge address (Endpoints may not hold a loopback IP), pods get
# ServiceAccount tokens (admission plugin on, as bound projected tokens: a pod
# created right after its namespace does not wait for a token Secret), and it
# reaches the kubelet by IP with a client certificate.
node_apiserver_flags() {
  NODE_APISERVER_FLAGS=(
    --advertise-address="$NODE_IP"
    --feature-gates=BoundServiceAccountTokenVolume=true
    --kubelet-client-certificate="$NODE_PKI/apiserver-kubelet-client.crt"
    --kubelet-client-key="$NODE_PKI/apiserver-kubelet-client.key"
    --kubelet-preferred-address-types=InternalIP
  )
}

# Whether the running API server was started with the node's flags.
node_apiserver_has_flags() {
  local pid
  pid=$(daemon_pid kube-apiserver) || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qx -- "--advertise-address=$NODE_IP"
}

node_write_configs() {
  cat >"$NODE_STATE/containerd/config.toml.tmp" <<EOF
# containerd of the wharf local node (written by xtask/scripts/lib-node.sh)
version = 2
root = "$NODE_STATE/containerd/root"
state = "$NODE_STATE/containerd/state"
oom_score = 0

[grpc]
  address = "$NODE_SOCK"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_STATE/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  # This machine may not lower oom_score_adj; without it every sandbox fails with
  # runc's "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_STATE/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    # hostess-agent writes <host>/hosts.toml here.
    config_path = "$NODE_CERTS_D"
EOF
  mv -f "$NODE_STATE/containerd/config.toml.tmp" "$NODE_STATE/containerd/config.toml"

  # containerd's CRI adds the loopback plugin by itself (it must be in bin_dir).
  cat >"$NODE_STATE/cni/net.d/10-wharf.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "wharf",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$NODE_POD_SUBNET", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$NODE_STATE/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}
EOF

  cat >"$NODE_STATE/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
cgroupDriver: cgroupfs
failSwapOn: false
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $NODE_PKI/ca.crt
authorization:
  mode: Webhook
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
volumePluginDir: $NODE_STATE/kubelet/volume-plugins
serializeImagePulls: false
# Imported images are never pulled again: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 200Mi
  nodefs.available: 1Gi
  imagefs.available: 1Gi
  nodefs.inodesFree: 1%
EOF
}

# ---- network: bridge, Service route, forwarding only between pods ----

node_network_up() {
  local saved=$NODE_STATE/sysctl.saved s
  # Saved once, before anything of ours changed them; `down` restores and deletes it.
  if [[ ! -f $saved ]]; then
    for s in "${NODE_SYSCTLS[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$saved.tmp"
    mv "$saved.tmp" "$saved"
  fi
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge || fail "ip link add $NODE_BRIDGE failed"
    touch "$NODE_STATE/bridge.created"
  elif [[ ! -f $NODE_STATE/bridge.created ]]; then
    fail "interface $NODE_BRIDGE exists but wharf did not create it; remove it or stop what uses it"
  fi
  ip addr show dev "$NODE_BRIDGE" | grep -q "inet $NODE_IP/24" \
    || ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE" || fail "ip addr add $NODE_IP/24 failed"
  ip link set "$NODE_BRIDGE" up
  # A Service IP that kube-proxy has not rewritten (yet) must stay here, never
  # take the default route. (A blackhole route would fire before kube-proxy's DNAT.)
  ip route replace "$NODE_SERVICE_CIDR" dev "$NODE_BRIDGE" || fail "ip route $NODE_SERVICE_CIDR failed"
  node_forward_rules
}

# The bridge plugin turns on net.ipv4.ip_forward; allow forwarding only from
# pod to pod, plus whatever was forwarded before (when ip_forward was already 1).
node_forward_rules() {
  local was
  was=$(awk -F= '$1 == "net.ipv4.ip_forward" { print $2 }' "$NODE_STATE/sysctl.saved")
  iptables -t mangle -N "$NODE_FORWARD_CHAIN" 2>/dev/null || iptables -t mangle -F "$NODE_FORWARD_CHAIN"
  if [[ $was == 1 ]]; then
    iptables -t mangle -A "$NODE_FORWARD_CHAIN" -i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -j DROP
    iptables -t mangle -A "$NODE_FORWARD_CHAIN" ! -i "$NODE_BRIDGE" -o "$NODE_BRIDGE" -j DROP
  else
    iptables -t mangle -A "$NODE_FORWARD_CHAIN" ! -i "$NODE_BRIDGE" -j DROP
    iptables -t mangle -A "$NODE_FORWARD_CHAIN" ! -o "$NODE_BRIDGE" -j DROP
  fi
  iptables -t mangle -C FORWARD -j "$NODE_FORWARD_CHAIN" 2>/dev/null \
    || iptables -t mangle -I FORWARD 1 -j "$NODE_FORWARD_CHAIN" \
    || fail "iptables: cannot install the $NODE_FORWARD_CHAIN rule"
}

# Removes the KUBE-* chains of our kubelet and kube-proxy and the CNI portmap
# chains (nothing else on this machine runs Kubernetes), and our own chain.
node_iptables_cleanup() {
  local table rule chain
  for table in filter nat mangle; do
    # rules of the built-in chains that jump to ours, then our chains
    while read -r rule; do
      # shellcheck disable=SC2086  # the rule is iptables-save words
      eval "iptables -t $table ${rule/-A /-D }" 2>/dev/null || true
    done < <(iptables -t "$table" -S 2>/dev/null \
      | grep -E -- "^-A (PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) .*-j (KUBE-|CNI-HOSTPORT-|CNI-DN-|$NODE_FORWARD_CHAIN)")
    for chain in $(iptables -t "$table" -S 2>/dev/null \
      | awk -v ours="$NODE_FORWARD_CHAIN" '$1 == "-N" && ($2 ~ /^(KUBE-|CNI-HOSTPORT-|CNI-DN-)/ || $2 == ours) { print $2 }'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null \
      | awk -v ours="$NODE_FORWARD_CHAIN" '$1 == "-N" && ($2 ~ /^(KUBE-|CNI-HOSTPORT-|CNI-DN-)/ || $2 == ours) { print $2 }'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

node_network_down() {
  node_iptables_cleanup
  if [[ -f $NODE_STATE/bridge.created ]]; then
    # the Service route goes with the interface
    ip link del "$NODE_BRIDGE" 2>/dev/null || true
    rm -f "$NODE_STATE/bridge.created"
    node_log "removed $NODE_BRIDGE and the $NODE_SERVICE_CIDR route"
  fi
  if [[ -f $NODE_STATE/sysctl.saved ]]; then
    local line
    while IFS= read -r line; do sysctl -q -w "$line" >/dev/null 2>&1 || true; done <"$NODE_STATE/sysctl.saved"
    rm -f "$NODE_STATE/sysctl.saved"
  fi
}

# ---- daemons ----

containerd_ready() { ctr --address "$NODE_SOCK" version >/dev/null 2>&1; }
kubelet_healthy() { [[ $(curl -s --max-time 3 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz" 2>/dev/null) == ok ]]; }
scheduler_healthy() { [[ $(curl -sk --max-time 3 "https://127.0.0.1:$SCHEDULER_PORT/healthz" 2>/dev/null) == ok ]]; }
proxy_healthy() { curl -sf --max-time 3 "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz" >/dev/null 2>&1; }
forwarder_up() { (exec 3<>"/dev/tcp/$NODE_IP/$APISERVER_PORT") 2>/dev/null; }
# Ready, and (after a kubelet start) reported by that kubelet, not left over from before.
NODE_READY_SINCE=
node_ready() {
  api_get "/api/v1/nodes/$NODE_NAME" 2>/dev/null | jq -e --arg since "$NODE_READY_SINCE" '
    .status.conditions[]? | select(.type == "Ready")
    | .status == "True" and (.lastHeartbeatTime >= $since)' >/dev/null 2>&1
}
pause_imported() {
  ctr --address "$NODE_SOCK" -n k8s.io images ls -q 2>/dev/null | grep -qx "$NODE_PAUSE_IMAGE"
}

# The daemons that talk to the API server follow its port; restart them if it moved
# (wharf-local-volumes reads it on every call).
node_restart_if_apiserver_moved() {
  local d
  [[ $(cat "$NODE_STATE/apiserver.port" 2>/dev/null) == "$APISERVER_PORT" ]] && return 0
  for d in kube-proxy kubelet kube-scheduler socat; do node_stop_daemon "$d"; done
  echo "$APISERVER_PORT" >"$NODE_STATE/apiserver.port"
}

# socat forks a child per connection (long watches): stop those with it.
node_stop_daemon() {
  local name=$1 pid child
  if [[ $name == socat ]] && pid=$(daemon_pid socat); then
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do kill -TERM "$child" 2>/dev/null || true; done
  fi
  stop_daemon "$name"
}

node_start() {
  local t0
  t0=$(now)
  node_restart_if_apiserver_moved
  if ! daemon_alive containerd; then
    node_start_containerd
  fi
  if ! pause_imported; then
    oci_import "$NODE_SOCK" "$NODE_PAUSE_ARCHIVE"
    node_log "imported $NODE_PAUSE_IMAGE"
  fi
  if ! daemon_alive socat; then
    start_daemon socat /usr/bin/socat \
      "TCP4-LISTEN:$APISERVER_PORT,bind=$NODE_IP,reuseaddr,fork" "TCP4:127.0.0.1:$APISERVER_PORT"
    wait_until 10 "the API server forwarder on $NODE_IP:$APISERVER_PORT" "$(log_file socat)" socat forwarder_up
  fi
  if ! daemon_alive kube-scheduler; then
    start_daemon kube-scheduler "$K8S_BIN/kube-scheduler" \
      --kubeconfig="$KUBECONFIG_FILE" \
      --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
      --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --port=0 \
      --cert-dir="$NODE_STATE/scheduler-certs" --leader-elect=false
  fi
  if ! daemon_alive wharf-local-volumes; then
    # argv[0] names the daemon (daemon_pid recognises it by that).
    start_daemon wharf-local-volumes /bin/bash -c 'exec -a wharf-local-volumes /bin/bash "$@"' _ \
      "$SCRIPT_DIR/node-volumes.sh" "$WHARF_STATE" "$NODE_STATE/volumes"
  fi
  if ! daemon_alive kubelet; then
    NODE_READY_SINCE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    start_daemon kubelet "$K8S_BIN/kubelet" \
      --config="$NODE_STATE/kubelet/config.yaml" --kubeconfig="$KUBECONFIG_FILE" \
      --container-runtime=remote --container-runtime-endpoint="unix://$NODE_SOCK" \
      --runtime-request-timeout=10m \
      --pod-infra-container-image="$NODE_PAUSE_IMAGE" \
      --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
      --root-dir="$NODE_STATE/kubelet/root" --cert-dir="$NODE_STATE/kubelet/pki"
  fi
  if ! daemon_alive kube-proxy; then
    # --conntrack-*=0: leave the host's conntrack settings alone. NodePorts only on the bridge.
    start_daemon kube-proxy "$K8S_BIN/kube-proxy" \
      --kubeconfig="$KUBECONFIG_FILE" --proxy-mode=iptables \
      --hostname-override="$NODE_NAME" --cluster-cidr="$NODE_CLUSTER_CIDR" \
      --nodeport-addresses="$NODE_IP/32" \
      --healthz-bind-address="127.0.0.1:$PROXY_HEALTHZ_PORT" \
      --metrics-bind-address="127.0.0.1:$PROXY_METRICS_PORT" \
      --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 \
      --conntrack-tcp-timeout-close-wait=0
  fi
  wait_until 60 "kube-scheduler /healthz on 127.0.0.1:$SCHEDULER_PORT" \
    "$(log_file kube-scheduler)" kube-scheduler scheduler_healthy
  wait_until 60 "kubelet /healthz on 127.0.0.1:$KUBELET_HEALTHZ_PORT" "$(log_file kubelet)" kubelet kubelet_healthy
  wait_until 120 "node $NODE_NAME Ready" "$(log_file kubelet)" kubelet node_ready
  wait_until 60 "kube-proxy /healthz on 127.0.0.1:$PROXY_HEALTHZ_PORT" "$(log_file kube-proxy)" kube-proxy proxy_healthy
  node_log "node $NODE_NAME Ready in $(($(now) - t0))s (containerd $NODE_SOCK, certs.d $NODE_CERTS_D)"
}

# The node is up when every daemon is alive and the node is Ready.
node_running() {
  local d
  for d in "${NODE_DAEMONS[@]}"; do daemon_alive "$d" || return 1; done
  load_node_ports
  [[ $(cat "$NODE_STATE/apiserver.port" 2>/dev/null) == "$APISERVER_PORT" ]] && node_ready
}

# node_up: everything after the control plane runs with node_apiserver_flags.
node_up() {
  touch "$NODE_STATE/enabled"
  if node_running; then
    node_default_registry_host
    node_containerd_trusts_ca || { node_stop_daemon containerd; node_start_containerd; }
    node_log "already running: $NODE_NAME"
    return 0
  fi
  node_prepare_state
  FAIL_HOOK=node_stop   # a failed `up --node` leaves no half node behind
  node_network_up
  node_start
  FAIL_HOOK=
}

# Pids of the containerd shims that belong to our containerd (`-address SOCK`).
node_shims() {
  local shim
  for shim in $(pgrep -x containerd-shim-runc-v2 2>/dev/null || true); do
    tr '\0' '\n' <"/proc/$shim/cmdline" 2>/dev/null | grep -A1 -x -- -address | grep -qx -- "$NODE_SOCK" \
      && echo "$shim"
  done
  return 0
}

# Unmounts whatever is still mounted below the node's state (volumes of pods the
# kubelet did not tear down, sandbox shm), deepest first.
node_unmount_leftovers() {
  local m
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done < <(awk -v p="$NODE_STATE/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r)
}

# Stops the node: its pods (through the CRI, so their networks are torn down),
# its daemons, its iptables chains, bridge and route; restores kernel settings.
node_stop() {
  local d any=0 shim
  for d in "${NODE_DAEMONS[@]}"; do [[ -f $(pid_file "$d") ]] && any=1; done
  [[ -f $NODE_STATE/bridge.created || -f $NODE_STATE/sysctl.saved ]] && any=1
  ((any)) || return 0
  node_stop_daemon kubelet
  # Pods outlive containerd (their shims keep running): remove them through it,
  # starting it again for that if it died.
  if ! daemon_alive containerd && [[ -n $(node_shims) && -f $NODE_STATE/containerd/config.toml ]]; then
    node_start_containerd
  fi
  if daemon_alive containerd && [[ -x $NODE_CRI_CLEANUP ]]; then
    "$NODE_CRI_CLEANUP" "$NODE_SOCK" 2>&1 | sed 's/^/cluster: node: /' >&2 \
      || node_log "some pods could not be removed through the CRI (see above)"
  fi
  for d in "${NODE_DAEMONS[@]}"; do node_stop_daemon "$d"; done
  node_remove_registry_guards
  # Shims of our containerd outlive it if a pod could not be removed.
  for shim in $(node_shims); do
    node_log "killing leftover shim $shim"
    kill -KILL "$shim" 2>/dev/null || true
  done
  if [[ -x $K8S_BIN/kube-proxy ]]; then
    "$K8S_BIN/kube-proxy" --cleanup >>"$(log_file kube-proxy)" 2>&1 || true
  fi
  node_unmount_leftovers
  node_network_down
  rm -f "$NODE_STATE/apiserver.port"
  node_log "stopped"
}

node_status() {
  local d pid
  load_node_ports
  if node_running; then echo "node: $NODE_NAME Ready"; elif node_enabled; then echo "node: $NODE_NAME not ready"; else
    echo "node: not enabled (cluster.sh up --node)"; return 0; fi
  echo "  node IP:         $NODE_IP (bridge $NODE_BRIDGE, pods $NODE_POD_SUBNET, Services $NODE_SERVICE_CIDR → $NODE_BRIDGE)"
  echo "  containerd:      $NODE_SOCK (ctr --address $NODE_SOCK -n k8s.io images ls)"
  echo "  certs.d:         $NODE_CERTS_D (containerd registry.config_path)"
  echo "  pause image:     $NODE_PAUSE_IMAGE"
  echo "  volumes:         StorageClass wharf-local (default) in $NODE_STATE/volumes"
  [[ -n $KUBELET_PORT ]] && echo "  ports:           kubelet $NODE_IP:$KUBELET_PORT (healthz 127.0.0.1:$KUBELET_HEALTHZ_PORT)," \
    "kube-scheduler 127.0.0.1:$SCHEDULER_PORT, kube-proxy healthz 127.0.0.1:$PROXY_HEALTHZ_PORT," \
    "API server for pods $NODE_IP:$APISERVER_PORT"
  for d in "${NODE_DAEMONS[@]}"; do
    if pid=$(daemon_pid "$d"); then echo "  $d: running (pid $pid)"; else echo "  $d: not running"; fi
  done
}
