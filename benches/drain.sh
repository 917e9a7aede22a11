#!/usr/bin/env bash
# Backlog-drain benchmark (not a test): portcullis against Postfix on the
# same box, each draining the same backlog after a downstream outage.
#
#   bash benches/drain.sh                          # 20,000 msgs, both legs
#   MSGS=2000 LEGS=portcullis bash benches/drain.sh  # quick run
#
# Each leg (LEGS picks them, in that order):
#
#   1. the downstream is down: the relay routes to a loopback port nothing
#      listens on (connection refused at once);
#   2. smtp-source sends MSGS messages (BYTES body, RCPTS recipients each)
#      over SESSIONS parallel sessions; the relay accepts them all and
#      defers each at its first attempt;
#   3. once every message has been deferred, an smtp-sink starts on that
#      port and the leg's clock starts (before the sink's start, so its
#      start-up counts);
#   4. the leg ends when the sink holds every recipient of every message
#      (the newest dump file's mtime, as in load.sh).
#
#   portcullis  portcullis --cores CORES, [delivery] retry_first_secs =
#               retry_max_secs = RETRY_SECS (default 1): each deferred
#               message is retried every RETRY_SECS. The messages were
#               deferred at different moments, so after the sink starts
#               they come due spread over one RETRY_SECS window: the leg
#               cannot end before the last one's retry, and when delivery
#               keeps up, the figure is that window (MSGS / RETRY_SECS), a
#               lower bound of what portcullis can drain. "first" in the
#               summary is the sink's start to its first message, "msg/s*"
#               the rate from the first message to the last. Destination
#               controls at their defaults (max_connections = 50 for the
#               whole appliance, 50 messages per connection). With
#               PC_FLUSH_CMD set (once `portcullis queue flush` exists),
#               that command runs right after the sink starts, like
#               Postfix's flush; $admin_port in it is the admin listener.
#   postfix     a private Postfix instance (benches/lib.sh), up to 50
#               parallel deliveries to the destination; Postfix's own retry
#               is minutes away (queue_run_delay), so `postqueue -f` right
#               after the sink starts is what drains it.
#
# Readiness for step 3: portcullis has logged a `retry` line for every
# message (each one was tried and deferred); Postfix holds every message in
# its deferred queue. CPU: the server process tree's utime+stime from the
# sink's start to the leg's end, as CPU-seconds per 10,000 messages (as in
# load.sh). The 1-minute load average at each leg's end is printed too: the
# machine may be shared.
#
# Everything listens on 127.0.0.1 only. The system Postfix (if any) is not
# used or touched.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
# shellcheck source=benches/lib.sh
source "$repo/benches/lib.sh"

MSGS=${MSGS:-20000}
SESSIONS=${SESSIONS:-50}
BYTES=${BYTES:-1024}
RCPTS=${RCPTS:-1}
LEGS=${LEGS:-"portcullis postfix"}
CORES=${CORES:-2}
RETRY_SECS=${RETRY_SECS:-1}
PC_FLUSH_CMD=${PC_FLUSH_CMD:-}
BENCH_DIR=${BENCH_DIR:-$repo/target/bench}
# Floor of 20 msg/s for each phase (backlog, drain) before a leg is stuck.
LEG_TIMEOUT=${LEG_TIMEOUT:-$((120 + MSGS / 20))}
DOMAIN=example.test
CLK_TCK=$(getconf CLK_TCK)

require_tools drain.sh

bench_dirs drain

sink_pid=
server_pid=

# The downstream's port: closed until the sink starts on it.
down_port=$(free_port)
relay_port=$(free_port "$down_port")
admin_port=$(free_port "$down_port" "$relay_port")
export admin_port

# --- portcullis -------------------------------------------------------------

portcullis_bin=$repo/target/release/portcullis

start_portcullis() {
    local spool=$work/portcullis-spool
    rm -rf "$spool"
    mkdir -p "$spool"
    {
        echo '[delivery]'
        echo "retry_first_secs = $RETRY_SECS"
        echo "retry_max_secs = $RETRY_SECS"
    } >"$work/drain.toml"
    "$portcullis_bin" run --config "$work/drain.toml" --cores "$CORES" \
        --listen "127.0.0.1:$relay_port" --relay-domain "$DOMAIN" \
        --route "*=127.0.0.1:$down_port" --admin-listen "127.0.0.1:$admin_port" \
        --spool-dir "$spool" --hostname bench-portcullis.test \
        --log-file "$work/portcullis.log" \
        >>"$work/portcullis.out" 2>&1 &
    server_pid=$!
    if ! wait_listening "$relay_port" "$server_pid" 20; then
        log "portcullis did not start; tail of its output:"
        tail -5 "$work/portcullis.out" "$work/portcullis.log" 2>/dev/null >&2 || true
        stop_pid "$server_pid"
        server_pid=
        return 1
    fi
}

# Messages portcullis has deferred at least once (a `retry` line each).
portcullis_deferred() {
    awk '$3 == "retry" { for (i = 4; i <= NF; i++) if ($i ~ /^qid=/) seen[$i] = 1 }
         END { n = 0; for (q in seen) n++; print n }' "$work/portcullis.log" 2>/dev/null || echo 0
}

# --- private Postfix instance -----------------------------------------------

setup_postfix() {
    pf_write "$work/postfix" "$relay_port" bench-postfix.test
    cat >>"$work/postfix/etc/main.cf" <<EOF
# A relay for the test domain only, to the (down) sink by IP literal.
relay_domains = $DOMAIN
relay_transport = relay:[127.0.0.1]:$down_port
relayhost = [127.0.0.1]:$down_port
# Up to SESSIONS inbound smtpd processes and 50 parallel deliveries to the
# one downstream, as in load.sh.
default_process_limit = $((SESSIONS * 2 + 50))
default_destination_concurrency_limit = 50
relay_destination_concurrency_limit = 50
initial_destination_concurrency = 10
EOF
    pf_check "$work/postfix"
}

# Messages in the instance's deferred queue.
postfix_deferred() {
    find "$work/postfix/queue/deferred" -type f 2>/dev/null | wc -l
}

# --- cleanup ----------------------------------------------------------------

cleanup() {
    pf_stop "$work/postfix"
    stop_pid "$server_pid"
    stop_pid "$sink_pid"
    remove_run_dirs
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- one leg ----------------------------------------------------------------

# wait_backlog LEG: until every message is deferred (see the header).
wait_backlog() {
    local leg=$1 deadline=$((SECONDS + LEG_TIMEOUT)) n=0
    while ((SECONDS < deadline)); do
        case $leg in
        portcullis) n=$(portcullis_deferred) ;;
        postfix) n=$(postfix_deferred) ;;
        esac
        ((n >= MSGS)) && return 0
        sleep 0.5
    done
    log "$leg: only $n of $MSGS messages deferred after ${LEG_TIMEOUT}s"
    return 1
}

# run_leg LEG: sets leg_result to "MSGS_PER_SEC CPU_PER_10K SECONDS
# FIRST_SECS DRAIN_MSGS_PER_SEC BACKLOG_SECS LOADAVG", or "skip"/"fail".
# Not run in $(...): the trap must know the pids it starts.
leg_result=
run_leg() {
    local leg=$1 dir=$dumps/$1 t_src t_backlog t0 t1 first ticks0 ticks1 rc=0 loadavg
    leg_result=fail
    case $leg in
    portcullis)
        if [[ ! -x $portcullis_bin ]] || ! start_portcullis; then
            leg_result=skip
            return 0
        fi
        ;;
    postfix)
        pf_start "$work/postfix" || { pf_stop "$work/postfix"; return 0; }
        server_pid=$(pf_master_pid "$work/postfix")
        ;;
    esac

    # Steps 1-2: the backlog, while the downstream is down.
    t_src=$(date +%s.%N)
    timeout "$LEG_TIMEOUT" /usr/sbin/smtp-source -s "$SESSIONS" -m "$MSGS" -r "$RCPTS" -l "$BYTES" \
        -f "bench@client.test" -t "rcpt@$DOMAIN" -M client.test \
        "127.0.0.1:$relay_port" >"$work/$leg.source" 2>&1 || rc=$?
    if ((rc != 0)); then
        log "$leg: smtp-source exited $rc: $(tail -2 "$work/$leg.source")"
    elif ! wait_backlog "$leg"; then
        rc=1
    fi
    t_backlog=$(date +%s.%N)

    # Steps 3-4: the downstream comes back; drain.
    if ((rc == 0)); then
        log "$leg: $MSGS messages deferred in $(awk -v a="$t_src" -v b="$t_backlog" 'BEGIN { printf "%.1f", b - a }')s; starting the sink"
        ticks0=$(ticks_tree "$server_pid")
        t0=$(date +%s.%N)
        if ! start_sink "$dir" "$down_port" -d; then
            rc=1
        else
            sink_pid=$started_pid
            if [[ $leg == postfix ]]; then
                /usr/sbin/postqueue -c "$work/postfix/etc" -f
            elif [[ -n $PC_FLUSH_CMD ]]; then
                bash -c "$PC_FLUSH_CMD" || log "portcullis: PC_FLUSH_CMD failed"
            fi
            if wait_delivered "$dir" "$MSGS" $((MSGS * RCPTS)); then
                t1=$(newest_mtime "$dir")
                # awk reads it all: `head` would end the pipe early (pipefail).
                first=$(find "$dir" -type f -printf '%T@\n' | awk 'NR == 1 || $1 < min { min = $1 } END { print min }')
                ticks1=$(ticks_tree "$server_pid")
                loadavg=$(cut -d' ' -f1 /proc/loadavg)
            else
                rc=1
            fi
        fi
    fi

    case $leg in
    portcullis) stop_pid "$server_pid" ;;
    postfix) pf_stop "$work/postfix" ;;
    esac
    server_pid=
    stop_pid "$sink_pid"
    sink_pid=
    rm -rf "$dir"

    ((rc == 0)) || return 0
    leg_result=$(awk -v m="$MSGS" -v ts="$t_src" -v tb="$t_backlog" -v t0="$t0" -v t1="$t1" -v f="$first" \
        -v c0="$ticks0" -v c1="$ticks1" -v hz="$CLK_TCK" -v la="$loadavg" \
        'BEGIN { drain = (t1 > f) ? sprintf("%.0f", (m - 1) / (t1 - f)) : "-";
                 printf "%.0f %.2f %.2f %.2f %s %.1f %s\n", m / (t1 - t0), (c1 - c0) / hz * 10000 / m,
                        t1 - t0, f - t0, drain, tb - ts, la }')
}

# --- main -------------------------------------------------------------------

if [[ " $LEGS " == *" portcullis "* ]]; then
    log "building portcullis (release)"
    cargo build --release --quiet --bin portcullis || log "cargo build failed: the portcullis leg will be skipped"
fi
if [[ " $LEGS " == *" postfix "* ]]; then
    setup_postfix
fi

log "MSGS=$MSGS SESSIONS=$SESSIONS BYTES=$BYTES RCPTS=$RCPTS CORES=$CORES RETRY_SECS=$RETRY_SECS legs: $LEGS; downstream 127.0.0.1:$down_port; work $work; dumps $dumps"
declare -A result
for leg in $LEGS; do
    log "leg $leg"
    run_leg "$leg"
    result[$leg]=$leg_result
    log "leg $leg: $leg_result"
done

echo
printf 'Portcullis backlog-drain benchmark: %d messages of %d bytes x %d rcpt(s), %d sessions, portcullis --cores %d retry every %ds, %d CPUs (%s)\n' \
    "$MSGS" "$BYTES" "$RCPTS" "$SESSIONS" "$CORES" "$RETRY_SECS" "$(nproc)" "$(uname -r)"
fmt='%-11s %8s %8s %8s %8s %9s %9s %8s\n'
# shellcheck disable=SC2059 # one format for the header rows and the rows
printf "$fmt" leg 'drain' 'secs' 'first' 'drain' 'cpu' 'backlog' 'load'
# shellcheck disable=SC2059
printf "$fmt" '' 'msg/s' '' 'secs' 'msg/s*' 's/10k' 'secs' 'average'
for leg in $LEGS; do
    read -r r c secs first drain backlog la <<<"${result[$leg]}" || true
    # shellcheck disable=SC2059
    printf "$fmt" "$leg" "$r" "${secs:--}" "${first:--}" "${drain:--}" "${c:--}" "${backlog:--}" "${la:--}"
done
pc=${result[portcullis]:-}
pf=${result[postfix]:-}
if [[ -n $pc && -n $pf ]]; then
    echo "portcullis/postfix drain msg/s: $(ratio "${pc%% *}" "${pf%% *}")"
fi
echo "drain msg/s: sink start to last message; first: sink start to first message; msg/s*: first message to last (retry wait left out); backlog: smtp-source start until every message was deferred"
