#!/usr/bin/env bash
# Services the test suite talks to. Today one: a stock redis-server (Debian package), the real
# peer of tests/reliability/test_redis.py (issue 7).
#
#   bash ci/services.sh start   install redis-server if missing (apt-get, as root), start it on a
#                               free loopback port with no persistence, print the port (only the
#                               port goes to stdout; progress goes to stderr)
#   bash ci/services.sh stop    stop it and remove its state directory (safe to run twice)
#
# .ci/run uses it as:
#   WSASEND_REDIS_PORT=$(bash ci/services.sh start) && export WSASEND_REDIS_PORT
#   trap 'bash ci/services.sh stop' EXIT
set -euo pipefail

STATE_DIR=${WSASEND_SERVICES_DIR:-/tmp/wsasend-services}
PIDFILE=$STATE_DIR/redis.pid

log() { echo "services: $*" >&2; }

install_redis() {
    command -v redis-server >/dev/null 2>&1 && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        log "redis-server is not installed and apt-get cannot run here"
        return 1
    fi
    log "installing redis-server (apt-get)"
    # Debian's postinst tries to start the service through systemd/invoke-rc.d; where there is no
    # init system that fails harmlessly, and we start our own instance below anyway.
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >&2
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

ping() {
    python3 - "$1" <<'PY'
import socket, sys
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
        s.sendall(b"PING\r\n")
        sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}

start() {
    install_redis
    stop_quiet
    mkdir -p "$STATE_DIR"
    local port
    port=$(free_port)
    # No persistence: no RDB snapshots (--save ''), no AOF; bound to loopback only.
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
        --pidfile "$PIDFILE" --logfile "$STATE_DIR/redis.log" --dir "$STATE_DIR" >&2
    for _ in $(seq 100); do
        if ping "$port"; then
            log "redis-server $(redis-server --version | awk '{print $3}') on 127.0.0.1:$port"
            echo "$port"
            return 0
        fi
        sleep 0.1
    done
    log "redis-server did not answer on port $port"; cat "$STATE_DIR/redis.log" >&2 || true
    return 1
}

stop_quiet() {
    [ -f "$PIDFILE" ] || return 0
    local pid
    pid=$(cat "$PIDFILE")
    # Only our redis-server: a stale pidfile must not kill whatever reuses the pid.
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = redis-server ] && kill "$pid" 2>/dev/null; then
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$STATE_DIR"
}

case "${1:-}" in
    start) start ;;
    stop) stop_quiet; log "stopped" ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
