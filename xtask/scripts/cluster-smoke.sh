#!/usr/bin/env bash
# Smoke test of the cluster that `cluster.sh up` started: the API answers, the
# serviceaccount(-token), garbage-collector and namespace controllers really
# work. Leaves nothing behind (its objects live in a namespace it deletes).
# Prints "N passed, N failed"; exits non-zero on any failure.
#   KUBECTL=/path/to/kubectl  (default: kubectl on PATH, else the cached build)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib-common.sh
. "$SCRIPT_DIR/lib-common.sh"

KUBECTL=${KUBECTL:-$(command -v kubectl || echo "$K8S_BIN/kubectl")}
[[ -x $KUBECTL ]] || fail "no kubectl (build one: $SCRIPT_DIR/cluster.sh build cmd/kubectl)"
eval "$("$SCRIPT_DIR/cluster.sh" env)"
export KUBECONFIG

passed=0 failed=0
k() { "$KUBECTL" "$@" 2>&1; }
check() {  # check NAME CMD...: one test case
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1)); echo "ok   - $name"
  else
    failed=$((failed + 1)); echo "FAIL - $name"
  fi
}
# eventually TIMEOUT CMD...: CMD succeeds within TIMEOUT seconds
eventually() {
  local deadline=$(( $(now) + $1 ))
  shift
  until "$@" >/dev/null 2>&1; do (( $(now) < deadline )) || return 1; sleep 1; done
}
absent() { ! "$KUBECTL" get "$@" >/dev/null 2>&1; }

NS=wharf-smoke-$$-$RANDOM

system_namespaces() {
  local out
  out=$(k get ns -o name) || return 1
  for ns in default kube-system kube-public kube-node-lease; do
    grep -qx "namespace/$ns" <<<"$out" || { echo "missing namespace $ns"; return 1; }
  done
}
check "system namespaces exist" system_namespaces
check "create namespace $NS" k create namespace "$NS"
check "ServiceAccount default appears in $NS" eventually 60 k -n "$NS" get serviceaccount default
sa_token() { [[ -n $(k -n "$NS" get serviceaccount default -o jsonpath='{.secrets[0].name}') ]]; }
check "ServiceAccount default gets a token secret" eventually 60 sa_token

gc_child() {
  local uid
  k -n "$NS" create configmap owner --from-literal=a=b >/dev/null || return 1
  uid=$(k -n "$NS" get configmap owner -o jsonpath='{.metadata.uid}') || return 1
  k -n "$NS" apply -f - >/dev/null <<EOF || return 1
apiVersion: v1
kind: ConfigMap
metadata:
  name: child
  ownerReferences:
  - apiVersion: v1
    kind: ConfigMap
    name: owner
    uid: $uid
data: {c: d}
EOF
  k -n "$NS" get configmap child >/dev/null || return 1
  k -n "$NS" delete configmap owner --wait=false >/dev/null || return 1
  eventually 60 absent -n "$NS" configmap child
}
check "garbage collector deletes the child of a deleted owner" gc_child

check "delete namespace $NS" k delete namespace "$NS" --wait=false
check "namespace $NS disappears" eventually 120 absent namespace "$NS"

echo "$passed passed, $failed failed"
((failed == 0))
