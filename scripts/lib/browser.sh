# shellcheck shell=bash
# The console's browser tests: Debian's chromium and the npm packages of tests/browser
# (playwright-core, axe-core), installed when missing, and a demo server to drive.

continuum_ensure_browser() {
  if ! command -v chromium >/dev/null 2>&1; then
    echo "installing Debian's chromium"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
  fi
  if ! command -v node >/dev/null 2>&1; then
    echo "installing Debian's nodejs and npm"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
  fi
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
}

# continuum_browser_flows BINARY DATABASE LABEL FLOWS: a fresh demo server on DATABASE
# ("sqlite" for a new file in a temporary directory, or a PostgreSQL URL; the server's working
# directory is that temporary one, where the demo's users are written), the flows run in
# Chromium, screenshots into target/screenshots/LABEL.
continuum_browser_flows() {
  local binary=$1 database=$2 label=$3 flows=$4 dir port log users pid
  dir=$(mktemp -d)
  if [ "$database" = sqlite ]; then database="sqlite://$dir/continuum.db"; fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
  log="$dir/server.log"
  (cd "$dir" && exec "$binary" serve --demo --listen "127.0.0.1:$port" --database "$database") >"$log" 2>&1 &
  pid=$!
  if ! python3 - "$port" <<'PY'; then
import sys, time, urllib.request
for _ in range(1800):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.2)
sys.exit("the demo server did not become ready")
PY
    tail -50 "$log" >&2; kill "$pid" 2>/dev/null; return 1
  fi
  users="$dir/demo-users"
  [ -f "$users" ] || users="$dir/continuum-demo-users"
  local rc=0
  CONTINUUM_URL="http://127.0.0.1:$port" CONTINUUM_DEMO_USERS="$users" \
    SCREENSHOTS="$ROOT/target/screenshots/$label" FLOWS="$flows" \
    node tests/browser/console.js || rc=$?
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  [ $rc -eq 0 ] || tail -50 "$log" >&2
  rm -rf "$dir"
  return $rc
}
