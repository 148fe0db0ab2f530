# Tessera's everyday commands. `make install` sets up .venv; everything else runs from it.
PY := .venv/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install cluster-binaries test test-unit test-long lint crds crds-check bench dev-up dev-down clean

install:  ## Create or reuse the virtual environment (.venv) and install Tessera in it
	hack/ensure-venv.sh

cluster-binaries:  ## Build (or reuse) the local control plane's binaries from Go modules
	hack/build-binaries.sh

test: install cluster-binaries  ## The whole test suite (unit, runtime, cluster, e2e), as CI runs it
	hack/ensure-system-packages.sh
	hack/run-tests.sh

test-unit: install  ## Only the fast tests that need neither the model nor a cluster
	$(PY) -m pytest tests/unit -q

test-long: install cluster-binaries  ## Long fault and scale variants
	$(PY) -m pytest -m long -q

lint: install  ## ruff, mypy --strict and the import-linter contracts
	.venv/bin/ruff check operator runtime tests benchmarks
	.venv/bin/mypy
	.venv/bin/lint-imports

crds: install  ## Regenerate crds/ (and the chart's CRD templates) from the pydantic types
	$(PY) -m tessera_operator.crdgen --out crds
	$(PY) -m tessera_operator.docgen --out docs/reference.md
	$(PY) hack/sync-chart-crds.py
	$(PY) hack/gen-chart-assets.py

crds-check: install
	$(PY) -m tessera_operator.crdgen --out crds --check
	$(PY) -m tessera_operator.docgen --out docs/reference.md --check
	$(PY) hack/sync-chart-crds.py --check
	$(PY) hack/gen-chart-assets.py --check

bench: install  ## Benchmarks (each prints ratios against a baseline measured in the same run)
	$(PY) benchmarks/planner.py || true
	$(PY) benchmarks/runtime.py
	$(PY) benchmarks/router.py
	$(PY) benchmarks/autoscaling.py --trace ../shared/traces/azure-llm-2023-conv.csv --json out/autoscaling.json --plot out/autoscaling.png

dev-up: install cluster-binaries
	.venv/bin/tessera dev up

dev-down:
	.venv/bin/tessera dev down

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
