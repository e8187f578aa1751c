#!/usr/bin/env bash
# Local volumes for the local node (started by `cluster.sh up --node` as the daemon
# wharf-local-volumes): a PersistentVolume for every Pending claim of the default
# StorageClass `wharf-local` (StatefulSet volumeClaimTemplates, ImageRegistry
# PVCs), backed by a world-writable directory under the node's state, so pods of
# any user can write (fsGroup does not apply to hostPath volumes). A released
# volume's directory and PersistentVolume are deleted. Polls every 2 s.
#
#   node-volumes.sh STATE_DIR VOLUMES_DIR
set -uo pipefail

STATE_DIR=$1
VOLUMES_DIR=$2
CLASS=wharf-local
PROVISIONER=wharf.dev/local-volume

log() { printf '%s %s\n' "$(date -u +%FT%TZ)" "$*"; }

# api METHOD PATH [BODY]: the API server as admin; prints the body, fails on HTTP >= 400.
api() {
  local port token
  port=$(sed -n 's/^APISERVER_PORT=//p' "$STATE_DIR/ports.env")
  token=$(cut -d, -f1 "$STATE_DIR/tokens.csv")
  curl -sSk --fail-with-body --max-time 10 -X "$1" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' ${3:+--data "$3"} "https://127.0.0.1:$port$2"
}

ensure_storage_class() {
  api GET "/apis/storage.k8s.io/v1/storageclasses/$CLASS" >/dev/null 2>&1 && return 0
  api POST /apis/storage.k8s.io/v1/storageclasses "$(jq -cn --arg c "$CLASS" --arg p "$PROVISIONER" '{
    apiVersion: "storage.k8s.io/v1", kind: "StorageClass",
    metadata: {name: $c, annotations: {"storageclass.kubernetes.io/is-default-class": "true"}},
    provisioner: $p, reclaimPolicy: "Delete", volumeBindingMode: "Immediate"}')" >/dev/null \
    && log "created the default StorageClass $CLASS"
}

provision() {
  local claim uid dir
  while IFS= read -r claim; do
    uid=$(jq -r .metadata.uid <<<"$claim")
    dir=$VOLUMES_DIR/$uid
    if ! { mkdir -p "$dir" && chmod 0777 "$dir"; }; then log "cannot create $dir"; continue; fi
    if api POST /api/v1/persistentvolumes "$(jq -c --arg dir "$dir" --arg c "$CLASS" --arg p "$PROVISIONER" '{
        apiVersion: "v1", kind: "PersistentVolume",
        metadata: {name: ("pvc-" + .metadata.uid), labels: {"wharf.dev/local-volume": "true"},
          annotations: {"pv.kubernetes.io/provisioned-by": $p}},
        spec: {capacity: {storage: .spec.resources.requests.storage}, accessModes: .spec.accessModes,
          persistentVolumeReclaimPolicy: "Delete", storageClassName: $c, volumeMode: "Filesystem",
          hostPath: {path: $dir, type: "Directory"},
          claimRef: {apiVersion: "v1", kind: "PersistentVolumeClaim", namespace: .metadata.namespace,
            name: .metadata.name, uid: .metadata.uid}}}' <<<"$claim")" >/dev/null; then
      log "provisioned $(jq -r '.metadata.namespace + "/" + .metadata.name' <<<"$claim") at $dir"
    fi
  done < <(api GET /api/v1/persistentvolumeclaims 2>/dev/null | jq -c --arg c "$CLASS" '.items[]?
      | select(.spec.storageClassName == $c and (.spec.volumeName // "") == ""
               and .status.phase == "Pending" and (.spec.volumeMode // "Filesystem") == "Filesystem")')
}

reclaim() {
  local name dir
  while read -r name dir; do
    # only directories this script created
    [[ $dir == "$VOLUMES_DIR"/* ]] && rm -rf -- "$dir"
    api DELETE "/api/v1/persistentvolumes/$name" >/dev/null && log "deleted $name ($dir)"
  done < <(api GET '/api/v1/persistentvolumes?labelSelector=wharf.dev%2Flocal-volume' 2>/dev/null \
    | jq -r '.items[]? | select(.status.phase == "Released" or .status.phase == "Failed")
      | .metadata.name + " " + .spec.hostPath.path')
}

trap 'log "stopping"; exit 0' TERM INT
mkdir -p "$VOLUMES_DIR"
log "serving StorageClass $CLASS from $VOLUMES_DIR"
while true; do
  ensure_storage_class
  provision
  reclaim
  sleep 2 &
  wait $!
done
