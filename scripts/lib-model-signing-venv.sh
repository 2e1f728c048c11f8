# shellcheck shell=bash
# Sourced (not run) by scripts/interop-model-signing.sh and bench/signing.sh, from the
# repository root. Defines ms_venv_setup, which creates or reuses the venv .venv-ms with
# the OpenSSF model-signing reference tool pinned in tools/model-signing-requirements.txt,
# and then sets:
#   MS_PY   the venv's python
#   MS_CLI  the venv's model_signing command
# Needs python3 (with the venv module) and access to PyPI on first use. The venv is
# reinstalled whenever the requirements file changes (its SHA-256 is kept in the venv).

ms_venv_setup() {
    local venv=.venv-ms
    local req=tools/model-signing-requirements.txt
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

    MS_PY="$PWD/$venv/bin/python"
    MS_CLI="$PWD/$venv/bin/model_signing"
    # model-signing 1.1.1 imports pyOpenSSL without declaring it: check the pair loads.
    "$MS_PY" -c 'import OpenSSL, model_signing.signing, model_signing.verifying' || {
        echo "error: $venv is broken (model_signing does not import); remove it and rerun" >&2
        return 1
    }
    export MS_PY MS_CLI
}

# Builds ward when $WARD is unset and target/release/ward is missing; sets WARD.
ward_binary_setup() {
    local built="${CARGO_TARGET_DIR:-target}/release/ward"
    WARD=${WARD:-$built}
    if [ ! -x "$WARD" ]; then
        if [ "$WARD" = "$built" ]; then
            echo "== cargo build --locked --release --bin ward"
            cargo build --locked --release --bin ward
        else
            echo "error: WARD=$WARD is not an executable" >&2
            return 1
        fi
    fi
    case "$WARD" in /*) ;; *) WARD="$PWD/$WARD" ;; esac
    export WARD
}
