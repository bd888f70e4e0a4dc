#!/usr/bin/env bash
# Put promtool (Prometheus' rule unit tester, used by tests/test_alerts.py) at $1/promtool: the system's if there
# is one, otherwise extracted from Debian's `prometheus` package (apt-get download: no install, no daemon).
# Usage: ci/install-promtool.sh .venv/bin
set -euo pipefail
dest=${1:?usage: install-promtool.sh DEST_DIR}
mkdir -p "$dest"; dest=$(cd "$dest" && pwd)  # absolute: the extraction below runs in a scratch folder
if [ -x "$dest/promtool" ] && "$dest/promtool" --version >/dev/null 2>&1; then exit 0; fi
if sys_promtool=$(command -v promtool 2>/dev/null); then
  ln -sf "$sys_promtool" "$dest/promtool"; echo "promtool: using system $sys_promtool"; exit 0
fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download -q prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then apt-get update -q >/dev/null; else sudo apt-get update -q >/dev/null; fi
  apt-get download -q prometheus >/dev/null
fi
dpkg-deb -x prometheus_*.deb root
install -m 0755 root/usr/bin/promtool "$dest/promtool"
echo "promtool: installed $("$dest/promtool" --version 2>&1 | head -1) from $(ls prometheus_*.deb)"
