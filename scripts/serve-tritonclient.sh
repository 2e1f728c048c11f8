#!/usr/bin/env bash
# Integration test of `ward serve` with the real Triton HTTP client (PyPI
# tritonclient[http] 2.73.0, pinned with its dependencies in
# tools/serve-client-requirements.txt and installed into .venv-serve on first use).
#   1. ward keygen; ward import mxnet of the bundled MLP, signed, into REPO/mlp/1;
#      ward tls-cert (dev CA + server cert for 127.0.0.1 and localhost); ward token.
#   2. ward predict on the fixture input gives the expected output.
#   3. ward serve (TLS, bearer tokens, [output] precision = "full") on 127.0.0.1:0; the
#      port comes from its `listening on https://127.0.0.1:PORT` line.
#   4. tests/serve/tritonclient_check.py: health, metadata, inference in every form the
#      client speaks (binary/JSON, gzip, ...), the error statuses (401/404/400), with the
#      sync and the asyncio client, results compared with ward predict's.
#   5. SIGTERM: ward serve must exit with status 0.
# Needs python3 and PyPI. WARD=path/to/ward to test a given binary; by default
# target/release/ward, built when missing (ward_binary_setup).
# SERVE_START_TIMEOUT / SERVE_STOP_TIMEOUT: seconds to wait for the listening line (60)
# and for the exit after SIGTERM (30).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib-serve-client-venv.sh
source scripts/lib-serve-client-venv.sh

serve_client_venv_setup
ward_binary_setup

mlp=tests/fixtures/models/mlp
start_timeout=${SERVE_START_TIMEOUT:-60}
stop_timeout=${SERVE_STOP_TIMEOUT:-30}
tmp=$(mktemp -d)
server_pid=

cleanup() {
    local rc=$?
    if [ -n "$server_pid" ]; then
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ "$rc" -ne 0 ] && [ -s "$tmp/serve.err" ]; then
        echo "== ward serve stderr (last 40 lines)" >&2
        tail -n 40 "$tmp/serve.err" >&2
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "serve-tritonclient: FAIL: $*" >&2; exit 1; }

# True while the process runs (a zombie, exited but not yet reaped, counts as gone).
alive() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $state != Z* ]]
}

echo "== ward: $WARD"
echo "== tritonclient: $("$SC_PY" -c 'import importlib.metadata as m; print(m.version("tritonclient"))')"
"$WARD" serve --help > /dev/null 2>&1 || fail "$WARD has no working 'serve' command"

echo "== keys, signed package, TLS certificate, token"
"$WARD" keygen --out "$tmp/keys" > /dev/null
mkdir -p "$tmp/repo/mlp"
"$WARD" import mxnet --symbol "$mlp/model-symbol.json" --params "$mlp/model-0000.params" \
    --input data:float32:-1,784 --name mlp --out "$tmp/repo/mlp/1" \
    --sign-key "$tmp/keys/ward.key" > /dev/null
"$WARD" tls-cert --out "$tmp/tls" --host 127.0.0.1 --host localhost > /dev/null
for f in ca.pem server.pem server.key; do
    [ -s "$tmp/tls/$f" ] || fail "ward tls-cert did not write $tmp/tls/$f"
done
token=$("$WARD" token --tokens "$tmp/tokens.toml" --principal tritonclient \
    --scopes infer,metadata,health)
if [ -z "$token" ] || [ "$(printf '%s\n' "$token" | wc -l)" -ne 1 ]; then
    fail "ward token printed no token, or more than one line: '$token'"
fi
case "$token" in *[[:space:]]*) fail "ward token printed a token with white space: '$token'" ;; esac
echo "  ok: package $tmp/repo/mlp/1, certificate for 127.0.0.1 and localhost, token"

# Full precision so the client's results can be compared with ward predict's exactly
# (rtol 1e-5). The default rate limits (burst 200) are above the ~80 requests of the check.
cat > "$tmp/ward-serve.toml" <<'EOF'
[output]
precision = "full"
EOF
# ward serve refuses to run as root unless told to (CI runs as root).
serve_flags=()
if [ "$(id -u)" -eq 0 ]; then
    serve_flags+=(--allow-root)
fi

echo "== expected output: ward predict"
"$WARD" predict "$tmp/repo/mlp/1" --trust "$tmp/keys/ward.pub" \
    --input "data=$mlp/input-data.npy" --out "$tmp/expected" > "$tmp/predict.out"
shopt -s nullglob
expected_files=("$tmp/expected"/*.npy)
shopt -u nullglob
[ "${#expected_files[@]}" -eq 1 ] ||
    fail "ward predict wrote ${#expected_files[@]} .npy files, expected 1: ${expected_files[*]}"
expected=${expected_files[0]}
# Sanity: ward predict agrees with MXNet's own output for this input.
"$SC_PY" - "$expected" "$mlp/output-0.npy" <<'PY' || fail "ward predict disagrees with MXNet's output-0.npy"
import sys
import numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
sys.exit(0 if a.shape == b.shape and np.allclose(a, b, rtol=1e-4, atol=1e-5) else 1)
PY
echo "  ok: $(basename "$expected") (agrees with MXNet's output-0.npy)"

echo "== ward serve"
: > "$tmp/serve.out" # exists before the loop below reads it
"$WARD" serve --models "$tmp/repo" --trust "$tmp/keys/ward.pub" \
    --config "$tmp/ward-serve.toml" --listen 127.0.0.1:0 \
    --tls-cert "$tmp/tls/server.pem" --tls-key "$tmp/tls/server.key" \
    --tokens "$tmp/tokens.toml" "${serve_flags[@]}" > "$tmp/serve.out" 2> "$tmp/serve.err" &
server_pid=$!

port=
deadline=$((SECONDS + start_timeout))
while :; do
    if [ "$(wc -l < "$tmp/serve.out")" -ge 1 ]; then
        line=$(head -n 1 "$tmp/serve.out")
        if [[ $line =~ ^listening\ on\ https://127\.0\.0\.1:([0-9]+)$ ]]; then
            port=${BASH_REMATCH[1]}
            break
        fi
        fail "ward serve's first stdout line is '$line', expected 'listening on https://127.0.0.1:PORT'"
    fi
    if ! alive "$server_pid"; then
        rc=0
        wait "$server_pid" || rc=$?
        server_pid=
        fail "ward serve exited with status $rc before printing its listening line"
    fi
    [ "$SECONDS" -lt "$deadline" ] ||
        fail "ward serve printed no listening line within ${start_timeout}s"
    sleep 0.2
done
[ "$port" -gt 0 ] || fail "ward serve says it listens on port $port"
echo "  ok: listening on https://127.0.0.1:$port (pid $server_pid)"

echo "== tritonclient checks"
"$SC_PY" tests/serve/tritonclient_check.py --url "127.0.0.1:$port" --ca "$tmp/tls/ca.pem" \
    --token "$token" --model mlp --input-npy "$mlp/input-data.npy" \
    --expected-npy "$expected" || fail "tritonclient checks failed (see FAIL above)"
alive "$server_pid" || fail "ward serve is gone after the checks"

echo "== SIGTERM"
kill -TERM "$server_pid"
for ((i = 0; i < stop_timeout * 10; i++)); do
    alive "$server_pid" || break
    sleep 0.1
done
alive "$server_pid" && fail "ward serve still runs ${stop_timeout}s after SIGTERM"
rc=0
wait "$server_pid" || rc=$?
server_pid=
[ "$rc" -eq 0 ] || fail "ward serve exited with status $rc after SIGTERM, expected 0"
echo "  ok: ward serve exited with status 0"
extra=$(($(wc -l < "$tmp/serve.out") - 1))
[ "$extra" -eq 0 ] || echo "  note: ward serve printed $extra more stdout line(s) after the listening line"

echo "serve-tritonclient: all checks passed"
