# Puts speechkit's virtual environment first on PATH (made by `make install` at the repo root).
# SPEECHKIT_ROOT may be set beforehand (e.g. when this recipe is copied elsewhere).
SPEECHKIT_ROOT=${SPEECHKIT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)}
if [ -x "$SPEECHKIT_ROOT/.venv/bin/python" ]; then
  export PATH="$SPEECHKIT_ROOT/.venv/bin:$PATH"
else
  echo "path.sh: $SPEECHKIT_ROOT/.venv not found; run 'make install' at the repository root" >&2
fi
export PYTHONUNBUFFERED=1
