# Sourced by scripts/*: create .venv and install Ratchet with its dev extra when missing or stale.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server (apt-get)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
  else
    echo "redis-server is missing: install it (Debian/Ubuntu: sudo apt-get install -y redis-server)" >&2
    exit 1
  fi
fi
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing promtool (apt-get install prometheus)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    # The package's Prometheus server is not needed (only its promtool); stop it if it started.
    if command -v service >/dev/null 2>&1; then service prometheus stop >/dev/null 2>&1 || true; fi
  else
    echo "promtool is missing: install it (Debian/Ubuntu: sudo apt-get install -y --no-install-recommends prometheus)" >&2
    exit 1
  fi
fi
if ! command -v npm >/dev/null 2>&1; then
  # the TypeScript SDK's tests (tests/sdk/test_typescript_sdk.py) run under Node.js >= 18
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Node.js and npm (apt-get)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "npm is missing: install Node.js >= 18 with npm (Debian/Ubuntu: sudo apt-get install -y nodejs npm)" >&2
  fi
fi
VENV="${RATCHET_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV..." >&2
  python3 -m venv "$VENV"
fi
stamp="$VENV/.ratchet-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ clients/python/pyproject.toml -nt "$stamp" ] \
   || [ constraints.txt -nt "$stamp" ]; then
  echo "installing ratchet, its dev dependencies and the Python SDK (clients/python) into $VENV" \
       "(versions pinned by constraints.txt)..." >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[dev]' -e clients/python
  touch "$stamp"
fi
. "$VENV/bin/activate"
