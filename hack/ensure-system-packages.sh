#!/usr/bin/env bash
# Installs the Debian packages the tests need that neither pip nor the Go build provides:
#   lua5.1, lua5.4  run the Argo CD health checks (charts/tessera/argocd/*.lua) in tests/unit: Argo CD
#                   runs them in a Lua 5.1 interpreter, so both the old and the current language are tested.
# Idempotent and quick when everything is there; needs root (or sudo) for apt-get otherwise.
set -euo pipefail
packages=(lua5.1 lua5.4)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "system packages present: ${packages[*]}"
  exit 0
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "installing ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
