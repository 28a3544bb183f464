# Sourced by scripts/demo and scripts/test: redis-server (the demo's and the tests' Redis), then
# .venv with Ratchet and its dev extra when missing or stale. What only the tests need (promtool,
# Node.js/npm) is installed by scripts/test.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server (apt-get)..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
  else
    echo "redis-server is missing: install it (Debian/Ubuntu: sudo apt-get install -y redis-server)" >&2
    exit 1
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
