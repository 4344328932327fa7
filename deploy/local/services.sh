#!/usr/bin/env bash
# The four services (and, unless SMTP_HOST is set, a local SMTP sink) as background processes.
# usage: services.sh start|stop|status [service...]   (services: contracts escrow billing notifications smtp)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/env.sh"
ROOT=$(cd "$HERE/../.." && pwd)
PY=$ROOT/.venv/bin/python TIMEOUT=${SERVICES_START_TIMEOUT:-120} STOP_TIMEOUT=${SERVICES_STOP_TIMEOUT:-30}

die() { echo "services: $*" >&2; exit 1; }
module() { if [[ $1 == smtp ]]; then echo notifications.smtp_sink; else echo "$1"; fi; }
pid_of() { cat "$RUN_DIR/$1.pid" 2>/dev/null; }
alive() { local s; s=$(sed -E 's/^.*\) //' "/proc/$1/stat" 2>/dev/null) && [[ ${s:0:1} != Z ]]; }
# the pid file's process, if it is still ours (pids get reused)
is_running() { local p; p=$(pid_of "$1") && alive "$p" &&
  tr '\0' ' ' <"/proc/$p/cmdline" | grep -q -- "-m $(module "$1") *$"; }

# Plain HTTP/1.0 over bash's /dev/tcp, so no curl is needed; a subshell, so fd 3 never leaks.
ready() (
  local port status
  if [[ $1 == smtp ]]; then (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_SINK_PORT") 2>/dev/null; return; fi
  port=$(http_port "$1")
  exec 2>/dev/null 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET /health/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  read -r -t 2 _ status _ <&3 || status=
  [[ $status == 200 ]]
)

launch() {
  local s=$1 log=$RUN_DIR/$1.log
  [[ -f $log ]] && mv -f "$log" "$log.1"
  (
    if [[ $s == smtp ]]; then export SMTP_HOST=127.0.0.1 SMTP_PORT=$SMTP_SINK_PORT; else service_env "$s"; fi
    cd "$ROOT"
    exec nohup "$PY" -m "$(module "$s")" >"$log" 2>&1 </dev/null
  ) &
  echo $! >"$RUN_DIR/$s.pid"
  echo "started $s (pid $!, log $log)"
}

start() {
  [[ -x $PY ]] || die "$PY missing: run 'make bootstrap'"
  mkdir -p "$RUN_DIR"
  local s pending=()
  for s in "$@"; do
    if is_running "$s"; then echo "$s already running (pid $(pid_of "$s"))"; else launch "$s"; fi
    pending+=("$s")
  done
  local deadline=$((SECONDS + TIMEOUT)) left
  while ((${#pending[@]})); do
    left=()
    for s in "${pending[@]}"; do
      if ! alive "$(pid_of "$s")"; then  # not is_running: a fresh child may not have exec'd python yet
        echo "--- $s died; tail of $RUN_DIR/$s.log:" >&2; tail -n 40 "$RUN_DIR/$s.log" >&2; die "$s exited"
      fi
      ready "$s" || left+=("$s")
    done
    pending=(${left[@]+"${left[@]}"})
    ((${#pending[@]})) || break
    if ((SECONDS >= deadline)); then
      for s in "${pending[@]}"; do echo "--- $s not ready; tail of $RUN_DIR/$s.log:" >&2; tail -n 40 "$RUN_DIR/$s.log" >&2; done
      die "not ready after ${TIMEOUT}s: ${pending[*]}"
    fi
    sleep 0.3
  done
  echo "ready: $*"
}

stop() {
  local s p pids=()
  for s in "$@"; do
    if is_running "$s"; then p=$(pid_of "$s"); kill -TERM "$p"; pids+=("$p"); echo "stopping $s (pid $p)"; fi
  done
  local deadline=$((SECONDS + STOP_TIMEOUT))
  for p in ${pids[@]+"${pids[@]}"}; do
    while alive "$p" && ((SECONDS < deadline)); do sleep 0.2; done
    if alive "$p"; then
      echo "pid $p ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL" >&2; kill -KILL "$p"
      while alive "$p"; do sleep 0.1; done
    fi
  done
  for s in "$@"; do rm -f "$RUN_DIR/$s.pid"; done
}

status() {
  local s rc=0
  for s in "$@"; do
    if ! is_running "$s"; then echo "$s stopped"; rc=3
    elif ready "$s"; then echo "$s running, ready (pid $(pid_of "$s"))"
    else echo "$s running, NOT ready (pid $(pid_of "$s"))"; fi
  done
  return $rc
}

cmd=${1:-}; shift || true
if (($#)); then names=("$@"); else
  names=("${SERVICES[@]}")
  # SMTP_HOST set: the caller's server is used (stop still ends a sink left by an earlier start)
  [[ -n ${SMTP_HOST:-} && $cmd != stop ]] || names=(smtp "${names[@]}")
fi
for s in "${names[@]}"; do [[ $s == smtp ]] || http_port "$s" >/dev/null || exit 2; done
case $cmd in
  start) start "${names[@]}" ;;
  stop) stop "${names[@]}" ;;
  status) status "${names[@]}" ;;
  *) echo "usage: $0 start|stop|status [service...]" >&2; exit 2 ;;
esac
