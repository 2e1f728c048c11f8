#!/usr/bin/env bash
# Serving benchmark: ward against Multi Model Server (MMS) 1.1.11 + MXNet 1.9.1, in one run
# on this machine, with wrk on loopback. Three models (an MLP 16->64->10, squeezenet1.1 and
# resnet18_v1 at 1x3x224x224), 1, 4 and 16 connections, plus an overload point for
# squeezenet. MMS runs as it ships (plain HTTP, its default workers); ward runs with TLS and
# bearer tokens on.
#
#   bench/serve/run.sh                     # both servers, 5 s warm-up + 20 s per point
#   DURATION=5 WARMUP=1 bench/serve/run.sh # a quick try
#   SERVERS=mms bench/serve/run.sh         # one server only
#
# Environment (defaults in brackets):
#   WARD [target/release/ward]   the ward binary; the ward side is skipped (and said so in
#                                the report) when `$WARD serve --help` fails
#   SERVERS ["mms ward"]         DURATION [20]  WARMUP [5]  CONNS ["1 4 16"]
#   MODELS ["mlp squeezenet1_1 resnet18_v1"]   the models measured (the overload point
#                                runs when squeezenet1_1 is among them)
#   ward-batched                 in SERVERS: $WARD again, with dynamic batching on for
#                                every model ([model.NAME.batching], max_batch_size =
#                                BATCH_SIZE [8], max_queue_delay_ms = BATCH_DELAY_MS [2])
#   WARD_OLD                     a second ward binary, run as the server `ward-old` when
#                                SERVERS names it: an A/B of two builds in one run
#                                (SERVERS="mms ward-old ward ward-old ward" alternates them)
#   OVERLOAD [128]               connections for the squeezenet overload point (0: none);
#                                past ward's default queue (64 waiting + 1 running per core)
#                                and MMS's (job_queue_size 100)
#   WRK_THREADS [1]              wrk threads (at most the connections); 1 leaves the
#                                second core of a 2-core machine to the servers
#   WRK_TIMEOUT [30s]            a slower reply counts as a timeout, not in the latencies
#   DRAIN [3]                    seconds of quiet after each wrk run: requests still queued
#                                when wrk stops are still served (MMS keeps them), and must
#                                not land in the next point (they gave MMS spurious 503s)
#   RECOVERY [10]                seconds after the overload point before one more request,
#                                which must succeed (ward's queue timeout is 5 s)
#   MMS_PYTHON [python3]         interpreter for .venv-mms (3.8-3.11)
#   WARD_CONFIG                  a ward-serve.toml to use instead of the generated one
#   MMS_QUIET_LOGS [0]           1: MMS logs warnings only (as shipped it logs several DEBUG
#                                and access lines per request, ~300 MB a run): shows how
#                                much of MMS's cost is its logging; the default is as shipped
#   WORK [bench/out/serve]       scratch (git-ignored): models, archives, logs, raw results
#
# Needs: wrk, curl, java (MMS's frontend; openjdk 17 works), python3 with venv, PyPI on the
# first run (tools/serve-bench-requirements.txt goes into .venv-mms). On Debian:
# apt-get install -y wrk curl openjdk-17-jre-headless python3-venv.
#
# Output: a Markdown report on stdout and in bench/serve/results-<UTC date>.md; the raw
# wrk output and one JSON line per point under $WORK (results.jsonl, logs/).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

DURATION=${DURATION:-20}
WARMUP=${WARMUP:-5}
CONNS=${CONNS:-"1 4 16"}
OVERLOAD=${OVERLOAD:-128}
WRK_THREADS=${WRK_THREADS:-1}
WRK_TIMEOUT=${WRK_TIMEOUT:-30s}
DRAIN=${DRAIN:-3}
RECOVERY=${RECOVERY:-10}
SERVERS=${SERVERS:-"mms ward"}
WARD=${WARD:-target/release/ward}
MMS_PYTHON=${MMS_PYTHON:-python3}
WORK=${WORK:-bench/out/serve}
mkdir -p "$WORK"
work=$(cd "$WORK" && pwd)
models=${MODELS:-"mlp squeezenet1_1 resnet18_v1"}
BATCH_SIZE=${BATCH_SIZE:-8}
BATCH_DELAY_MS=${BATCH_DELAY_MS:-2}
helpers="$root/bench/serve/helpers.py"
lua="$root/bench/serve/infer.lua"

for tool in wrk curl java; do
    command -v "$tool" > /dev/null || {
        echo "error: $tool not found (Debian: apt-get install -y wrk curl openjdk-17-jre-headless)" >&2
        exit 1
    }
done

results="$work/results.jsonl"
meta="$work/meta.tsv"
logs="$work/logs"
rm -rf "$logs"
mkdir -p "$logs"
: > "$results"
: > "$meta"
say() { echo "== $*" >&2; }
meta() { printf '%s\t%s\n' "$1" "$2" >> "$meta"; }

# --- the MMS venv (MXNet, MMS, model-archiver), reused while the requirements are unchanged
venv_setup() {
    local venv=.venv-mms req=tools/serve-bench-requirements.txt
    local stamp="$venv/.requirements.sha256" want
    want=$(sha256sum "$req" | cut -d' ' -f1)
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "setting up $venv from $req"
        rm -rf "$venv"
        "$MMS_PYTHON" -m venv "$venv" || {
            echo "error: '$MMS_PYTHON -m venv' failed (Debian: apt-get install python3-venv)" >&2
            exit 1
        }
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
            --requirement "$req"
        "$venv/bin/python" -m pip check >&2
        echo "$want" > "$stamp"
    fi
    PY="$root/$venv/bin/python"
    "$PY" -c 'import mxnet, mms, model_archiver' 2> /dev/null || {
        echo "error: $venv is broken (mxnet/mms/model_archiver do not import); remove it and rerun" >&2
        exit 1
    }
}
venv_setup

say "building the models, archives and request bodies ($WORK)"
printf '%s\n' $models > "$work/models.txt"
"$PY" bench/serve/make_models.py "$work" 2>&1 | grep -v -e 'UserWarning: Cannot decide type' \
    -e '^\s*data: None' -e 'infer_type()\[0\]' >&2

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta machine "$(nproc) cores (${cpu:-unknown CPU}), $(free -g | awk '/^Mem:/ {print $2}') GiB, $(uname -sr)"
meta wrk "$(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
meta wrk_threads "$WRK_THREADS"
meta warmup "$WARMUP"
meta duration "$DURATION"
meta wrk_timeout "$WRK_TIMEOUT"
meta drain "$DRAIN"

# run_point SERVER MODEL CONNS KIND URL [TOKEN]: one warm-up + one measured wrk run.
# $SERVER_PID: the server's root process; the CPU time of its process tree, of wrk and of
# the whole machine over the measured run go into the result (helpers.py point).
run_point() {
    local server=$1 model=$2 conns=$3 kind=$4 url=$5 token=${6:-}
    local threads=$WRK_THREADS log="$logs/$server-$model-c$3.txt" cpu0 cpu1 wrk_times
    [ "$threads" -le "$conns" ] || threads=$conns
    local CONTENT_TYPE INFERENCE_HEADER_LENGTH INPUT_SHAPE
    # shellcheck disable=SC1090
    . "$work/bodies/$model.env"
    local -a env=(WRK_BODY_FILE="$work/bodies/$model.body" WRK_CONTENT_TYPE="$CONTENT_TYPE"
                  WRK_HEADER_LENGTH="$INFERENCE_HEADER_LENGTH" WRK_TOKEN="$token")
    if [ "$WARMUP" != 0 ]; then
        env "${env[@]}" wrk -t"$threads" -c"$conns" -d"${WARMUP}s" --timeout "$WRK_TIMEOUT" \
            -s "$lua" "$url" > "$log.warmup" 2>&1
        sleep "$DRAIN"
    fi
    cpu0=$("$PY" "$helpers" cpu "$SERVER_PID")
    # `times` in the subshell: its second line is the CPU time of the subshell's children (wrk)
    wrk_times=$( (env "${env[@]}" wrk -t"$threads" -c"$conns" -d"${DURATION}s" \
        --timeout "$WRK_TIMEOUT" --latency -s "$lua" "$url" > "$log" 2>&1; times) | tail -1)
    cpu1=$("$PY" "$helpers" cpu "$SERVER_PID")
    sleep "$DRAIN"
    grep -q '^WRK_RESULT ' "$log" || {
        echo "error: wrk gave no result; see $log" >&2
        cat "$log" >&2
        return 1
    }
    "$PY" "$helpers" point "$log" "$server" "$model" "$conns" "$kind" "$cpu0" "$cpu1" \
        "$wrk_times" >> "$results"
}

# run_points SERVER URL_PREFIX URL_SUFFIX [TOKEN]: every point for one server. After the
# overload point, and a quiet pause longer than either server's queue timeout, one more
# request must succeed: a server that stays overloaded once the load is gone is broken.
# $CURL_ARGS: extra curl arguments for that request (ward: CA and token).
run_points() {
    local server=$1 prefix=$2 suffix=$3 token=${4:-} model c
    for model in $models; do
        for c in $CONNS; do
            run_point "$server" "$model" "$c" point "$prefix$model$suffix" "$token"
        done
    done
    if [ "${OVERLOAD:-0}" != 0 ] && [[ " $models " == *" squeezenet1_1 "* ]]; then
        run_point "$server" squeezenet1_1 "$OVERLOAD" overload "${prefix}squeezenet1_1$suffix" "$token"
        sleep "$RECOVERY"
        if check_reply "$server" squeezenet1_1 "${prefix}squeezenet1_1$suffix" "${CURL_ARGS[@]}"; then
            meta note "$server: recovered after the overload (one squeezenet request ${RECOVERY} s later: HTTP 200)"
        else
            meta note "$server: **still refusing after the overload**: one squeezenet request ${RECOVERY} s after the load stopped got HTTP $(cat "$logs/$server-squeezenet1_1-reply.code")"
        fi
    fi
}

# check_reply SERVER MODEL URL [CURL_ARGS...]: one request with curl, checked against MXNet
check_reply() {
    local server=$1 model=$2 url=$3
    shift 3
    local CONTENT_TYPE INFERENCE_HEADER_LENGTH INPUT_SHAPE code
    # shellcheck disable=SC1090
    . "$work/bodies/$model.env"
    local -a hdr=(-H "Content-Type: $CONTENT_TYPE")
    [ -z "$INFERENCE_HEADER_LENGTH" ] || hdr+=(-H "Inference-Header-Content-Length: $INFERENCE_HEADER_LENGTH")
    code=$(curl -sS -o "$logs/$server-$model-reply.json" -w '%{http_code}' "$@" "${hdr[@]}" \
        --data-binary @"$work/bodies/$model.body" "$url")
    echo "$code" > "$logs/$server-$model-reply.code"
    if [ "$code" != 200 ]; then
        echo "error: $server $model answered HTTP $code: $(head -c 400 "$logs/$server-$model-reply.json")" >&2
        return 1
    fi
    echo -n "   $server $model: " >&2
    "$PY" "$helpers" check "$work/expected/$model.json" "$logs/$server-$model-reply.json" >&2
}

# ------------------------------------------------------------------------------------- MMS
mms_side() {
    local d="$work/mms" inf mgmt launcher java_pid ready
    rm -rf "$d"
    mkdir -p "$d/tmp"
    { read -r inf; read -r mgmt; } < <("$PY" "$helpers" freeport 2)
    cat > "$d/config.properties" <<EOF
# written by bench/serve/run.sh; everything not set here is MMS 1.1.11's default
inference_address=http://127.0.0.1:$inf
management_address=http://127.0.0.1:$mgmt
model_store=$work/model-store
load_models=$(printf '%s.mar\n' $models | paste -sd,)
EOF
    # The CLI keeps its pid file in $TMPDIR and MMS its worker sockets in java.io.tmpdir
    # ($TEMP): both private to this run. MMS writes its logs under ./logs, hence the cd.
    # PYTHONPATH: the workers are started with the venv's python (the CLI passes
    # sys.executable), which finds its site-packages by itself; set anyway so a worker
    # started any other way still imports mxnet.
    local site
    site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    local -a logargs=()
    local logging="as shipped (the jar's log4j2.xml: DEBUG and access lines for every request, to the console and to ./logs)"
    if [ "${MMS_QUIET_LOGS:-0}" = 1 ]; then
        cat > "$d/log4j2-quiet.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
    <Appenders>
        <Console name="STDOUT" target="SYSTEM_OUT">
            <PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/>
        </Console>
    </Appenders>
    <Loggers>
        <Root level="warn"><AppenderRef ref="STDOUT"/></Root>
    </Loggers>
</Configuration>
EOF
        logargs=(--log-config "$d/log4j2-quiet.xml")
        logging="quiet (MMS_QUIET_LOGS=1: warnings only, not as shipped)"
    fi
    say "mms: starting (inference http://127.0.0.1:$inf, management :$mgmt)"
    (cd "$d" && TMPDIR="$d/tmp" TEMP="$d/tmp" PYTHONPATH="$site" \
        exec "$root/.venv-mms/bin/multi-model-server" --start --foreground \
        --mms-config "$d/config.properties" "${logargs[@]}" > "$d/mms.log" 2>&1) &
    launcher=$!
    # shellcheck disable=SC2064
    trap "cd '$d' && TMPDIR='$d/tmp' '$root/.venv-mms/bin/multi-model-server' --stop > /dev/null 2>&1 || true; wait $launcher 2> /dev/null || true" EXIT
    ready=0
    for _ in $(seq 1 180); do
        if curl -sf "http://127.0.0.1:$inf/ping" > /dev/null 2>&1 \
            && "$PY" "$helpers" mms-workers "http://127.0.0.1:$mgmt" > "$d/workers.txt" 2> /dev/null \
            && [ "$(grep -c 'status=READY ' "$d/workers.txt")" = "$(echo $models | wc -w)" ]; then
            ready=1
            break
        fi
        kill -0 "$launcher" 2> /dev/null || break
        sleep 1
    done
    if [ "$ready" != 1 ]; then
        echo "error: MMS did not get ready in 180 s; the end of $d/mms.log:" >&2
        tail -30 "$d/mms.log" >&2
        return 1
    fi
    java_pid=$(cat "$d/tmp/.model_server.pid")
    SERVER_PID=$java_pid
    sed 's/^/   /' "$d/workers.txt" >&2
    CURL_ARGS=()
    for m in $models; do
        check_reply mms "$m" "http://127.0.0.1:$inf/predictions/$m"
    done
    run_points mms "http://127.0.0.1:$inf/predictions/" ""
    meta mem_mms "$("$PY" "$helpers" mem "$java_pid")"
    local w
    w=$(awk '{printf "%s%s: %s", (NR>1?", ":""), $1, $2}' "$d/workers.txt" | sed 's/workers=//g')
    meta mms "MMS $("$PY" -c 'import mms.version as v; print(v.__version__)') + MXNet $("$PY" -c 'import mxnet; print(mxnet.__version__)'), $(java -version 2>&1 | head -1 | tr -d '"'), plain HTTP, defaults except the listen addresses (config.properties under \$WORK/mms); Python workers per model (MMS's default, one per core): $w; batch size 1; logging $logging; custom handler bench/serve/mms_handler.py (SymbolBlock.imports + hybridize(static_alloc, static_shape))"
}

# ------------------------------------------------------------------------------------ ward
ward_side() {
    # $1: the label in the report (ward, ward-batched, or ward-old for the A/B build); $2:
    # the binary
    local label=$1 WARD=$2
    local d="$work/$label" m shape token pid url port_line config
    rm -rf "$d"
    mkdir -p "$d/repo"
    say "$label: keys, packages, TLS certificate, token"
    "$WARD" keygen --out "$d/keys" --name bench > "$d/keygen.log"
    for m in $models; do
        local CONTENT_TYPE INFERENCE_HEADER_LENGTH INPUT_SHAPE
        # shellcheck disable=SC1090
        . "$work/bodies/$m.env"
        shape="-1,${INPUT_SHAPE#*,}"
        mkdir -p "$d/repo/$m"
        "$WARD" import mxnet --symbol "$work/models/$m/$m-symbol.json" \
            --params "$work/models/$m/$m-0000.params" --input "data:float32:$shape" \
            --name "$m" --out "$d/repo/$m/1" --sign-key "$d/keys/bench.key" > "$d/import-$m.log"
    done
    "$WARD" tls-cert --out "$d/tls" --host 127.0.0.1 --host localhost > "$d/tls-cert.log"
    token=$("$WARD" token --tokens "$d/tokens.toml" --principal bench --scopes infer,metadata,health)
    if [ -n "${WARD_CONFIG:-}" ]; then
        config=$WARD_CONFIG
    else
        # Rate limits far above what one client on loopback can send: the benchmark measures
        # the server, not the per-principal limiter (the overload point shows the queue's 503).
        config="$d/ward-serve.toml"
        {
            echo "# written by bench/serve/run.sh; all else (output policy: 3 decimals; [limits]:"
            echo "# queue, concurrency, timeouts) is ward's default"
            # ward serve refuses to run as root unless told (this benchmark's machines run as root)
            [ "$(id -u)" != 0 ] || echo "allow_root = true"
            echo "[rate]"
            echo "rate_per_second = 1000000.0"
            echo "burst = 1000000"
            echo "daily_budget = 1000000000"
            if [ "$label" = ward-batched ]; then
                for m in $models; do
                    echo "[model.$m.batching]"
                    echo "max_batch_size = $BATCH_SIZE"
                    echo "max_queue_delay_ms = $BATCH_DELAY_MS"
                done
            fi
        } > "$config"
    fi
    say "$label: starting"
    "$WARD" serve --models "$d/repo" --trust "$d/keys/bench.pub" --config "$config" \
        --listen 127.0.0.1:0 --tls-cert "$d/tls/server.pem" --tls-key "$d/tls/server.key" \
        --tokens "$d/tokens.toml" > "$d/stdout" 2> "$d/stderr" &
    pid=$!
    # shellcheck disable=SC2064
    trap "kill -TERM $pid 2> /dev/null || true; wait $pid 2> /dev/null || true" EXIT
    url=
    for _ in $(seq 1 300); do
        port_line=$(grep -m1 -o 'listening on https://[^ ]*' "$d/stdout" 2> /dev/null || true)
        if [ -n "$port_line" ]; then
            url=${port_line#listening on }
            break
        fi
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.2
    done
    if [ -z "$url" ]; then
        echo "error: ward serve printed no 'listening on https://...' line; its stderr:" >&2
        tail -30 "$d/stderr" >&2
        return 1
    fi
    say "$label: $url"
    SERVER_PID=$pid
    CURL_ARGS=(--cacert "$d/tls/ca.pem" -H "Authorization: Bearer $token")
    for m in $models; do
        check_reply "$label" "$m" "$url/v2/models/$m/infer" "${CURL_ARGS[@]}"
    done
    run_points "$label" "$url/v2/models/" "/infer" "$token"
    meta "mem_$label" "$("$PY" "$helpers" mem "$pid")"
    meta "$label" "$("$WARD" --version 2>/dev/null | head -1 || echo ward) ($WARD), HTTPS (TLS on loopback, dev CA from \`ward tls-cert\`) with a bearer token on every request, packages signed and verified at load; config: $(if [ -n "${WARD_CONFIG:-}" ]; then echo "$WARD_CONFIG"; else echo "ward's defaults (output precision 3, queue 64 per model, one running request per core) except the per-principal [rate] raised to 1e6/s$([ "$(id -u)" != 0 ] || echo ", and allow_root = true")$([ "$label" != ward-batched ] || echo ", and dynamic batching on for every model (max_batch_size $BATCH_SIZE, max_queue_delay_ms $BATCH_DELAY_MS)")"; fi)"
}

# Each side runs in a background subshell so that `set -e` holds inside it, a failure on one
# side still leaves the other side's numbers, and the side's EXIT trap stops its server.
for server in $SERVERS; do
    case $server in
    mms)
        (mms_side) &
        wait $! || meta note "mms: the run failed (see the errors above and $WORK/mms/mms.log)"
        ;;
    ward | ward-batched | ward-old)
        bin=$WARD
        [ "$server" != ward-old ] || bin=${WARD_OLD:?SERVERS names ward-old: set WARD_OLD}
        if ! "$bin" serve --help > /dev/null 2>&1; then
            say "$server: skipped ($bin serve --help fails; set WARD=path/to/ward)"
            meta note "$server: not run, \`$bin serve --help\` failed"
            continue
        fi
        (ward_side "$server" "$bin") &
        wait $! || meta note "$server: the run failed (see the errors above and $WORK/$server/stderr)"
        ;;
    *) echo "error: unknown server '$server' in SERVERS" >&2; exit 1 ;;
    esac
done

report="bench/serve/results-$(date -u +%Y-%m-%d).md"
"$PY" "$helpers" report "$results" "$meta" | tee "$report"
say "report: $report; raw wrk output: $WORK/logs/"
