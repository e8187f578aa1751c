# shellcheck shell=bash
# Container images without Docker, in shell: an OCI image archive (oci-layout,
# index.json, blobs) from a root filesystem directory, written deterministically
# (same input tree → same bytes), and importing archives into the local node's
# containerd. `cargo xtask images` (xtask/src/images.rs) writes the wharf images
# the same way in Rust; this one is for what the node itself needs (the pause
# image) before any cargo build. Needs lib-common.sh sourced first.

# tar of a directory, byte-identical on every run: sorted names, fixed times and
# owners, no atime/ctime PAX records.
deterministic_tar() {
  local dir=$1
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$dir" -cf - .
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# oci_write_archive ROOTFS REF OUT CONFIG_JSON: one-layer image of ROOTFS named REF
# (e.g. docker.io/wharf/pause:3.4) written to OUT. CONFIG_JSON is the image
# config's "config" object, e.g. '{"Entrypoint":["/pause"],"User":"65535"}'.
oci_write_archive() {
  local rootfs=$1 ref=$2 out=$3 config=$4 work diff_id layer_digest cfg_digest man_digest
  work=$(mktemp -d)
  mkdir -p "$work/layout/blobs/sha256"
  deterministic_tar "$rootfs" >"$work/layer.tar"
  diff_id=$(sha256_of "$work/layer.tar")
  gzip -n -9 <"$work/layer.tar" >"$work/layer.tar.gz"
  layer_digest=$(sha256_of "$work/layer.tar.gz")
  mv "$work/layer.tar.gz" "$work/layout/blobs/sha256/$layer_digest"
  jq -cn --argjson config "$config" --arg diff "sha256:$diff_id" '{
      architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z", config: $config,
      rootfs: {type: "layers", diff_ids: [$diff]},
      history: [{created: "1970-01-01T00:00:00Z", created_by: "wharf xtask/scripts/lib-images.sh"}]
    }' | tr -d '\n' >"$work/config.json"
  cfg_digest=$(sha256_of "$work/config.json")
  mv "$work/config.json" "$work/layout/blobs/sha256/$cfg_digest"
  jq -cn --arg cd "sha256:$cfg_digest" --argjson cs "$(stat -c %s "$work/layout/blobs/sha256/$cfg_digest")" \
    --arg ld "sha256:$layer_digest" --argjson ls "$(stat -c %s "$work/layout/blobs/sha256/$layer_digest")" '{
      schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
      layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ld, size: $ls}]
    }' | tr -d '\n' >"$work/manifest.json"
  man_digest=$(sha256_of "$work/manifest.json")
  mv "$work/manifest.json" "$work/layout/blobs/sha256/$man_digest"
  jq -cn --arg md "sha256:$man_digest" --argjson ms "$(stat -c %s "$work/layout/blobs/sha256/$man_digest")" \
    --arg ref "$ref" '{
      schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md, size: $ms,
        platform: {architecture: "amd64", os: "linux"},
        annotations: {"io.containerd.image.name": $ref, "org.opencontainers.image.ref.name": $ref}}]
    }' | tr -d '\n' >"$work/layout/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
  mkdir -p "$(dirname "$out")"
  deterministic_tar "$work/layout" >"$out.tmp"
  mv -f "$out.tmp" "$out"
  rm -rf "$work"
}

# oci_import SOCKET ARCHIVE...: load archives into containerd's CRI namespace (k8s.io),
# where the kubelet finds them by name.
oci_import() {
  local sock=$1 archive
  shift
  for archive in "$@"; do
    ctr --address "$sock" -n k8s.io images import "$archive" >/dev/null \
      || fail "ctr images import $archive into $sock failed"
  done
}
