# Sourced by bench/*.sh: the local @connections sink (nginx), tool installs
# (pinned upstream versions; the Debian revision floats), helpers.

NGINX_VERSION="1.22.1-9+deb12u*"
WRK_VERSION="4.1.0-3*"

ensure_tools() {
  if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
    echo "==> installing nginx-light=$NGINX_VERSION and wrk=$WRK_VERSION from Debian"
    apt-get update -qq >/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "nginx-light=$NGINX_VERSION" "wrk=$WRK_VERSION" >/dev/null
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_sink DIR MODE: nginx on a free port answering 200 to every request,
# logging "$msec $uri" (MODE=plain) or also the request body (MODE=body).
# Sets SINK_PORT.
start_sink() {
  local dir=$1 mode=$2 location
  SINK_PORT=$(free_port)
  if [ "$mode" = body ]; then
    location='location / { echo_read_request_body; echo ""; }'
    fmt="'\$msec \$uri \$request_body'"
  else
    location='location / { return 200; }'
    fmt="'\$msec \$uri'"
  fi
  cat >"$dir/nginx.conf" <<NGINX
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;
events { worker_connections 4096; }
http {
  log_format sink $fmt;
  access_log $dir/access.log sink;
  keepalive_requests 1000000;
  client_body_buffer_size 256k;
  server { listen 127.0.0.1:$SINK_PORT; $location }
}
NGINX
  : >"$dir/access.log"
  nginx -c "$dir/nginx.conf"
}

stop_sink() {
  local dir=$1
  [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
}

# wait_lines FILE N SECONDS PID: until FILE has N lines (fails if PID dies).
wait_lines() {
  local file=$1 n=$2 secs=$3 pid=$4 i
  for i in $(seq 1 $((secs * 10))); do
    [ "$(wc -l <"$file")" -ge "$n" ] && return 0
    kill -0 "$pid" 2>/dev/null || { echo "process $pid died" >&2; return 1; }
    sleep 0.1
  done
  echo "only $(wc -l <"$file") of $n lines after ${secs}s" >&2
  return 1
}

# histogram_quantile METRICS_FILE NAME Q: a Prometheus histogram's quantile
# (linear inside the bucket, as PromQL's histogram_quantile).
histogram_quantile() {
  python3 - "$1" "$2" "$3" <<'PY'
import sys, re
path, name, q = sys.argv[1], sys.argv[2], float(sys.argv[3])
buckets = []
for line in open(path):
    m = re.match(r'%s_bucket\{le="([^"]+)"\} (\S+)' % re.escape(name), line)
    if m:
        le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
        buckets.append((le, float(m.group(2))))
buckets.sort()
total = buckets[-1][1] if buckets else 0
if total == 0:
    print("nan"); sys.exit()
rank, prev_le, prev_c = q * total, 0.0, 0.0
for le, c in buckets:
    if c >= rank:
        if le == float("inf"):
            print(prev_le); break
        print(prev_le + (le - prev_le) * (rank - prev_c) / max(c - prev_c, 1e-9)); break
    prev_le, prev_c = le, c
PY
}

machine() {
  echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
}

# record_rows FILE MARKER: inserts FILE's table rows into docs/benchmarks.md
# before the `<!-- MARKER -->` comment of their table.
record_rows() {
  python3 - "$1" "$2" <<'PY'
import sys
rows, marker = open(sys.argv[1]).read(), "<!-- %s -->" % sys.argv[2]
p = "docs/benchmarks.md"
s = open(p).read()
assert marker in s, "no %s in %s" % (marker, p)
open(p, "w").write(s.replace(marker, rows.rstrip("\n") + "\n" + marker))
PY
  echo "recorded in docs/benchmarks.md"
}
