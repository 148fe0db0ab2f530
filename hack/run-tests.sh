#!/usr/bin/env bash
# The README's test command: lint, generated-file drift checks, then every test.
# pytest's exit code 5 (no tests collected) counts as a failure.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$root/.venv/bin:$PATH"
status=0
step() { echo; echo "== $*"; }

step "generated files match their sources (CRDs, API reference, chart CRDs and assets)"
python -m tessera_operator.crdgen --out crds --check || status=1
python -m tessera_operator.docgen --out docs/reference.md --check || status=1
python hack/sync-chart-crds.py --check || status=1
python hack/gen-chart-assets.py --check || status=1

step "ruff"
ruff check operator runtime tests benchmarks || status=1

step "mypy --strict"
mypy || status=1

step "import-linter contracts"
lint-imports || status=1

step "pytest"
# The long fault/scale variants run with `make test-long`; everything else runs here.
python -m pytest -q -p no:cacheprovider -m "not long" "$@"
code=$?
if [[ $code -eq 5 ]]; then echo "pytest collected no tests: failing"; code=1; fi
[[ $code -eq 0 ]] || status=$code
exit $status
