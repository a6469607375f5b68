#!/usr/bin/env bash
# Usage: tools/install.sh [--runtime] [VENV_DIR]
#
# Creates a virtual environment (default: .venv) and installs speechkit in it,
# editable, with the pinned runtime dependencies (requirements.txt) and the
# test/benchmark dependencies (requirements-test.txt); --runtime installs only the
# former (what recipes and `make demo` need). Idempotent: stamp files record the
# hash of the requirement files and setup.py; when nothing changed the script
# returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=full
[ "${1:-}" = "--runtime" ] && { mode=runtime; shift; }
venv=${1:-.venv}
stamp_rt="$venv/.speechkit-install.runtime.stamp"
stamp="$venv/.speechkit-install.stamp"
want_rt=$(cat requirements.txt setup.py tools/install.sh tools/fix_torchaudio.py | sha256sum | cut -d' ' -f1)
want=$(cat requirements.txt requirements-test.txt setup.py tools/install.sh tools/fix_torchaudio.py | sha256sum | cut -d' ' -f1)
have() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ] && [ -x "$venv/bin/python" ]; }
if have "$stamp" "$want" || { [ $mode = runtime ] && have "$stamp_rt" "$want_rt"; }; then
  exit 0
fi
echo "[install] setting up $venv (python: $(command -v python3))"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
# --no-compile: modules are byte-compiled when first imported, not all of torch's up front.
pip=("$venv/bin/python" -m pip install --disable-pip-version-check --no-compile -q)
# pip warns about every missing local index folder of this machine; keep the log readable.
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
# A local wheel cache (as on our build machines) is used when present.
[ -d /opt/wheels ] && pip+=(--find-links /opt/wheels)
if ! have "$stamp_rt" "$want_rt"; then
  # torch first and alone, so that nothing below can pull another build of it.
  quiet "${pip[@]}" "$(grep '^torch==' requirements.txt)"
  # torchaudio wheels declare no dependency on torch; install it without deps so
  # the torch chosen above stays.
  quiet "${pip[@]}" --no-deps "$(grep '^torchaudio==' requirements.txt)"
  quiet "${pip[@]}" $(grep -v -e '^#' -e '^torch==' -e '^torchaudio==' requirements.txt)
  quiet "${pip[@]}" --no-deps -e .
  "$venv/bin/python" tools/fix_torchaudio.py
  "$venv/bin/python" -c "import speechkit, torch, torchaudio.compliance.kaldi; print('[install] ok: torch', torch.__version__, 'torchaudio', torchaudio.__version__)"
  echo "$want_rt" > "$stamp_rt"
fi
if [ $mode = full ]; then
  quiet "${pip[@]}" -r requirements-test.txt
  echo "[install] test dependencies installed (requirements-test.txt)"
  echo "$want" > "$stamp"
fi
