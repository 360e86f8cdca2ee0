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
