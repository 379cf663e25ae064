#!/usr/bin/env bash
# Totals the tests that skipped for lack of models or ../shared data (abis_testkit writes one
# "test<TAB>what is missing" line per skip into the file given), so a skip is never silent.
set -euo pipefail
log="${1:?usage: skip-summary.sh SKIP_LOG}"
if [[ ! -s $log ]]; then
  echo "make test: no test skipped"
  exit 0
fi
n=$(wc -l <"$log")
echo "make test: $n test(s) SKIPPED for missing prerequisites (ABIS_REQUIRE_DATA=1 makes them fail):"
cut -f2 "$log" | sort | uniq -c | sort -rn | sed 's/^/  /'
echo "  tests: $(cut -f1 "$log" | sort -u | tr '\n' ' ')"
