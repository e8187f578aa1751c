# shellcheck shell=bash
# Shared helpers for the xtask shell scripts. Source it; it defines functions
# and path variables only and runs nothing.

# shellcheck disable=SC2034  # used by the scripts that source this file
# Kubernetes version built from Debian's `kubernetes` source package
# (1.20.5+really1.20.2); every cached artefact is keyed by it.
WHARF_K8S_VERSION=v1.20.2

WHARF_CACHE_ROOT=${WHARF_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf}
K8S_CACHE=$WHARF_CACHE_ROOT/kubernetes-$WHARF_K8S_VERSION
K8S_BIN=$K8S_CACHE/bin
K8S_SRC=$K8S_CACHE/src
WHARF_STATE=${WHARF_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/wharf/cluster}

# Progress goes to stderr so that stdout stays usable (`eval "$(cluster.sh env)"`).
log() { printf 'cluster: %s\n' "$*" >&2; }

# Hook run by fail() before exiting (cluster.sh sets it to stop half-started daemons).
FAIL_HOOK=
# fail WHAT [LOGFILE]: the one way a step reports failure.
fail() {
  local what=$1 logf=${2:-}
  if [[ -n $logf ]]; then
    printf 'error: %s; see %s\n' "$what" "$logf" >&2
    if [[ -s $logf ]]; then tail -n 20 "$logf" | sed 's/^/  | /' >&2; fi
  else
    printf 'error: %s\n' "$what" >&2
  fi
  if [[ -n $FAIL_HOOK ]]; then
    local hook=$FAIL_HOOK
    FAIL_HOOK=
    "$hook" || true
  fi
  exit 1
}

# Seconds since the epoch, for timings in messages.
now() { date +%s; }

python_bin() {
  # /usr/bin/python3 first: a pyenv shim may be absent or point elsewhere in CI.
  if [[ -x /usr/bin/python3 ]]; then echo /usr/bin/python3; else command -v python3; fi
}

# pick_ports PREF...: print one free 127.0.0.1 TCP port per argument. A non-zero
# preference is kept when it is still free (stable ports across restarts), else
# the kernel picks one. All sockets are held open together so that two answers
# can never be the same port. SO_REUSEADDR mirrors how Go and etcd listen, so a
# port whose old connections linger in TIME_WAIT still counts as free.
pick_ports() {
  "$(python_bin)" - "$@" <<'EOF'
import socket, sys
held, out = [], []
for pref in (int(a or 0) for a in sys.argv[1:]):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", pref))
    except OSError:
        s.bind(("127.0.0.1", 0))
    s.listen(1)  # a listening socket blocks the kernel from handing the port out again
    held.append(s)
    out.append(str(s.getsockname()[1]))
print(" ".join(out))
EOF
}

# wait_until TIMEOUT_S DESCRIPTION LOGFILE PIDNAME CMD...: poll CMD every 0.5 s;
# fail early if the daemon PIDNAME (when given) died meanwhile.
wait_until() {
  local timeout=$1 what=$2 logf=$3 name=$4
  shift 4
  local deadline=$(( $(now) + timeout ))
  until "$@"; do
    if [[ -n $name ]] && ! daemon_alive "$name"; then
      fail "$name exited while waiting for $what" "$logf"
    fi
    if (( $(now) >= deadline )); then
      fail "timed out after ${timeout}s waiting for $what" "$logf"
    fi
    sleep 0.5
  done
}

# ---- daemons: pid files under $WHARF_STATE/pids, logs under $WHARF_STATE/logs ----

pid_file() { echo "$WHARF_STATE/pids/$1.pid"; }
log_file() { echo "$WHARF_STATE/logs/$1.log"; }

# daemon_pid NAME: the recorded pid when that process is alive AND its argv[0]
# still names the binary NAME (a stale pid may have been reused after a reboot).
daemon_pid() {
  local name=$1 pf pid arg0
  pf=$(pid_file "$name")
  [[ -f $pf ]] || return 1
  pid=$(<"$pf")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  arg0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1) || return 1
  [[ ${arg0##*/} == "$name" ]] || return 1
  echo "$pid"
}
daemon_alive() { daemon_pid "$1" >/dev/null; }

# start_daemon NAME BINARY ARGS...: run detached in its own session, immune to
# SIGHUP, output to its log (previous log kept as .log.prev).
start_daemon() {
  local name=$1 bin=$2 logf pid
  shift 2
  logf=$(log_file "$name")
  [[ -f $logf ]] && mv -f "$logf" "$logf.prev"
  # setsid execs in place here (a non-interactive shell's background child is no
  # group leader), so $! is the daemon's own pid. fds 8/9 are our lock files:
  # close them, or the daemon would hold the locks for its whole life.
  setsid nohup "$bin" "$@" </dev/null >"$logf" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$(pid_file "$name")"
  # setsid and nohup exec in turn: wait until argv[0] is the daemon's, so that
  # daemon_alive (and `down`) recognise it from now on.
  local i
  for ((i = 0; i < 50; i++)); do daemon_alive "$name" && break; sleep 0.05; done
  daemon_alive "$name" || fail "$name did not start" "$logf"
  log "started $name (pid $pid), log $logf"
}

# stop_daemon NAME: SIGTERM, wait up to 10 s, then SIGKILL; only if the pid is
# still ours (see daemon_pid). Removes the pid file in every case.
stop_daemon() {
  local name=$1 pid i
  if pid=$(daemon_pid "$name"); then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      [[ -e /proc/$pid ]] || break
      # a zombie child of this very shell counts as gone
      [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
      sleep 0.1
    done
    if [[ -e /proc/$pid ]] && daemon_alive "$name"; then
      log "$name did not stop within 10s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
    fi
  elif [[ -f $(pid_file "$name") ]]; then
    log "removing stale pid file of $name"
  fi
  rm -f "$(pid_file "$name")"
}
