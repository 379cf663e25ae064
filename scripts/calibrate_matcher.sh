#!/usr/bin/env bash
# Refits the fingerprint matcher's score calibration (engine/src/matcher/calibration.rs).
#
# Extracts the FVC2002 DB1..DB4 B sets once (templates cached in /tmp/abis-fvc-templates, or
# $ABIS_FVC_CACHE), compares every pair of images from two different sets (38,400 guaranteed
# impostors) and prints the `TABLE` constant to paste into calibration.rs; then prints the
# per-set table and the held-out check on within-set impostors.
# Needs `make setup` (models) and ../shared/data (or $ABIS_SHARED_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -p abis-engine --example fvc_eval -- --calibrate
echo
echo "Paste the TABLE above into engine/src/matcher/calibration.rs, then check:"
echo "  cargo run --release -p abis-engine --example fvc_eval"
