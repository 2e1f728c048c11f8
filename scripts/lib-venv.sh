# shellcheck shell=bash
# Sourced (not run) by the scripts that need a pinned Python tool or the ward binary, from
# the repository root.
#   pinned_venv VENV REQUIREMENTS   creates or reuses VENV with exactly REQUIREMENTS (pip
#                                   install, then pip check); reinstalled whenever the
#                                   requirements file changes (its SHA-256 is kept in VENV).
#                                   Needs python3 with the venv module, and PyPI on first use.
#   ward_binary_setup               sets WARD (see below).

pinned_venv() {
    local venv=$1 req=$2
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
