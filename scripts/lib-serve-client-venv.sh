# shellcheck shell=bash
# Sourced (not run) by scripts/serve-tritonclient.sh, from the repository root. Defines
# serve_client_venv_setup, which creates or reuses the venv .venv-serve with the real
# Triton HTTP client (PyPI tritonclient[http]) and numpy pinned in
# tools/serve-client-requirements.txt, and then sets:
#   SC_PY   the venv's python
# and, from scripts/lib-venv.sh, ward_binary_setup.
# shellcheck source=scripts/lib-venv.sh
source scripts/lib-venv.sh

serve_client_venv_setup() {
    local venv=.venv-serve
    pinned_venv "$venv" tools/serve-client-requirements.txt || return 1
    SC_PY="$PWD/$venv/bin/python"
    # Both clients must load: the sync one (gevent) and the asyncio one (aiohttp).
    "$SC_PY" -c 'import numpy, tritonclient.http, tritonclient.http.aio' || {
        echo "error: $venv is broken (tritonclient.http does not import); remove it and rerun" >&2
        return 1
    }
    export SC_PY
}
