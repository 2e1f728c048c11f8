#!/usr/bin/env bash
# ward cluster (issue 17) vs MXNet 1.9.1 dist_sync, in one command (bench/dist/README.md):
# makes ward's inputs (--layout interleave), then for each S in SERVERS and each repetition
# 1..REPS runs ward and MXNet one after the other, the order flipping from one repetition
# to the next (odd: ward first; even: MXNet first), and prints the table (report.py).
#
#   bench/dist/run.sh                          # S=1 and S=2, 3 repetitions (~80 s on 2 cores)
#   REPS=5 SERVERS=1 bench/dist/run.sh
#   WARD=/path/to/ward INPUTS=/tmp/distin bench/dist/run.sh
#
# Settings (environment), besides run_mxnet.sh's (STEPS=200, WARMUP=10, WORKERS=2,
# BATCH=128, KILL_AFTER=180 s, PB=19000, MXNET_PYTHON):
#   REPS=3, SERVERS="1 2"
#   WARD      the ward binary (default target/release/ward; nothing is built here)
#   INPUTS    a directory of make_ward_inputs.py's outputs to reuse (checked: interleave
#             layout, same workers, batch, steps, warm-up); default: made afresh into
#             bench/out/dist/inputs
#   MID_CHECK=1  also read the workers' TCP counters at the middle of the timed loop, to
#             check the byte counts' alignment (one more 0.2 ms read during the loop; 0: off)
#   WARD_PYTHON  the Python 3 that drives ward's runs (standard library only; default python3)
#
# ward's side (`ward_dist_run S K`): `ward cluster run --local --servers S --workers WORKERS
# --config INPUTS/train.toml --out bench/out/dist/ward/sS_repK --allow-root`, its stdout and
# stderr read by a small Python driver (WARD_DIST_DRIVER, below) through a Unix datagram
# socket with SO_PASSCRED, so that every write comes tagged with the pid of the process that
# made it: the members write their lines piece by piece to the stderr they share, and in a
# plain pipe two workers' lines do interleave mid-line. The driver keeps one clean log per
# process, knows each worker's pid (its command line says `cluster worker`, its certificate
# worker-R.pem), and measures:
#   * throughput: each worker's own `[worker/R] timed: 200 steps after 10 of warm-up, X
#     ms/step, Y samples/s` line (ward starts that clock once step 10's weights are back and
#     stops it when step 210's are: train.py's window); aggregate = the sum of the Y;
#   * bytes, as train.py: bytes_sent / bytes_received of every TCP socket of the worker's
#     pid (the kernel's tcp_info counters that `ss -tinpH` prints).
#     START: read as soon as that worker's step-10 line arrives, when the worker is computing
#     step 11's gradients and has sent nothing of step 11 yet. Forking `ss` took 10-20 ms on
#     the loaded 2-core machine, longer than that gap, so the driver reads the same counters
#     over the same sock_diag netlink request ss makes, each socket by its exact id (found
#     while the worker starts), in 0.1-0.2 ms; it runs SCHED_FIFO (its children do not) so
#     that it is woken at once.
#     END: each socket's final counters from `ss -E -tinH` (socket-destroy events, running
#     for the whole job): a worker closes its sockets within a millisecond of its last line.
#     The only traffic after the timed loop is the worker's Done call and the close (a few
#     hundred bytes a run, about 1 B per step).
#     Per worker-step = (END - START) / 200, averaged over the workers; bytes_retrans is
#     kept too (loopback retransmits a 64 KB segment now and then; bytes_sent, like
#     train.py's, includes it). MID_CHECK=1 reads them at step 110 too: the two halves must
#     agree within 64 B per step (less retransmissions), else the run's bytes are left out.
#     END / 210 steps (the whole run: handshakes, join, the initial pull, heartbeats) is kept
#     as a cross-check;
#   * a kill timer (KILL_AFTER s: the driver kills every process of the run; `timeout`
#     kills the driver's whole process group 20 s later), and before each run a check that
#     no member of an earlier ward run of this benchmark is still alive, and that the ports
#     ward binds (port 0, ephemeral, for the coordinator and every server) cannot collide
#     with MXNet's fixed ones.
# It writes bench/out/dist/runs/ward_sS_repK.json (the keys report.py reads, as MXNet's
# runs/mxnet_*.json, plus each worker's figures) and logs/ward_sS_repK/ (one log per
# process, run.log in arrival order, driver.log, ss-start-*.txt, ss-mid-*.txt,
# ss-destroyed.txt).
#
# Sourcing this file defines ward_dist_* (and run_mxnet.sh's mxnet_dist_*) only.

# shellcheck source=bench/dist/run_mxnet.sh
. "$(dirname "${BASH_SOURCE[0]}")/run_mxnet.sh"

ward_dist_setup() {
    mxnet_dist_setup || return 1
    WARD=${WARD:-$DIST_ROOT/target/release/ward}
    WARD_PY=${WARD_PYTHON:-python3}
    MID_CHECK=${MID_CHECK:-1}
    if [ ! -x "$WARD" ]; then
        echo "run.sh: no ward binary at $WARD (cargo build --release -p ward-cli, or set WARD)" >&2
        return 1
    fi
    if [ "$WARMUP" != 10 ]; then
        echo "run.sh: ward's workers time after 10 warm-up steps (a constant); WARMUP must be 10" >&2
        return 1
    fi
    "$WARD_PY" -c 'import sys; assert sys.version_info >= (3, 8)' || {
        echo "run.sh: needs Python 3.8+ ($WARD_PY; or set WARD_PYTHON)" >&2; return 1; }
    command -v stdbuf > /dev/null || { echo "run.sh: needs stdbuf (coreutils)" >&2; return 1; }
    WARD_SHA256=$(sha256sum "$WARD" | cut -d' ' -f1)
    mkdir -p "$DIST_OUT/ward"
}

ward_dist_clean() {
    rm -rf "$DIST_OUT"/runs/ward_* "$DIST_OUT/ward" "$DIST_OUT"/logs/ward_*
    mkdir -p "$DIST_OUT/runs" "$DIST_OUT/ward" "$DIST_OUT/logs"
}

# Makes ward's inputs (or checks INPUTS): sets WARD_INPUTS.
ward_dist_inputs() {
    if [ -n "${INPUTS:-}" ]; then
        WARD_INPUTS=$(cd "$INPUTS" && pwd) || return 1
        echo "reusing ward's inputs in $WARD_INPUTS"
    else
        WARD_INPUTS=$DIST_OUT/inputs
        rm -rf "$WARD_INPUTS"
        "$MXNET_PY" "$DIST_ROOT/bench/dist/make_ward_inputs.py" "$WARD_INPUTS" --layout interleave \
            --workers "$WORKERS" --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" || return 1
    fi
    "$WARD_PY" - "$WARD_INPUTS/inputs.json" "$WORKERS" "$BATCH" "$STEPS" "$WARMUP" <<'PY' || return 1
import json, sys
i = json.load(open(sys.argv[1]))
want = dict(layout='interleave', workers=int(sys.argv[2]), batch=int(sys.argv[3]), steps=int(sys.argv[4]),
            warmup=int(sys.argv[5]), model='mlp', rescale='gluon')
bad = {k: (i.get(k), v) for k, v in want.items() if i.get(k) != v}
if bad:
    sys.exit('run.sh: %s was made with other settings (have, want): %s' % (sys.argv[1], bad))
PY
    [ -f "$WARD_INPUTS/train.toml" ] || { echo "run.sh: no $WARD_INPUTS/train.toml" >&2; return 1; }
}

# Pids of live processes of an earlier ward run of this benchmark (their command line
# names a directory under $DIST_OUT/ward/).
ward_dist_leftovers() {
    local d pid args
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        [ "$pid" = "$$" ] && continue
        args=$(tr '\0' ' ' < "$d/cmdline" 2> /dev/null) || continue
        case $args in
            *" cluster "*"$DIST_OUT/ward/"*) echo "$pid" ;;
        esac
    done
}

# ward binds port 0 (an ephemeral port) for the coordinator and every server, so a fixed
# port cannot be taken; what can be in the way is a member of an earlier run still alive
# (it would hold sockets and CPU). Waits up to 20 s for none to be left; also refuses an
# ephemeral range that holds MXNet's fixed ports (PB+91 .. PB+200+WORKERS).
ward_dist_ports_free() {
    local tries left lo hi
    read -r lo hi < /proc/sys/net/ipv4/ip_local_port_range
    if (( lo <= PB + 200 + WORKERS && hi >= PB + 91 )); then
        echo "run.sh: the ephemeral ports $lo-$hi hold MXNet's fixed ports ($((PB + 91))-$((PB + 200 + WORKERS))); set PB" >&2
        return 1
    fi
    for ((tries = 0; tries < 40; tries++)); do
        left=$(ward_dist_leftovers)
        [ -z "$left" ] && return 0
        sleep 0.5
    done
    echo "run.sh: processes of an earlier ward run still alive:" $left "; not starting" >&2
    return 1
}

ward_dist_run() {
    local servers=$1 rep=$2
    local name="ward_s${servers}_rep${rep}"
    local summary="$DIST_OUT/runs/$name.json" logs="$DIST_OUT/logs/$name"
    local out="$DIST_OUT/ward/s${servers}_rep${rep}" rc=0
    rm -rf "$logs" "$summary" "$out"
    mkdir -p "$logs" "$DIST_OUT/ward"
    local extra version
    version=$("$WARD" --version 2> /dev/null | head -n 1)
    extra=$(printf '{"engine": "ward", "ward": "%s", "ward_sha256": "%s", "transport": "mutual TLS 1.3", "host": "127.0.0.1", "model": "mlp", "layout": "interleave", "servers": %d, "workers": %d, "batch": %d, "steps": %d, "warmup": %d, "rep": %d, "started": "%s"}' \
        "$version" "$WARD_SHA256" "$servers" "$WORKERS" "$BATCH" "$STEPS" "$WARMUP" "$rep" "$(date -u +%Y-%m-%dT%H:%M:%SZ)")
    ward_dist_ports_free "$servers" || rc=1
    if [ "$rc" = 0 ]; then
        # Two kill timers, as MXNet's: the driver kills every process of the run after
        # KILL_AFTER s; `timeout` kills its whole process group (the driver, ward and its
        # members, ss) if the driver hangs, and -k follows with SIGKILL.
        timeout -k 10 $((KILL_AFTER + 20)) "$WARD_PY" -c "$WARD_DIST_DRIVER" \
            "$WARD" "$WARD_INPUTS/train.toml" "$out" "$servers" "$WORKERS" "$STEPS" "$WARMUP" \
            "$KILL_AFTER" "$summary" "$logs" "$extra" "$MID_CHECK" > "$logs/driver.log" 2>&1 &
        WARD_DIST_PID=$!
        wait "$WARD_DIST_PID" || rc=$?
        WARD_DIST_PID=
    fi
    if [ ! -s "$summary" ]; then
        printf '%s\n' "${extra%\}}, \"rc\": $rc, \"complete\": false}" > "$summary"
    fi
    "$WARD_PY" - "$summary" "$rc" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if r.get('complete'):
    b = lambda v: '?' if v is None else format(round(v), ',')
    print('ward  servers=%d rep %d: %s samples/s aggregate, TCP %s B sent (%s retransmitted) / %s B received per '
          'worker-step, wall %.1f s, load1 %.2f -> %.2f%s' % (r['servers'], r['rep'],
          format(round(r['aggregate_samples_per_s']), ','), b(r['tcp_sent_per_worker_step']),
          b(r.get('tcp_retrans_per_worker_step')), b(r['tcp_recv_per_worker_step']),
          r['wall_s'], r['load1_before'], r['load1_after'],
          '' if r.get('bytes_complete') else '; bytes left out: ' + str(r.get('bytes_why'))))
else:
    print('ward  servers=%d rep %d: FAILED (rc %s; %s; logs in %s)' % (r['servers'], r['rep'], sys.argv[2],
          r.get('why', 'see driver.log'), sys.argv[1].replace('/runs/', '/logs/')[:-5]))
PY
    return "$rc"
}

# For a trap (INT TERM HUP): stops ward's run in progress, if any (`timeout` passes the
# signal to the driver's whole process group), then MXNet's (mxnet_dist_abort exits).
ward_dist_abort() {
    if [ -n "${WARD_DIST_PID:-}" ]; then
        kill -TERM "$WARD_DIST_PID" 2> /dev/null || true
        wait "$WARD_DIST_PID" 2> /dev/null || true
    fi
    mxnet_dist_abort
}

dist_main() {
    ward_dist_setup
    mxnet_dist_clean
    ward_dist_clean
    trap ward_dist_abort INT TERM HUP
    ward_dist_inputs
    local start=$SECONDS rep servers failed=0
    echo "ward: $WARD ($("$WARD" --version 2> /dev/null | head -n 1), sha256 ${WARD_SHA256:0:16}…); MXNet: $MXNET_PY; $(nproc) CPUs; load1 $(cut -d' ' -f1 /proc/loadavg)"
    for ((rep = 1; rep <= ${REPS:-3}; rep++)); do
        for servers in ${SERVERS:-1 2}; do
            # The engine that goes first alternates from one repetition to the next.
            if ((rep % 2)); then
                ward_dist_run "$servers" "$rep" || failed=$((failed + 1))
                mxnet_dist_run "$servers" "$rep" || failed=$((failed + 1))
            else
                mxnet_dist_run "$servers" "$rep" || failed=$((failed + 1))
                ward_dist_run "$servers" "$rep" || failed=$((failed + 1))
            fi
        done
    done
    echo
    mxnet_dist_report
    echo
    echo "MXNet's own table (per-worker medians; bench/dist/mxnet/summarize.py):"
    python3 "$DIST_ROOT/bench/dist/mxnet/summarize.py" "$DIST_OUT/mxnet"
    echo
    echo "$((SECONDS - start)) s in all; $failed failed run(s); load1 now $(cut -d' ' -f1 /proc/loadavg)"
    [ "$failed" = 0 ]
}

# The driver of one ward run (argv: WARD CONFIG OUT SERVERS WORKERS STEPS WARMUP KILL_AFTER
# SUMMARY LOGDIR EXTRA_JSON MID_CHECK). Standard library only.
WARD_DIST_DRIVER=$(cat <<'PY'
import json, os, re, resource, signal, socket, struct, subprocess, sys, time

(ward, config, out, servers, workers, steps, warmup, kill_after, summary_path, logdir, extra,
 mid_check) = sys.argv[1:13]
servers, workers, steps, warmup = int(servers), int(workers), int(steps), int(warmup)
kill_after, mid_check = float(kill_after), mid_check == '1'
extra = json.loads(extra)
os.makedirs(logdir, exist_ok=True)
STEP = re.compile(r'\[worker/(\d+)\] epoch (\d+) step (\d+):')
TIMED = re.compile(r'\[worker/(\d+)\] timed: (\d+) steps after (\d+) of warm-up, ([\d.]+) ms/step, ([\d.]+) samples/s$')
MID = warmup + steps // 2
# Largest difference of bytes per step between the halves of the timed loop taken as noise
# (heartbeats, HTTP/2 window updates: a few bytes per step); one read after a worker began a
# push is off by whole TLS records (16 KB over 100 steps: 160 B per step) or more.
HALVES_TOLERANCE = 64


def sock_inodes(pid):
    """The inodes of the sockets pid holds (what `ss -p` maps sockets to processes by)."""
    found = set()
    d = '/proc/%d/fd' % pid
    try:
        fds = os.listdir(d)
    except OSError:
        return found
    for fd in fds:
        try:
            link = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if link.startswith('socket:['):
            found.add(int(link[8:-1]))
    return found


def diag_message(buf, body, end):
    """(inode, family, sockid bytes, "LOCAL PEER", bytes_sent, bytes_received, bytes_retrans)
    of one inet_diag_msg (the counters are tcp_info's, as `ss -ti` prints them), or None."""
    inode = struct.unpack_from('=I', buf, body + 68)[0]
    fam = buf[body]
    sport, dport = struct.unpack_from('>HH', buf, body + 4)
    alen = 4 if fam == socket.AF_INET else 16
    src = socket.inet_ntop(fam, buf[body + 8:body + 8 + alen])
    dst = socket.inet_ntop(fam, buf[body + 24:body + 24 + alen])
    if fam == socket.AF_INET6:
        src, dst = '[%s]' % src, '[%s]' % dst
    a = body + 72
    while a + 4 <= end:
        length, kind = struct.unpack_from('=HH', buf, a)
        if length < 4:
            break
        if kind == 2 and length - 4 >= 208:                       # INET_DIAG_INFO: struct tcp_info
            received = struct.unpack_from('=Q', buf, a + 4 + 128)[0]   # tcpi_bytes_received
            sent, retrans = struct.unpack_from('=QQ', buf, a + 4 + 200)  # tcpi_bytes_sent, _retrans
            return (inode, fam, bytes(buf[body + 4:body + 52]), '%s:%d %s:%d' % (src, sport, dst, dport),
                    sent, received, retrans)
        a += (length + 3) & ~3
    return None


def diag(requests, expect_done):
    """Sends sock_diag requests (inet_diag_req_v2 bodies) and returns the messages' tuples."""
    out = []
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4)    # NETLINK_SOCK_DIAG
    try:
        flags = 0x301 if expect_done else 0x1                     # NLM_F_REQUEST (| NLM_F_DUMP)
        for seq, body in enumerate(requests, 1):
            s.send(struct.pack('=IHHII', 16 + len(body), 20, flags, seq, 0) + body)  # SOCK_DIAG_BY_FAMILY
        answers = 0
        while answers < len(requests):
            buf = s.recv(1 << 20)
            off = 0
            while off + 16 <= len(buf):
                length, kind = struct.unpack_from('=IH', buf, off)
                if length < 16:
                    break
                if kind == 3:                                     # NLMSG_DONE
                    answers += 1
                elif kind == 2:                                   # NLMSG_ERROR (e.g. gone: ENOENT)
                    answers += 1
                else:
                    m = diag_message(buf, off + 16, off + length)
                    if m:
                        out.append(m)
                    if not expect_done:
                        answers += 1
                off += (length + 3) & ~3
    finally:
        s.close()
    return out


def tcp_dump(want):
    """The established IPv4 and IPv6 TCP sockets whose inode is in `want`: {inode: tuple},
    over the sock_diag netlink dump `ss -ti` makes (walks every socket: 1-3 ms here)."""
    reqs = [struct.pack('=BBBBI', fam, socket.IPPROTO_TCP, 1 << 1, 0, 1 << 1) + bytes(48)
            for fam in (socket.AF_INET, socket.AF_INET6)]   # ext: INET_DIAG_INFO; states: ESTABLISHED
    return {m[0]: m for m in diag(reqs, True) if m[0] in want}


def tcp_exact(known):
    """The same tuples for sockets already found, each looked up by its exact id (microseconds)."""
    reqs = [struct.pack('=BBBBI', m[1], socket.IPPROTO_TCP, 1 << 1, 0, 0xffffffff) + m[2] for m in known.values()]
    return {m[0]: m for m in diag(reqs, False) if m[0] in known}


def ss_sample(pid, tag):
    """{pid: {"LOCAL PEER": [bytes_sent, bytes_received, bytes_retrans]}} over the TCP sockets of the pid
    (the sockets `ss -tinpH` lists with pid=PID, and the counters it prints). Looked up by
    their ids if they were found while the worker started (see `learn`), else by a dump.
    Then checks that the pid holds no other TCP socket."""
    t = time.time()
    known = learned.get(pid)
    got = tcp_exact(known) if known else tcp_dump(sock_inodes(pid))
    t1 = time.time()
    now_held = tcp_dump(sock_inodes(pid))
    res = {pid: {m[3]: [m[4], m[5], m[6]] for m in got.values()}}
    with open(os.path.join(logdir, 'ss-%s.txt' % tag), 'w') as f:
        for m in got.values():
            f.write('pid=%d ino=%d %s bytes_sent:%d bytes_received:%d bytes_retrans:%d\n' % (pid, m[0], m[3], m[4], m[5], m[6]))
    return dict(at=t, took_s=round(t1 - t, 5), sockets=res, by='exact ids' if known else 'dump',
                same_sockets=sorted(now_held) == sorted(got))


learned = {}


def learn(pid):
    """While a worker starts: finds its TCP sockets (one to the coordinator, one per server)."""
    found = tcp_dump(sock_inodes(pid))
    if len(found) >= servers + 1:
        learned[pid] = found


def destroyed(path):
    """Final counters of every TCP socket destroyed while `ss -E` ran:
    {"LOCAL PEER": [sent, received, retransmitted]} (ss prints bytes_retrans only if not 0)."""
    res = {}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return res
    for i, line in enumerate(lines[:-1]):
        f = line.split()
        if len(f) >= 5 and not line[:1].isspace():
            info = lines[i + 1]
            s = re.search(r'bytes_sent:(\d+)', info)
            r = re.search(r'bytes_received:(\d+)', info)
            x = re.search(r'bytes_retrans:(\d+)', info)
            if s or r:
                res[f[3] + ' ' + f[4]] = [int(s.group(1)) if s else 0, int(r.group(1)) if r else 0,
                                          int(x.group(1)) if x else 0]
    return res


def role_of(pid, launcher):
    if pid == launcher:
        return 'launcher'
    try:
        args = open('/proc/%d/cmdline' % pid, 'rb').read().split(b'\0')
        args = [a.decode('utf-8', 'replace') for a in args]
        role = args[args.index('cluster') + 1]
        m = re.search(r'(server|worker)-(\d+)\.pem$', ' '.join(args[args.index('--cert') + 1:][:1]))
        return role + (m.group(2) if m else '')
    except (OSError, ValueError, IndexError):
        return 'pid%d' % pid


def children(ppid):
    kids = []
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                stat = open('/proc/%s/stat' % d).read()
                if int(stat.rsplit(')', 1)[1].split()[1]) == ppid:
                    kids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return kids


cmd = [ward, 'cluster', 'run', '--local', '--servers', str(servers), '--workers', str(workers),
       '--config', config, '--out', out, '--allow-root']
print('+ ' + ' '.join(cmd), flush=True)
destroy_path = os.path.join(logdir, 'ss-destroyed.txt')
destroy_out = open(destroy_path, 'w')
ss_events = subprocess.Popen(['stdbuf', '-oL', 'ss', '-E', '-tinH'], stdout=destroy_out,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
time.sleep(0.3)
why = []
if ss_events.poll() is not None:
    why.append('ss -E (socket-destroy events) exited at once (rc %s): no END byte counts' % ss_events.returncode)
# Every write of every member arrives as one datagram tagged with its writer's pid.
rd, wr = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
rd.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
rd.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
rd.settimeout(0.05)
# The driver must read a worker's step-10 line, and the worker's counters, within the few
# milliseconds the worker then spends computing its next gradients: on a busy 2-core machine
# a normal-priority driver was woken too late in 1 run of 4. So it runs SCHED_FIFO (its
# children do not: SCHED_RESET_ON_FORK); it sleeps but for a few reads per run.
try:
    os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(10))
    sched = 'SCHED_FIFO 10'
except (OSError, AttributeError) as e:
    sched = 'normal (SCHED_FIFO refused: %s)' % e
load0 = os.getloadavg()[0]
ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.time()
proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=wr.fileno(), stderr=wr.fileno())
wr.close()
names, partial, logs = {}, {}, {}
merged = open(os.path.join(logdir, 'run.log'), 'w')
worker_pid, at_warmup, at_mid, timed, samples = {}, {}, {}, {}, {}
rc, ended, killed = None, None, False
last_learn, at_start_pids = 0.0, set()


def line_in(pid, name, line, now):
    merged.write(line + '\n')
    if name not in logs:
        logs[name] = open(os.path.join(logdir, name + '.log'), 'w')
    logs[name].write(line + '\n')
    m = STEP.match(line)
    if m:
        rank, step = int(m.group(1)), int(m.group(3))
        worker_pid[rank] = pid
        # Each worker's counters are read as soon as its own line is in (it is then
        # computing the next step's gradients, before it sends anything).
        if step == warmup and rank not in at_warmup:
            at_warmup[rank] = now
            at_start_pids.add(pid)
            samples.setdefault('start', {})[pid] = ss_sample(pid, 'start-worker%d' % rank)
        elif step == MID and mid_check and rank not in at_mid:
            at_mid[rank] = now
            samples.setdefault('mid', {})[pid] = ss_sample(pid, 'mid-worker%d' % rank)
    m = TIMED.match(line)
    if m:
        rank = int(m.group(1))
        worker_pid[rank] = pid
        timed[rank] = dict(rank=rank, pid=pid, steps=int(m.group(2)), warmup=int(m.group(3)),
                           ms_per_step=float(m.group(4)), samples_per_s=float(m.group(5)),
                           seconds=round(int(m.group(2)) * float(m.group(4)) / 1000, 4))


while True:
    try:
        data, anc, _, _ = rd.recvmsg(1 << 16, socket.CMSG_SPACE(12))
    except socket.timeout:
        data = None
    now = time.time()
    if data is not None:
        pid = 0
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack('3i', value[:12])[0]
        if pid not in names:
            names[pid] = role_of(pid, proc.pid)
        *lines, partial[pid] = (partial.get(pid, b'') + data).split(b'\n')
        for line in lines:
            line_in(pid, names[pid], line.decode('utf-8', 'replace'), now)
    if now - last_learn > 0.05:
        last_learn = now
        for pid, name in names.items():
            if name.startswith('worker') and pid not in learned and pid not in at_start_pids:
                learn(pid)
    if rc is None:
        rc = proc.poll()
        if rc is not None:
            ended = now
        elif now - t0 > kill_after:
            why.append('killed after %.0f s (KILL_AFTER)' % kill_after)
            killed = True
            for kid in children(proc.pid):
                try:
                    os.kill(kid, signal.SIGKILL)
                except OSError:
                    pass
            proc.kill()
    elif data is None:
        break    # the launcher has exited (after its members) and nothing is left to read
for pid, rest in partial.items():
    if rest:
        line_in(pid, names[pid], rest.decode('utf-8', 'replace'), time.time())
merged.close()
for f in logs.values():
    f.close()
wall = ended - t0
ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
load1 = os.getloadavg()[0]
time.sleep(0.5)    # the last sockets' destroy events
ss_events.send_signal(signal.SIGINT)
try:
    ss_events.wait(5)
except subprocess.TimeoutExpired:
    ss_events.kill()
    ss_events.wait()
destroy_out.close()
final = destroyed(destroy_path)

if rc != 0:
    why.append('ward cluster run exited with %s' % rc)
if len(timed) != workers:
    why.append('timed lines from %d of %d workers' % (len(timed), workers))
for r in timed.values():
    if r['steps'] != steps or r['warmup'] != warmup:
        why.append('worker %d timed %d steps after %d (want %d after %d)' % (r['rank'], r['steps'], r['warmup'], steps, warmup))
results = [timed[k] for k in sorted(timed)]
complete = not why


def per_step(a, b, n):
    """(sent, received, retransmitted) per step between two samples of the same sockets, or None."""
    if a is None or b is None or any(k not in b for k in a):
        return None
    return [round(sum(b[k][i] - a[k][i] for k in a) / n, 1) for i in (0, 1, 2)]


def sockets_at(tag, pid):
    sample = samples.get(tag, {}).get(pid)
    return sample['sockets'].get(pid) if sample else None


bytes_ok = 'start' in samples and bool(final)
for r in results:
    start = sockets_at('start', r['pid'])
    if r['pid'] in samples.get('start', {}):
        s = samples['start'][r['pid']]
        r['start_sample'] = dict(after_line_ms=round(1000 * (s['at'] - at_warmup[r['rank']]), 3),
                                 took_ms=round(1000 * s['took_s'], 3), by=s['by'], same_sockets=s['same_sockets'])
        if not s['same_sockets']:
            bytes_ok = False
            r['bytes_missing'] = 'the worker held other TCP sockets than those read'
    r['sockets'] = sorted(start) if start else []
    end = {k: final[k] for k in (start or {}) if k in final}
    missing = [k for k in (start or {}) if k not in final]
    if not start or missing:
        bytes_ok = False
        r['bytes_missing'] = missing or 'no START sample'
        continue
    r['tcp_per_step'] = per_step(start, end, r['steps'])
    r['tcp_whole_run'] = [sum(v[i] for v in end.values()) for i in (0, 1, 2)]
    r['tcp_whole_run_per_step'] = [round(v / (r['steps'] + r['warmup']), 1) for v in r['tcp_whole_run']]
    mid = sockets_at('mid', r['pid'])
    if mid:
        half = MID - warmup
        r['tcp_per_step_first_half'] = per_step(start, mid, half)
        r['tcp_per_step_second_half'] = per_step(mid, end, r['steps'] - half)
why_bytes = None
if not bytes_ok:
    why_bytes = '; '.join(['no START sample'] if 'start' not in samples else ['no END counters (ss -E)'] if not final else
                          ['worker %d: %s' % (r['rank'], r['bytes_missing']) for r in results if 'bytes_missing' in r])
# With MID_CHECK: the two halves of the timed loop must give the same bytes per step (a
# START or MID read that came after a worker had begun its next push would show here).
# Bytes sent include retransmitted ones (as train.py's do); loopback does retransmit
# at times (a 64 KB segment), so the check compares the bytes sent less those.
halves = [abs(f(r['tcp_per_step_first_half']) - f(r['tcp_per_step_second_half'])) for r in results
          for f in (lambda v: v[0] - v[2], lambda v: v[1])
          if r.get('tcp_per_step_first_half') and r.get('tcp_per_step_second_half')]
if bytes_ok and halves and max(halves) > HALVES_TOLERANCE:
    bytes_ok = False
    why_bytes = ('the halves of the timed loop differ by %.0f B per step (> %d): a read came late; '
                 'bytes left out of this run' % (max(halves), HALVES_TOLERANCE))
mean = lambda i: round(sum(r['tcp_per_step'][i] for r in results) / len(results), 1) if bytes_ok and results else None
summary = dict(extra)
summary.update(
    rc=rc, killed=killed, complete=complete, why='; '.join(why) or None,
    wall_s=round(wall, 2), cpu_s=round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 2),
    load1_before=load0, load1_after=load1,
    aggregate_samples_per_s=round(sum(r['samples_per_s'] for r in results), 1) if complete else None,
    tcp_sent_per_worker_step=mean(0), tcp_recv_per_worker_step=mean(1), tcp_retrans_per_worker_step=mean(2),
    bytes_complete=bytes_ok, bytes_why=why_bytes,
    bytes_halves_max_diff=max(halves) if halves else None,
    driver_scheduling=sched,
    bytes_method='tcp_info bytes_sent/bytes_received (what ss -tinpH prints) of each worker pid\'s TCP '
                 'sockets, read over sock_diag netlink as soon as that worker\'s step-%d line is in (START); each '
                 'socket\'s final counters from ss -E socket-destroy events (END); (END - START) / timed steps, '
                 'mean over workers' % warmup,
    warmup_lines_spread_ms=round(1000 * (max(at_warmup.values()) - min(at_warmup.values())), 2) if at_warmup else None,
    processes={names[p]: p for p in sorted(names)},
    worker_results=results)
with open(summary_path, 'w') as f:
    json.dump(summary, f, indent=1)
    f.write('\n')
print(json.dumps(summary, indent=1))
sys.exit(0 if complete else (rc or 1))
PY
)

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    dist_main "$@"
fi
