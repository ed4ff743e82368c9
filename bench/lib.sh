# bench/lib.sh: helpers the bench scripts share. Source it after `cd` to the
# repository root; it sets $tmp (removed on exit) and stops what it started.
tmp=$(mktemp -d)
pids=()
# Stops every process the script started, both those in $pids and any other
# background job (a gateway under test, say), waiting at most 10s before
# SIGKILL: a bare `wait` would hang on a job nobody stopped.
bench_cleanup() {
    trap - EXIT INT TERM
    local all=("${pids[@]}") p
    # shellcheck disable=SC2207
    all+=($(jobs -pr))
    [ -f "$tmp/nginx.pid" ] && all+=("$(cat "$tmp/nginx.pid")")
    for p in "${all[@]}"; do kill "$p" 2>/dev/null || true; done
    for _ in $(seq 100); do
        local alive=0
        for p in "${all[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in "${all[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap bench_cleanup EXIT
trap 'bench_cleanup; exit 130' INT
trap 'bench_cleanup; exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_log FILE REGEX SECONDS [PID]: until a line of FILE matches (prints it);
# fails when the time is up or process PID has exited
wait_log() {
    local i line
    for i in $(seq $(($3 * 10))); do
        line=$(grep -Eo "$2" "$1" | tail -n 1 || true)
        [ -n "$line" ] && { echo "$line"; return 0; }
        [ -n "${4:-}" ] && ! kill -0 "$4" 2>/dev/null && return 1
        sleep 0.1
    done
    return 1
}
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }

# start_redis PORT: a private redis-server on loopback (pid in $pids)
start_redis() {
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
    pids+=($!)
}

# start_nginx_upstream PORT [CPU]: a plain-HTTP nginx answering 200 "ok"
start_nginx_upstream() {
    command -v nginx >/dev/null || apt-get install -y -qq nginx >/dev/null
    cat >"$tmp/nginx.conf" <<NGX
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$1; keepalive_requests 1000000; location / { return 200 "ok"; } } }
NGX
    taskset -c "${2:-1}" nginx -c "$tmp/nginx.conf" -p "$tmp"
}

# server CPU ticks (utime + stime) of a process
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
