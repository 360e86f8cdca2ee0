# Sourced by the bench scripts: the pieces they share.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
median() { python3 -c 'import sys, statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.1f}")' "$@"; }

# start_demo_server ENGINE DATABASE PORT — `continuum serve --demo` from $WORK, logging to
# $OUT/server-ENGINE.log; sets SERVER to the server's own pid (exec, so kill -9 reaches it)
start_demo_server() {
  (cd "$WORK" && CONTINUUM_LOG=warn CONTINUUM_ADMIN_PASSWORD="benchmark administrator passphrase" \
    exec "$BIN/continuum" serve --demo --listen "127.0.0.1:$3" --database "$2" >>"$OUT/server-$1.log" 2>&1) &
  SERVER=$!
  for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$3/readyz" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "the server did not start" >&2; return 1
}

# demo_token PORT — an access token for the demo API client the server wrote into $WORK
demo_token() {
  local creds=""
  for f in "$WORK/demo-client" "$WORK/continuum-demo-client"; do [ -f "$f" ] && creds=$f; done
  curl -s -u "$(cat "$creds")" -d grant_type=client_credentials "http://127.0.0.1:$1/auth/token" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}

# wrk_line RAW_WRK_OUTPUT → "req/s p50_ms p99_ms non2xx"
wrk_line() {
  python3 - "$1" <<'PY'
import re, sys
t = sys.argv[1]
def ms(label):
    m = re.search(r"^\s*" + label + r"%\s+([\d.]+)(us|ms|s)", t, re.M)
    v = float(m.group(1)); u = m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{rps:.1f} {ms('50'):.2f} {ms('99'):.2f} {non2xx.group(1) if non2xx else 0}")
PY
}
