#!/usr/bin/env bash
# Meridian's whole test suite: formatting, lints, and every test of every crate.
#
# Idempotent. Installs what the tests need when it is missing (Debian packages with apt-get,
# Python test peers with pip), then runs the checks CI runs. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian packages the tests need, as "command:package" pairs. A package is installed only when
# its command is missing.
DEBIAN_NEEDS=(
  "ip:iproute2"
  "nft:nftables"
  "ping:iputils-ping"
  "etcd:etcd-server"          # etcd 3.4, the B2 baseline (sim/tests/bench_etcd.rs)
  "named:bind9"               # the zone's server for endpoint names (sim/tests/dns_updates.rs, api_dns.rs)
  "dig:bind9-dnsutils"
  "chromium:chromium"         # headless browser of the console's end-to-end test (sim/tests/console_browser.rs)
  "chromedriver:chromium-driver"
  "npm:npm"                   # installs axe-core for that test (sim/tests/browser)
  "prometheus:prometheus"     # scrapes central's and the agents' /metrics (sim/tests/metrics_prometheus.rs)
)

missing=()
for pair in "${DEBIAN_NEEDS[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python test peers, as "import-name:pip-requirement" pairs (pinned). A peer is installed only
# when importing it fails. Keep one pair per line so changes merge cleanly.
PYTHON_NEEDS=(
  "grpc:grpcio==1.85.1"
  "grpc_tools:grpcio-tools==1.85.1"
  "grpc_reflection:grpcio-reflection==1.85.1"
  "sushy_tools:sushy-tools==2.2.0"
  "redfish_service_validator:redfish-service-validator==3.1.8"
  "redfish_protocol_validator:redfish-protocol-validator==1.3.2"
)

pip_missing=()
for pair in "${PYTHON_NEEDS[@]}"; do
  python3 -c "import ${pair%%:*}" >/dev/null 2>&1 || pip_missing+=("${pair#*:}")
done
if [ ${#pip_missing[@]} -gt 0 ]; then
  echo "==> installing Python test peers: ${pip_missing[*]}"
  python3 -m pip install --quiet --disable-pip-version-check "${pip_missing[@]}"
fi

# axe-core for the console's accessibility checks (sim/tests/console_browser.rs), as pinned by
# sim/tests/browser/package-lock.json: installed again only when it is missing or the lock changed.
browser_dir=sim/tests/browser
lock_sum=$(sha256sum "$browser_dir/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$browser_dir/node_modules/axe-core/axe.min.js" ] \
  || [ "$(cat "$browser_dir/node_modules/.lock-sha256" 2>/dev/null)" != "$lock_sum" ]; then
  echo "==> npm ci --prefix $browser_dir"
  npm ci --prefix "$browser_dir" --no-audit --no-fund
  echo "$lock_sum" >"$browser_dir/node_modules/.lock-sha256"
fi

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "==> adding rustup component $component"
    rustup component add "$component"
  fi
done

export RUST_BACKTRACE=1
# A one-off run on a fresh clone gains nothing from incremental caches (1.8 GB on disk).
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
avail_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${avail_kb:-0}" -lt 8000000 ]; then
  echo "==> warning: only $((avail_kb / 1024)) MiB free here; a clean build of the tests needs about 6 GiB" >&2
fi
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
echo "==> all checks passed"
