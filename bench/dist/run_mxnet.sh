#!/usr/bin/env bash
# MXNet 1.9.1 dist_sync baseline for `ward cluster` (bench/dist/README.md): 1 scheduler +
# S servers + WORKERS workers on 127.0.0.1, the reference harness's Gluon MLP (bench/dist/mxnet/),
# for each S in SERVERS, REPS times, the configurations alternating (rep 1: S=1, S=2;
# rep 2: S=1, S=2; ...). Needs the MXNet venv (DEVELOPERS.md; MXNET_PYTHON to use another)
# and `ss` (iproute2), which the workers read their TCP byte counters from.
#
# Settings (environment): STEPS=200 timed steps, WARMUP=10, REPS=3, SERVERS="1 2",
# WORKERS=2, BATCH=128 (per worker), KILL_AFTER=180 s per run (then every process of the run
# is killed), PB=19000 port base (scheduler PB+91, servers PB+101.., workers PB+201..).
#
# Results, under bench/out/dist/ (git-ignored):
#   runs/mxnet_s{S}_rep{K}.json   one summary per run (aggregate samples/s, TCP bytes sent
#                                 and received per worker-step, each worker's result, load)
#   mxnet/rep{K}/*.json           train.py's per-worker results (bench/dist/mxnet/summarize.py)
#   logs/mxnet_s{S}_rep{K}/       every process's log
# and on stdout one line per run, then the median (min–max) table (bench/dist/report.py).
#
# Sourcing this file (`. bench/dist/run_mxnet.sh`) only defines the functions, so that a
# script can interleave ward's runs with MXNet's:
#   mxnet_dist_setup            checks the venv and `ss`, sets the paths
#   mxnet_dist_clean            removes earlier MXNet results (runs/mxnet_*, mxnet/, logs/mxnet_*)
#   mxnet_dist_run S K          one run with S servers, repetition K (nonzero if it failed)
#   mxnet_dist_abort            for a trap: stops the run in progress and exits
#   mxnet_dist_report           the table over every run in runs/ (any engine)

mxnet_dist_setup() {
    DIST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    DIST_OUT=${DIST_OUT:-$DIST_ROOT/bench/out/dist}
    MXNET_PY=${MXNET_PYTHON:-$DIST_ROOT/.venv-mx/bin/python}
    STEPS=${STEPS:-200}
    WARMUP=${WARMUP:-10}
    WORKERS=${WORKERS:-2}
    BATCH=${BATCH:-128}
    KILL_AFTER=${KILL_AFTER:-180}
    PB=${PB:-19000}
    if ! "$MXNET_PY" -c 'import mxnet; assert mxnet.__version__ == "1.9.1", mxnet.__version__' 2>/dev/null; then
        echo "run_mxnet.sh: $MXNET_PY has no MXNet 1.9.1 (DEVELOPERS.md; or set MXNET_PYTHON)" >&2
        return 1
    fi
    command -v ss > /dev/null || { echo "run_mxnet.sh: needs ss (iproute2)" >&2; return 1; }
    mkdir -p "$DIST_OUT/runs" "$DIST_OUT/mxnet" "$DIST_OUT/logs"
}

mxnet_dist_clean() {
    rm -rf "$DIST_OUT"/runs/mxnet_* "$DIST_OUT/mxnet" "$DIST_OUT"/logs/mxnet_*
    mkdir -p "$DIST_OUT/runs" "$DIST_OUT/mxnet" "$DIST_OUT/logs"
}

# The ports a run with $1 servers binds, one per line.
mxnet_dist_ports() {
    local i
    echo $((PB + 91))
    for ((i = 0; i < $1; i++)); do echo $((PB + 101 + i)); done
    for ((i = 0; i < WORKERS; i++)); do echo $((PB + 201 + i)); done
}

# Waits (up to 20 s) until none of a run's ports is listening, e.g. after a run that was killed.
mxnet_dist_ports_free() {
    local port busy tries
    for ((tries = 0; tries < 40; tries++)); do
        busy=
        for port in $(mxnet_dist_ports "$1"); do
            if ss -Htln "sport = :$port" | grep -q .; then busy="$busy $port"; fi
        done
        [ -z "$busy" ] && return 0
        sleep 0.5
    done
    echo "run_mxnet.sh: port(s)$busy still in use; not starting" >&2
    return 1
}

mxnet_dist_run() {
    local servers=$1 rep=$2
    local name="mxnet_s${servers}_rep${rep}"
    local summary="$DIST_OUT/runs/$name.json" logs="$DIST_OUT/logs/$name" rc=0
    rm -rf "$logs" "$summary"
    mkdir -p "$logs"
    local extra
    extra=$(printf '{"engine": "mxnet", "mxnet": "1.9.1", "kvstore": "dist_sync", "model": "mlp", "servers": %d, "workers": %d, "batch": %d, "steps": %d, "warmup": %d, "rep": %d, "started": "%s"}' \
        "$servers" "$WORKERS" "$BATCH" "$STEPS" "$WARMUP" "$rep" "$(date -u +%Y-%m-%dT%H:%M:%SZ)")
    mxnet_dist_ports_free "$servers" || rc=1
    if [ "$rc" = 0 ]; then
        # Two kill timers: launch_local.py kills every child after T seconds (or at once
        # when one fails); `timeout` kills its whole process group if launch_local.py
        # itself hangs, and -k follows with SIGKILL.
        # In the background so that mxnet_dist_abort (a trap) can stop it at once.
        T=$KILL_AFTER PB=$PB LOGDIR=$logs SUMMARY=$summary SUMMARY_EXTRA=$extra \
            timeout -k 10 $((KILL_AFTER + 20)) \
            "$MXNET_PY" "$DIST_ROOT/bench/dist/mxnet/launch_local.py" "$servers" "$WORKERS" -- \
            "$MXNET_PY" "$DIST_ROOT/bench/dist/mxnet/train.py" --kvstore dist_sync --model mlp \
            --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" --out "$DIST_OUT/mxnet/rep$rep" \
            > "$logs/launch.log" 2>&1 &
        MXNET_DIST_PID=$!
        wait "$MXNET_DIST_PID" || rc=$?
        MXNET_DIST_PID=
    fi
    if [ ! -s "$summary" ]; then
        printf '%s\n' "${extra%\}}, \"rc\": $rc, \"complete\": false}" > "$summary"
    fi
    "$MXNET_PY" - "$summary" "$rc" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if r.get('complete'):
    print('mxnet servers=%d rep %d: %s samples/s aggregate, TCP %s B sent / %s B received per worker-step, '
          'wall %.1f s, load1 %.2f -> %.2f' % (r['servers'], r['rep'], format(round(r['aggregate_samples_per_s']), ','),
          format(r['tcp_sent_per_worker_step'], ','), format(r['tcp_recv_per_worker_step'], ','),
          r['wall_s'], r['load1_before'], r['load1_after']))
else:
    print('mxnet servers=%d rep %d: FAILED (rc %s; logs beside %s)' % (r['servers'], r['rep'], sys.argv[2], sys.argv[1]))
PY
    return "$rc"
}

# For a trap (INT TERM HUP): stops the run in progress, if any (`timeout` passes the
# signal on to launch_local.py, which kills every MXNet process of the run), then exits.
mxnet_dist_abort() {
    if [ -n "${MXNET_DIST_PID:-}" ]; then
        kill -TERM "$MXNET_DIST_PID" 2> /dev/null || true
        wait "$MXNET_DIST_PID" 2> /dev/null || true
    fi
    echo "run_mxnet.sh: interrupted" >&2
    exit 130
}

mxnet_dist_report() {
    python3 "$DIST_ROOT/bench/dist/report.py" "$DIST_OUT/runs"
}

mxnet_dist_main() {
    mxnet_dist_setup
    mxnet_dist_clean
    trap mxnet_dist_abort INT TERM HUP
    local start=$SECONDS rep servers failed=0
    for ((rep = 1; rep <= ${REPS:-3}; rep++)); do
        for servers in ${SERVERS:-1 2}; do
            mxnet_dist_run "$servers" "$rep" || failed=$((failed + 1))
        done
    done
    echo
    mxnet_dist_report
    echo
    echo "MXNet's own table (per-worker medians; bench/dist/mxnet/summarize.py):"
    python3 "$DIST_ROOT/bench/dist/mxnet/summarize.py" "$DIST_OUT/mxnet"
    echo
    echo "$((SECONDS - start)) s in all; $failed failed run(s)"
    [ "$failed" = 0 ]
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    mxnet_dist_main "$@"
fi
