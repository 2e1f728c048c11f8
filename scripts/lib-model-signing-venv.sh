# shellcheck shell=bash
# Sourced (not run) by scripts/interop-model-signing.sh and bench/signing.sh, from the
# repository root. Defines ms_venv_setup, which creates or reuses the venv .venv-ms with
# the OpenSSF model-signing reference tool pinned in tools/model-signing-requirements.txt,
# and then sets:
#   MS_PY   the venv's python
#   MS_CLI  the venv's model_signing command
# and, from scripts/lib-venv.sh, ward_binary_setup.
# shellcheck source=scripts/lib-venv.sh
source scripts/lib-venv.sh

ms_venv_setup() {
    local venv=.venv-ms
    pinned_venv "$venv" tools/model-signing-requirements.txt || return 1
    MS_PY="$PWD/$venv/bin/python"
    MS_CLI="$PWD/$venv/bin/model_signing"
    # model-signing 1.1.1 imports pyOpenSSL without declaring it: check the pair loads.
    "$MS_PY" -c 'import OpenSSL, model_signing.signing, model_signing.verifying' || {
        echo "error: $venv is broken (model_signing does not import); remove it and rerun" >&2
        return 1
    }
    export MS_PY MS_CLI
}
