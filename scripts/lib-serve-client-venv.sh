# shellcheck shell=bash
# Sourced (not run) by scripts/serve-tritonclient.sh, from the repository root. Defines
# serve_client_venv_setup, which creates or reuses the venv .venv-serve with the real
# Triton HTTP client (PyPI tritonclient[http]) and numpy pinned in
# tools/serve-client-requirements.txt, and then sets:
#   SC_PY   the venv's python
# Needs python3 (with the venv module) and access to PyPI on first use. The venv is
# reinstalled whenever the requirements file changes (its SHA-256 is kept in the venv).

serve_client_venv_setup() {
    local venv=.venv-serve
    local req=tools/serve-client-requirements.txt
    local stamp="$venv/.requirements.sha256"
    local want
    want=$(sha256sum "$req" | cut -d' ' -f1)

    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "== setting up $venv from $req"
        rm -rf "$venv"
        if ! python3 -m venv "$venv"; then
            echo "error: 'python3 -m venv' failed (on Debian: apt-get install python3-venv)" >&2
            return 1
        fi
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --no-input --requirement "$req"
        "$venv/bin/python" -m pip check
        echo "$want" > "$stamp"
    fi

    SC_PY="$PWD/$venv/bin/python"
    # Both clients must load: the sync one (gevent) and the asyncio one (aiohttp).
    "$SC_PY" -c 'import numpy, tritonclient.http, tritonclient.http.aio' || {
        echo "error: $venv is broken (tritonclient.http does not import); remove it and rerun" >&2
        return 1
    }
    export SC_PY
}
