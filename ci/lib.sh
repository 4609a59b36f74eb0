# Shared by ci/test and ci/demo: provision the world, then find the project's virtualenv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${OWL_PYTHON:-$(command -v python3.11 || command -v python3)}"

provision() {
  "$PYTHON" "$ROOT/ci/provision.py" "$@"
  local cache="${OWL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/openwebui-langfuse}"
  VENV="$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["venv"]["project"])' "$cache/world.json")"
  export VENV
}
