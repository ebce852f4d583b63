#!/usr/bin/env bash
# cachectl push/pull throughput on loopback against nginx (WebDAV PUT), and the
# bytes that travel when the other side already holds 80% of the corpus.
#
#   bash bench/remote.sh [--small] [--jobs N] [--work-dir DIR] [--seed N]
#
# The corpus is bench/cachebench.py's (the same as bench/run.sh's). nginx runs
# in the foreground with its own prefix under the work dir on a free port, and
# is stopped on exit. Page cache is warm: this measures cachectl and HTTP, not
# the disk.
set -euo pipefail
export LC_ALL=C
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
CACHECTL=${CACHECTL_BIN:-$REPO/build/tools/cachectl}
WORK=${CACHEFS_BENCH_DIR:-/var/tmp/cachefs-bench}/remote
SMALL=0 JOBS=8 SEED=42
while [ $# -gt 0 ]; do
  case "$1" in
    --small) SMALL=1; shift ;;
    --jobs) JOBS=$2; shift 2 ;;
    --work-dir) WORK=$2/remote; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "remote.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
[ -x "$CACHECTL" ] || { echo "remote.sh: no cachectl at $CACHECTL (ninja -C build cachectl)" >&2; exit 2; }
command -v nginx >/dev/null || { echo "remote.sh: nginx missing (scripts/install-deps.sh)" >&2; exit 2; }

corpus_dir=$WORK/corpus-$SEED-$SMALL
if [ ! -d "$corpus_dir/src/corpus" ]; then
  rm -rf "$corpus_dir"
  python3 "$BENCH_DIR/cachebench.py" gen --out "$corpus_dir" --seed "$SEED" --seq-mib 1 \
    $([ "$SMALL" = 1 ] && echo --small) >/dev/null
fi
CORPUS=$corpus_dir/src/corpus

run=$WORK/run
rm -rf "$run"
mkdir -p "$run/nginx/data" "$run/nginx/body"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
n=$run/nginx
cat > "$n/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
error_log $n/error.log;
pid $n/nginx.pid;
events { worker_connections 1024; }
http {
  log_format bytes '\$request_method \$uri \$status \$body_bytes_sent \$request_length';
  access_log $n/access.log bytes;
  client_body_temp_path $n/body; proxy_temp_path $n/body; fastcgi_temp_path $n/body;
  uwsgi_temp_path $n/body; scgi_temp_path $n/body;
  client_max_body_size 0;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:$port;
    root $n/data;
    location / { dav_methods PUT DELETE MKCOL; create_full_put_path on; }
  }
}
CONF
nginx -p "$n" -c "$n/nginx.conf" -e "$n/error.log" &
NGINX_PID=$!
trap 'kill $NGINX_PID 2>/dev/null; wait $NGINX_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.05
done
URL=http://127.0.0.1:$port

# Bytes of 2xx responses (GET) or request bodies (PUT, approximately: request length) in the log.
served() { awk -v m="$1" '$1==m && $3 ~ /^2/ && $2 ~ /\/objects\// {s+=$4} END {print s+0}' "$n/access.log"; }
received() { awk '$1=="PUT" && $3 ~ /^2/ && $2 ~ /\/objects\// {s+=$5} END {print s+0}' "$n/access.log"; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[1]):.2f}')" "$1"; }
mbps() { python3 -c "import sys; b,s=float(sys.argv[1]),float(sys.argv[2]); print(f'{b/s/1048576:.0f}')" "$1" "$2"; }

files=$(find "$CORPUS" -type f | wc -l)
bytes=$(find "$CORPUS" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
echo "corpus: $files files, $((bytes / 1048576)) MiB ($CORPUS); -j $JOBS; nginx on 127.0.0.1:$port"

# 1. Push to an empty remote, pull into an empty cache.
: > "$n/access.log"
push=$("$CACHECTL" push "$CORPUS" "$URL/full" -j "$JOBS" --json)
push_s=$(field elapsed_seconds <<<"$push"); push_b=$(field bytes_transferred <<<"$push")
: > "$n/access.log"
pull=$("$CACHECTL" pull "$URL/full" "$run/dest-empty" -j "$JOBS" --json)
pull_s=$(field elapsed_seconds <<<"$pull"); pull_b=$(field bytes_transferred <<<"$pull")
pull_served=$(served GET)

# 2. 80% already there: every fifth file left out of a first push / pull.
sub=$run/subset
mkdir -p "$sub"
(cd "$CORPUS" && find . -type f | sort | awk 'NR % 5 != 0' | cpio -pdm --quiet "$sub")
"$CACHECTL" push "$sub" "$URL/eighty" -j "$JOBS" --json --ref subset >/dev/null
: > "$n/access.log"
push80=$("$CACHECTL" push "$CORPUS" "$URL/eighty" -j "$JOBS" --json)
push80_s=$(field elapsed_seconds <<<"$push80"); push80_b=$(field bytes_transferred <<<"$push80")
push80_skip=$(field bytes_skipped <<<"$push80"); push80_recv=$(received)
"$CACHECTL" pull "$URL/eighty" "$run/dest-80" -j "$JOBS" --ref subset --json >/dev/null
: > "$n/access.log"
pull80=$("$CACHECTL" pull "$URL/eighty" "$run/dest-80" -j "$JOBS" --json)
pull80_s=$(field elapsed_seconds <<<"$pull80"); pull80_b=$(field bytes_transferred <<<"$pull80")
pull80_inplace=$(field files_in_place <<<"$pull80"); pull80_served=$(served GET)
diff -r -q --exclude=.cachefs "$CORPUS" "$run/dest-80" >/dev/null && same=identical || same=DIFFERENT

cat <<TABLE

| case | time | transferred (cachectl --json) | nginx log | throughput |
|---|---|---|---|---|
| push, empty remote | $(secs "$push_s") s | $push_b B | | $(mbps "$push_b" "$push_s") MiB/s |
| pull, empty cache | $(secs "$pull_s") s | $pull_b B | $pull_served B served | $(mbps "$pull_b" "$pull_s") MiB/s |
| push, remote holds 80% | $(secs "$push80_s") s | $push80_b B (skipped $push80_skip B) | $push80_recv B received | |
| pull, cache holds 80% | $(secs "$pull80_s") s | $pull80_b B ($pull80_inplace files in place) | $pull80_served B served | |

corpus $bytes B in $files files; pulled trees: $same
TABLE
