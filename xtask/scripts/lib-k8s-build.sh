# shellcheck shell=bash
# Debian packages and the Kubernetes build from Debian's `kubernetes` source
# package (see shared/local-cluster.md). Needs lib-common.sh sourced first.

# Everything the control plane and its build need. dpkg-dev: `apt-get source`.
WHARF_APT_PACKAGES=(etcd-server golang-1.19-go rsync jq golang-github-modern-go-reflect2-dev
  openssl curl dpkg-dev make)
GO_ROOT_BIN=/usr/lib/go-1.19/bin
APT_LOG=$WHARF_CACHE_ROOT/apt.log
DEBSRC_FILE=/etc/apt/sources.list.d/wharf-deb-src.sources

apt_get() { DEBIAN_FRONTEND=noninteractive apt-get "$@" >>"$APT_LOG" 2>&1; }

# Install only what is missing, so a warm run never touches apt.
ensure_packages() {
  local p missing=()
  for p in "${WHARF_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  mkdir -p "$WHARF_CACHE_ROOT"
  log "installing Debian packages: ${missing[*]}"
  ensure_debsrc   # so that this one update also fetches the source lists
  apt_get update || fail "apt-get update failed" "$APT_LOG"
  DEBSRC_CHANGED=0
  apt_get install -y --no-install-recommends "${missing[@]}" \
    || fail "apt-get install ${missing[*]} failed" "$APT_LOG"
}

# A deb-src twin of every `Types: deb` stanza of debian.sources (same URIs,
# Suites, Components, Signed-By), so `apt-get source` finds the package on the
# mirror the machine already uses. Sets DEBSRC_CHANGED=1 when it (re)wrote the file.
DEBSRC_CHANGED=0
ensure_debsrc() {
  local src=/etc/apt/sources.list.d/debian.sources want
  [[ -f $src ]] || fail "no $src to derive a deb-src entry from"
  want=$(awk 'BEGIN { RS = ""; FS = "\n" }
    {
      deb = 0; body = ""
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^Types:/ && $i ~ /[: ]deb( |$)/) deb = 1
        if ($i ~ /^(URIs|Suites|Components|Signed-By):/) body = body $i "\n"
      }
      if (deb) printf "%sTypes: deb-src\n%s", (n++ ? "\n" : ""), body
    }' "$src")
  [[ -n $want ]] || fail "no 'Types: deb' entry in $src"
  want="# written by wharf xtask/scripts/cluster.sh: sources for 'apt-get source kubernetes'
$want"
  if [[ ! -f $DEBSRC_FILE ]] || [[ $(<"$DEBSRC_FILE") != "$want" ]]; then
    printf '%s\n' "$want" >"$DEBSRC_FILE"
    DEBSRC_CHANGED=1
  fi
}

# Download and unpack the source once into $K8S_SRC, with the reflect2 fix.
# Unpacked into a temp dir and renamed at the end: a half tree never looks ready.
ensure_k8s_source() {
  [[ -f $K8S_SRC/.wharf-prepared ]] && return 0
  local dl=$K8S_CACHE/download tmp=$K8S_CACHE/src.tmp orig reflect=/usr/share/gocode/src/github.com/modern-go/reflect2
  local blog=$K8S_CACHE/source.log
  mkdir -p "$dl"
  : >"$blog"
  orig=$(compgen -G "$dl/kubernetes_*${WHARF_K8S_VERSION#v}.orig.tar.*" | head -n 1) || true
  if [[ -z $orig ]]; then
    ensure_debsrc
    if ((DEBSRC_CHANGED)) || ! apt-cache showsrc kubernetes 2>/dev/null | grep '^Package: kubernetes' >/dev/null; then
      log "apt-get update (deb-src lists)"
      DEBIAN_FRONTEND=noninteractive apt-get update >>"$blog" 2>&1 || fail "apt-get update failed" "$blog"
    fi
    log "downloading Debian's kubernetes source package"
    (cd "$dl" && apt-get source --download-only kubernetes) >>"$blog" 2>&1 \
      || fail "apt-get source --download-only kubernetes failed" "$blog"
    orig=$(compgen -G "$dl/kubernetes_*${WHARF_K8S_VERSION#v}.orig.tar.*" | head -n 1) \
      || fail "Debian's kubernetes source is not $WHARF_K8S_VERSION: $(ls "$dl")" "$blog"
  fi
  [[ -d $reflect ]] || fail "$reflect missing (package golang-github-modern-go-reflect2-dev)"
  log "unpacking $(basename "$orig")"
  rm -rf "$tmp" && mkdir -p "$tmp"
  tar -xf "$orig" -C "$tmp" --strip-components=1 >>"$blog" 2>&1 || fail "unpacking $orig failed" "$blog"
  [[ -f $tmp/Makefile && -d $tmp/vendor ]] || fail "unexpected layout in $orig" "$blog"
  # The vendored reflect2 v1.0.1 makes kube-apiserver panic (nil pointer in
  # json-iterator map encoding) when built with Go >= 1.18; 1.0.2 fixes it.
  rm -rf "$tmp/vendor/github.com/modern-go/reflect2"
  cp -rL "$reflect" "$tmp/vendor/github.com/modern-go/reflect2"
  rm -f "$tmp/vendor/github.com/modern-go/reflect2/go.mod"
  # GOPATH-mode build, as Debian builds it: k8s.io/kubernetes -> the tree itself.
  mkdir -p "$tmp/.go/src/k8s.io"
  ln -sfn ../../.. "$tmp/.go/src/k8s.io/kubernetes"
  touch "$tmp/.wharf-prepared"
  rm -rf "$K8S_SRC"
  mv "$tmp" "$K8S_SRC"
}

# build_k8s [--force] WHAT...: `make WHAT=...` for the cmd targets whose binary
# is not in $K8S_BIN yet (all of them with --force). Serialised by a lock.
build_k8s() {
  local force=0 t name missing=() blog=$K8S_CACHE/build.log t0 out
  [[ ${1:-} == --force ]] && { force=1; shift; }
  mkdir -p "$K8S_BIN"
  exec 8>"$K8S_CACHE/.build.lock"
  flock 8
  for t in "$@"; do
    name=${t%/}; name=${name##*/}
    if ((force)) || [[ ! -x $K8S_BIN/$name ]]; then missing+=("${t%/}"); fi
  done
  if ((${#missing[@]} == 0)); then exec 8>&-; return 0; fi
  ensure_k8s_source
  [[ -x $GO_ROOT_BIN/go ]] || fail "$GO_ROOT_BIN/go missing (package golang-1.19-go)"
  t0=$(now)
  log "building ${missing[*]} from $K8S_SRC (about 6-8 min on 2 cores from clean; log $blog)"
  (
    cd "$K8S_SRC"
    # GOPATH mode as Debian builds it (hack/lib/init.sh forces GO111MODULE=off
    # too; kube's build then uses its own GOPATH and GOCACHE under _output/).
    export PATH=$GO_ROOT_BIN:$PATH GOPATH=$K8S_SRC/.go GO111MODULE=off CGO_ENABLED=0 \
      KUBE_GIT_VERSION=$WHARF_K8S_VERSION KUBE_GIT_TREE_STATE=clean
    make WHAT="${missing[*]}"
  ) >"$blog" 2>&1 || fail "building ${missing[*]} failed" "$blog"
  out=$K8S_SRC/_output/bin   # kube's symlink to _output/local/bin/<os>/<arch>
  for t in "${missing[@]}"; do
    name=${t##*/}
    [[ -x $out/$name ]] || fail "make did not produce $out/$name" "$blog"
    # copy next to the target, then rename: the cache never holds a half binary
    cp "$out/$name" "$K8S_BIN/.$name.tmp"
    mv -f "$K8S_BIN/.$name.tmp" "$K8S_BIN/$name"
    rm -f "$out/$name"   # 50-120 MB each: do not keep two copies
  done
  log "built ${missing[*]} in $(($(now) - t0))s into $K8S_BIN"
  exec 8>&-
}
