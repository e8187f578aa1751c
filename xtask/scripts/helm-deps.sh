#!/usr/bin/env bash
# Installs the Helm SDK (PyPI helm-python-sdk, Helm v4 through ctypes: there is no helm binary
# to download here) into a venv outside the work tree, once. Prints nothing else on stdout.
#   helm-deps.sh          create/update the venv if needed
#   helm-deps.sh --path   print the venv's python
set -euo pipefail

VENV=${WHARF_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wharf}/helm-venv
VERSION=0.2.2

if [[ ${1:-} == --path ]]; then
  echo "$VENV/bin/python"
  exit 0
fi
if "$VENV/bin/python" -c "import helm_python, sys; sys.exit(helm_python.__version__ != '$VERSION')" 2>/dev/null; then
  echo "helm-deps: helm-python-sdk $VERSION is installed in $VENV" >&2
  exit 0
fi
echo "helm-deps: installing helm-python-sdk $VERSION into $VENV" >&2
python3 -m venv "$VENV" >&2
if ! "$VENV/bin/pip" install -q "helm-python-sdk==$VERSION" >&2; then
  echo "error: installing helm-python-sdk into $VENV failed (see pip's output above)" >&2
  exit 1
fi
