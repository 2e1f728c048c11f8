#!/usr/bin/env bash
# Model extraction against `ward serve`, end to end.
#
#   tools/extraction/run.sh                 # uses ${WARD:-${CARGO_TARGET_DIR:-target}/release/ward}
#   WARD=target/debug/ward QUERIES=210 KEEP=1 tools/extraction/run.sh
#
# Imports the bundled softmax-regression model (tests/fixtures/extraction/softmax,
# exported by MXNet 1.9.1) into a signed package, makes a dev CA + server certificate
# and an infer-only token, then starts `ward serve` twice: once with
# `[output] precision = "full"`, once with no config (the server's default policy).
# Against each it runs tools/extraction/attack.py (equation solving, QUERIES queries,
# one row per request) and prints a markdown table. The full JSON reports and the
# server logs stay in the temp dir when KEEP=1 (or are copied to $REPORT_DIR).
#
# Environment: WARD, PYTHON (needs numpy; default .venv-mx/bin/python), QUERIES
# (default 105 = k(d+1) for d = 20, k = 5), SEED (default 1), KEEP, REPORT_DIR,
# BUDGET_CHECK=1: a third server with a daily budget of 50 (in [${RATE_SECTION:-rate}])
# and the attack sending all its queries in one request.
# Exit status: 0 when both attacks ran and the servers behaved; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."

ward=${WARD:-${CARGO_TARGET_DIR:-target}/release/ward}
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv-mx/bin/python ]; then PYTHON=.venv-mx/bin/python; else PYTHON=python3; fi
fi
queries=${QUERIES:-105}
seed=${SEED:-1}
fixture=tests/fixtures/extraction/softmax
features=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["features"])' "$fixture/meta.json")
classes=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["classes"])' "$fixture/meta.json")

if ! "$ward" serve --help >/dev/null 2>&1; then
    echo "run.sh: '$ward serve --help' does not work (set WARD=path/to/ward)" >&2
    exit 1
fi

tmp=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [ -n "${REPORT_DIR:-}" ]; then
        mkdir -p "$REPORT_DIR"
        cp "$tmp"/attack-*.json "$tmp"/serve-*.out "$tmp"/serve-*.err "$REPORT_DIR"/ 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "run.sh: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

step() { echo "run.sh: $*" >&2; }

step "keygen, import, tls-cert"
"$ward" keygen --out "$tmp/keys" --name extraction >&2
mkdir -p "$tmp/repo/softmax"   # import does not create the parent of --out
"$ward" import mxnet \
    --symbol "$fixture/model-symbol.json" --params "$fixture/model-0000.params" \
    --input "data:float32:-1,$features" \
    --name softmax --out "$tmp/repo/softmax/1" --sign-key "$tmp/keys/extraction.key" >&2
"$ward" tls-cert --out "$tmp/tls" >&2

failures=0
rows=()

# start_server NAME [CONFIG]: sets server_pid and url
start_server() {
    local name=$1 config=${2:-}
    local args=(serve --models "$tmp/repo" --trust "$tmp/keys/extraction.pub" --listen 127.0.0.1:0
        --tls-cert "$tmp/tls/server.pem" --tls-key "$tmp/tls/server.key" --tokens "$tmp/tokens.toml")
    if [ -n "$config" ]; then args+=(--config "$config"); fi
    # ward serve refuses to run as root without this (containers, CI)
    if [ "$(id -u)" = 0 ]; then args+=(--allow-root); fi
    "$ward" "${args[@]}" >"$tmp/serve-$name.out" 2>"$tmp/serve-$name.err" &
    server_pid=$!
    url=
    for _ in $(seq 1 300); do
        url=$(sed -n 's#^listening on \(https://127\.0\.0\.1:[0-9][0-9]*\)$#\1#p' "$tmp/serve-$name.out" | head -n 1)
        if [ -n "$url" ]; then break; fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            step "server ($name) exited before listening; stdout:"; cat "$tmp/serve-$name.out" >&2
            step "stderr:"; tail -n 20 "$tmp/serve-$name.err" >&2
            server_pid=
            return 1
        fi
        sleep 0.1
    done
    if [ -z "$url" ]; then
        step "server ($name) printed no 'listening on https://127.0.0.1:PORT' line in 30 s; stdout:"
        cat "$tmp/serve-$name.out" >&2
        return 1
    fi
    step "server ($name) pid $server_pid at $url"
}

# stop_server NAME: SIGTERM, then wait up to 10 s for a graceful exit
stop_server() {
    local name=$1 status=0
    kill -TERM "$server_pid"
    for _ in $(seq 1 100); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        step "server ($name) still running 10 s after SIGTERM; killing it"
        kill -KILL "$server_pid" 2>/dev/null || true
        failures=$((failures + 1))
    fi
    wait "$server_pid" || status=$?
    server_pid=
    if [ "$status" -ne 0 ]; then
        step "server ($name) exited with status $status after SIGTERM"
        failures=$((failures + 1))
    fi
    local lines
    lines=$(wc -l <"$tmp/serve-$name.out")
    if [ "$lines" -ne 1 ]; then
        step "server ($name) printed $lines lines on stdout, not exactly one:"
        cat "$tmp/serve-$name.out" >&2
        failures=$((failures + 1))
    fi
}

# attack NAME POLICY-DESCRIPTION [CONFIG [ATTACK-ARGS...]]
attack() {
    local name=$1 policy=$2 config=${3:-}
    shift 3 || shift $#
    "$ward" token --tokens "$tmp/tokens.toml" --principal "attacker-$name" --scopes infer >"$tmp/token-$name"
    if ! start_server "$name" "$config"; then
        failures=$((failures + 1))
        rows+=("| $policy | - | - | - | - | server did not start |")
        return
    fi
    local rc=0
    "$PYTHON" tools/extraction/attack.py --url "$url" --ca "$tmp/tls/ca.pem" --token-file "$tmp/token-$name" \
        --model softmax --queries "$queries" --seed "$seed" --max-wait 10 "$@" >"$tmp/attack-$name.json" || rc=$?
    stop_server "$name"
    if [ "$rc" -ne 0 ]; then
        failures=$((failures + 1))
        step "attack ($name) exit status $rc; its report:"
        cat "$tmp/attack-$name.json" >&2
    fi
    rows+=("$("$PYTHON" - "$policy" "$tmp/attack-$name.json" <<'EOF'
import json, sys
policy, path = sys.argv[1], sys.argv[2]
try:
    r = json.load(open(path))
except Exception as e:  # noqa: BLE001
    print(f"| {policy} | - | - | - | - | no report ({e}) |"); sys.exit()
pct = lambda v: "-" if v is None else f"{100 * v:.2f} %"
method = r.get("method", "-")
if "error" in r:
    method += f"; error: {r['error'].get('message')}"
if "stopped" in r:
    method += f"; {r['stopped']}"
dec = r.get("equation_solving", {}).get("detected_decimals")
print(f"| {policy} | {r['queries']} / {r['budget']} | {r['http_429']} | {pct(r.get('agreement_test'))} "
      f"| {pct(r.get('agreement_uniform'))} | {method}"
      f"{'' if dec is None else f' (answers rounded to {dec} decimals)'} |")
EOF
)")
}

printf '[output]\nprecision = "full"\n' >"$tmp/full.toml"
attack full 'precision = "full"' "$tmp/full.toml"
attack default 'server default (no config)' ''
# The stronger controls, each on its own: labels only, and a budget below what the attack
# needs (one row per request, so the budget, not the batch, is what stops it).
printf '[output]\nlabel_only = true\n' >"$tmp/labels.toml"
attack labels 'label_only = true' "$tmp/labels.toml"
printf '[rate]\ndaily_budget = 40\n' >"$tmp/budget40.toml"
attack budget40 'daily_budget = 40 (default precision)' "$tmp/budget40.toml"
if [ "${BUDGET_CHECK:-0}" = 1 ]; then
    # Does the daily budget count rows or requests? All the queries in ONE request against a
    # budget of 50. A budget that counts rows answers at most 50 (or refuses the request).
    printf '[%s]\ndaily_budget = 50\n' "${RATE_SECTION:-rate}" >"$tmp/budget.toml"
    attack budget "daily_budget = 50, all rows in one request" "$tmp/budget.toml" --batch "$queries"
    answered=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("queries", 0))' \
        "$tmp/attack-budget.json" 2>/dev/null || echo 0)
    if [ "$answered" -gt 50 ]; then
        step "a daily budget of 50 answered $answered rows sent in one request: it counts requests, not rows"
        failures=$((failures + 1))
    fi
fi

echo
echo "Model extraction against ward serve: softmax regression, d = $features, k = $classes, $(( (classes - 1) * (features + 1) )) unknowns, budget $queries queries (seed $seed)"
echo
echo "| policy | queries answered / budget | 429s | agreement test | agreement uniform | method |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
if [ "$failures" -ne 0 ]; then
    echo
    echo "run.sh: $failures problem(s); see above" >&2
    exit 1
fi
