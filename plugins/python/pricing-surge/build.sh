#!/usr/bin/env bash
# Builds the Python pricing-surge strategy into a WebAssembly component that imports nothing.
#
#   pip install componentize-py==0.25.1
#   plugins/python/pricing-surge/build.sh [OUT.wasm]     # default: plugins/python/pricing-surge/pricing-surge.wasm
#
# `--stub-wasi` replaces every WASI import with a trapping stub, so the component loads into the
# host's empty linker like the Rust policies (without it, it would import 25 WASI interfaces).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
wit="$here/../../wit"
out="${1:-$here/pricing-surge.wasm}"

command -v componentize-py >/dev/null \
    || { echo "componentize-py not found: pip install componentize-py==0.25.1" >&2; exit 1; }
version="$(componentize-py --version | awk '{print $2}')"
[ "$version" = "0.25.1" ] || echo "warning: built and tested with componentize-py 0.25.1, found $version" >&2

tmp="$(dirname "$out")/.$(basename "$out").tmp"
componentize-py -d "$wit" -w pricing-policy componentize --stub-wasi -p "$here" -o "$tmp" app
if command -v wasm-tools >/dev/null; then
    imports="$(wasm-tools component wit "$tmp" | grep -c '^ *import ' || true)"
    if [ "$imports" != "0" ]; then
        echo "pricing-surge: the component imports something; the host grants nothing" >&2
        rm -f "$tmp"
        exit 1
    fi
fi
# Rename into place so a running service's watcher never sees a half-written module.
mv "$tmp" "$out"
echo "built $out ($(wc -c <"$out") bytes)"
