#!/usr/bin/env bash
# Make .localstack-venv: LocalStack's runtime on Python 3.13, kept apart from the project's venv
# (its pins clash with ours). Idempotent: exits at once when the same pins are already installed.
#
#   infra/localstack/install.sh [VENV_DIR]     (default: <repo>/.localstack-venv)
#
# Python: $LOCALSTACK_PYTHON, else $(pyenv root)/versions/3.13.0/bin/python.
# Exit 3 when that interpreter is missing (the test fixture turns this into a visible skip).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-$REPO/.localstack-venv}"
# The whole closure, locked (infra/locks/localstack.in holds the versions measured working on the host
# without Docker or an auth token; `make lock` re-resolves it): a new release changes nothing here.
LOCK="$REPO/infra/locks/localstack.txt"
STAMP="$VENV/.installed"
WANT="$(sha256sum "$LOCK" | cut -d' ' -f1)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/python" ]]; then
  echo "localstack venv up to date: $VENV"
  exit 0
fi

if [[ -n "${LOCALSTACK_PYTHON:-}" ]]; then
  PY="$LOCALSTACK_PYTHON"
else
  root="${PYENV_ROOT:-}"
  if [[ -z "$root" ]] && command -v pyenv >/dev/null 2>&1; then root="$(pyenv root)"; fi
  PY="${root:-$HOME/.pyenv}/versions/3.13.0/bin/python"
fi
if [[ ! -x "$PY" ]]; then
  echo "Python 3.13 not found at $PY (set LOCALSTACK_PYTHON)" >&2
  exit 3
fi

# One installer at a time (two pytest runs may start together); re-check once we hold the lock.
mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"
flock 9
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "localstack venv up to date: $VENV"
  exit 0
fi

started=$SECONDS
rm -rf "$VENV"  # a half-made venv (no stamp) from an interrupted run is rebuilt from scratch
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$LOCK"
"$VENV/bin/python" -c "import localstack.runtime.main"  # fail here, not at first start
echo "$WANT" > "$STAMP"
echo "localstack venv installed in $((SECONDS - started)) s: $VENV"
