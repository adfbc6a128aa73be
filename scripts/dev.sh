#!/usr/bin/env bash
# The newcomer's entry point: `scripts/dev.sh run|serve|test|lint|typecheck|setup`.
# Finds a Python 3.12+ interpreter, keeps .venv in step with requirements.txt,
# then runs the platform, the test suite or the linters.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"

usable() {
  # pyenv shims exist on PATH even for versions that are not selected, so run it.
  "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1
}

find_python() {
  local candidate root
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  local candidates=(python3.13 python3.12)
  root="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")"
  candidates+=("$root"/versions/3.13*/bin/python3.13 "$root"/versions/3.12*/bin/python3.12 python3 python)
  for candidate in "${candidates[@]}"; do
    if usable "$candidate"; then command -v "$candidate"; return; fi
  done
  echo "No Python 3.12+ interpreter found: install Python 3.13 or set PYTHON=/path/to/python3.13" >&2
  exit 1
}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    local python
    python="$(find_python)"
    echo "Creating $VENV with $python ($("$python" --version))"
    "$python" -m venv "$VENV"
  fi
  local stamp="$VENV/.requirements.sha256"
  local want
  want="$(sha256sum requirements.txt | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r requirements.txt
    echo "$want" >"$stamp"
  fi
}

# Console scripts of the venv (e.g. mcp-server-time, started by the default MCP server) must be on PATH.
export PATH="$VENV/bin:$PATH"

cmd="${1:-run}"
shift || true
case "$cmd" in
  setup)
    setup
    ;;
  run)
    setup
    export DEBUG="${DEBUG:-1}"
    # One process: migrations (only when one is unapplied), the admin user, the default MCP servers. No
    # collectstatic: static files are served from the apps (platform_site/management/commands/devsetup.py).
    "$VENV/bin/python" manage.py devsetup
    host="${HOST:-127.0.0.1}"
    port="${PORT:-8000}"
    echo "Chat:     http://$host:$port/"
    echo "Admin:    http://$host:$port/admin/"
    echo "API docs: http://$host:$port/api/docs/"
    # The server's WebSocket cap sits above CHAT_WS_MAX_FRAME_BYTES: larger frames get the frame_too_large error.
    ws_max="${WS_MAX_MESSAGE_BYTES:-4194304}"
    exec "$VENV/bin/daphne" -b "$host" -p "$port" \
      --websocket-max-message-size "$ws_max" --websocket-max-frame-size "$ws_max" platform_site.asgi:application
    ;;
  serve)
    # The production web command: uvicorn (uvloop, httptools), one process per core (WEB_CONCURRENCY).
    # Keep-alive 75 s, past a load balancer's usual 60 s idle timeout: uvicorn's own 5 s closed connections
    # that a busy client was about to reuse (ReadError at 256 concurrent turns).
    setup
    exec "$VENV/bin/uvicorn" platform_site.asgi:application \
      --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" --workers "${WEB_CONCURRENCY:-$(nproc)}" \
      --loop uvloop --http httptools --ws websockets --ws-per-message-deflate false \
      --lifespan off --no-access-log --proxy-headers --timeout-keep-alive 75 \
      --ws-max-size "${WS_MAX_MESSAGE_BYTES:-4194304}"
    ;;
  test)
    setup
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  lint)
    setup
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    ;;
  typecheck)
    setup
    "$VENV/bin/mypy"
    ;;
  *)
    echo "usage: scripts/dev.sh run|serve|test|lint|typecheck|setup [pytest args]" >&2
    exit 2
    ;;
esac
