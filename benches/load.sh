#!/usr/bin/env bash
# Load benchmark (not a test): portcullis against Postfix on the same box.
#
#   bash benches/load.sh                       # full run: 20,000 msgs x 4 loads
#   MSGS=2000 SESSIONS=20 bash benches/load.sh # quick run
#   CORES=1 LEGS="portcullis controls" bash benches/load.sh
#
# For each load (body size x recipients per message) up to five legs (LEGS
# picks them, in that order), each driven by Postfix's smtp-source with
# SESSIONS parallel sessions and MSGS messages (one connection per message,
# like an edge MTA sees; SOURCE_OPTS=-d reuses connections instead):
#
#   ceiling     smtp-source -> smtp-sink                 (what the peers can do)
#   portcullis  smtp-source -> portcullis --cores CORES -> smtp-sink, with
#               destination controls off ([destination.default]
#               max_connections = 0, max_recipients = 0: no count kept)
#   controls    the same with destination controls on for every destination
#               (the sink's domain included) at limits that never bind
#               (max_connections = 1000, max_recipients = 1000000 per 60 s):
#               the cost of counting connections and recipients appliance-
#               wide at the counters' owner shards. The two legs' configs
#               differ in these two keys only.
#   hat         the portcullis leg through a 1,000-entry HAT with recipients-
#               per-hour and sender rate limits on (never refusing): the
#               policy's cost (destination controls off, as in portcullis)
#   postfix     smtp-source -> private Postfix instance -> smtp-sink
#
# CORES (default 2) is the portcullis legs' --cores (shards); Postfix runs
# as it always does (processes, as many CPUs as it gets). PC_FLAGS adds
# flags to every portcullis leg's command line (word-split), e.g.
#   PC_FLAGS="--spin-before-park-us 50" LEGS=portcullis bash benches/load.sh
#
# A leg runs from the start of smtp-source until the sink holds every
# recipient of every message. The sink dumps each transaction to a file on
# tmpfs (/dev/shm), so it never competes with the spools for the disk; the
# leg's end time is the newest dump file's mtime (the sink writes it at the
# final dot), so the polling interval does not enter the figure. Both relays
# keep their queue/spool under BENCH_DIR, i.e. on the same disk, and both
# fsync before they answer 250 (Postfix does by default).
#
# CPU: utime+stime of the server process tree, sampled before smtp-source
# starts and after the last message reached the sink; the difference is
# reported as CPU-seconds per 10,000 messages. portcullis is one process
# (all threads). For Postfix every daemon (smtpd, cleanup, qmgr, trivial-
# rewrite, smtp, postlogd, ...) is a child of the instance's master, so the
# tree is master (own time + cutime/cstime of children it has reaped) + the
# live children. Children are read before the master, so a child that exits
# in between is counted twice at worst, never missed; at the end of a leg the
# instance is idle, so that window is empty in practice.
#
# PERF=stat, record or trace attaches perf to portcullis for each of its
# legs (from just before smtp-source starts until the last message reached
# the sink): `perf stat` (task clock, context switches, migrations, page
# faults; PERF_EVENTS=LIST counts those instead, e.g. tracepoints such as
# ext4:ext4_sync_file_enter), `perf record -g` of the cpu-clock event (a
# VM often has no hardware counters) or `perf trace -s` (system calls per
# thread), written to PERF_DIR as LEG-cCORES-LOAD.{stat,data,trace}.
# PERF_RECORD replaces record's event options, e.g. PERF_RECORD="-e
# io_uring:io_uring_submit_req" counts io_uring operations by opcode.
# perf costs CPU of its own: compare CPU figures of runs without it.
#
# The machine may be shared: the load average at the end of each leg is
# logged and printed with the summary (CPU per message is less sensitive to
# other load than msg/s is). It is not immune: a shard that waits more for
# its peers (smtp-source and smtp-sink starved by other work, or fewer
# sessions per shard) parks its executor more often per message, and each
# park costs CPU (glommio's membarrier before sleeping, the io_uring wait,
# the wake-up), so CPU per message rises as msg/s falls (coalesce_us makes
# a contended shard sleep in place of most parks). Compare CPU figures of
# legs whose msg/s are alike.
#
# Everything listens on 127.0.0.1 only. The system Postfix (if any) is not
# used or touched: the private instance has its own config, queue and data
# directories and its own master.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
# shellcheck source=benches/lib.sh
source "$repo/benches/lib.sh"

MSGS=${MSGS:-20000}
SESSIONS=${SESSIONS:-50}
# "BYTESxRCPTS" per load.
LOADS=${LOADS:-"1024x1 10240x1 1024x10 10240x10"}
LEGS=${LEGS:-"ceiling portcullis hat postfix"}
# Shards of the portcullis legs (--cores).
CORES=${CORES:-2}
# Extra portcullis flags (word-split), after the leg's own.
PC_FLAGS=${PC_FLAGS:-}
SOURCE_OPTS=${SOURCE_OPTS:-}
# Same disk as the repo (and so as a spool an operator would test here).
BENCH_DIR=${BENCH_DIR:-$repo/target/bench}
PERF=${PERF:-}
PERF_DIR=${PERF_DIR:-$BENCH_DIR/perf}
PERF_EVENTS=${PERF_EVENTS:-task-clock,context-switches,cpu-migrations,page-faults}
# Floor of 20 msg/s before a leg is declared stuck.
LEG_TIMEOUT=${LEG_TIMEOUT:-$((120 + MSGS / 20))}
DOMAIN=example.test
CLK_TCK=$(getconf CLK_TCK)

require_tools load.sh

bench_dirs run

sink_pid=
server_pid=

# --- smtp-sink --------------------------------------------------------------

sink_port=$(free_port)

start_sink() {
    local dir=$1 user=()
    mkdir -p "$dir"
    chmod 1777 "$dir"
    # smtp-sink refuses to run as root without -u.
    ((EUID == 0)) && user=(-u nobody)
    # -c: running counters on stdout ("mesg=N" after each final dot).
    /usr/sbin/smtp-sink "${user[@]}" -c -d "$dir/" "127.0.0.1:$sink_port" 1024 \
        >"$dir.counters" 2>"$dir.err" &
    sink_pid=$!
    wait_listening "$sink_port" "$sink_pid" 10 || { cat "$dir.err" >&2; return 1; }
}


# --- portcullis -------------------------------------------------------------

portcullis_bin=$repo/target/release/portcullis
portcullis_port=$(free_port "$sink_port")

# destination_controls MAX_CONNECTIONS MAX_RECIPIENTS: the [destination.default]
# table of a leg (0 and 0: controls off). Every destination, the sink's
# domain included, takes the default's settings; the other keys stay at
# their defaults (max_messages_per_connection = 50, tls = "preferred").
destination_controls() {
    echo '[destination.default]'
    echo "max_connections = $1"
    echo "max_recipients = $2"
    echo 'recipients_period_secs = 60'
}

# The portcullis and controls legs' config: the destination controls only;
# the listener, relay domain and route are the shorthand flags.
write_controls_config() {
    local file=$1
    if [[ $2 == on ]]; then
        destination_controls 1000 1000000 >"$file"
    else
        destination_controls 0 0 >"$file"
    fi
}

# The HAT leg's config: one public listener whose HAT has 1,000 entries
# (100 groups of CIDRs, ranges and host names none of which is 127.0.0.1,
# then ALL), a policy with recipients-per-hour and sender rate limits on
# but high enough never to refuse, and a RAT accepting $DOMAIN. HAT_DHAP=N
# turns DHAP on too (one counter read per RCPT at the client's owner shard).
# HAT_LEASE=N sets [rate_limits] lease_tokens (default here 64: every
# recipient of the leg comes from one client and one sender, so two keys
# take all the load; at the appliance's default of 8 a lease round trip per
# 8 recipients costs 10-12% at 10 recipients per message on 2 CPUs).
write_hat_config() {
    local file=$1 g k i
    {
        echo 'hostname = "bench-portcullis.test"'
        echo 'admin_listen = ""'
        echo '[[listener]]'
        echo 'name = "bench"'
        echo "address = \"127.0.0.1:$portcullis_port\""
        echo 'type = "public"'
        echo 'hat = "bench"'
        echo 'rat = "bench"'
        for ((g = 0; g < 100; g++)); do
            echo '[[hat.bench]]'
            echo "group = \"G$g\""
            printf 'senders = ['
            for ((k = 0; k < 10; k++)); do
                i=$((g * 10 + k))
                case $((k % 3)) in
                0) printf '"10.%d.%d.0/24", ' $((i / 256)) $((i % 256)) ;;
                1) printf '"12.%d.%d.1-100", ' $((i / 256)) $((i % 256)) ;;
                2) printf '"mx%d.partner%d.example", ' "$i" "$g" ;;
                esac
            done
            echo '"192.0.2.1"]'
            echo 'policy = "BENCH"'
        done
        echo '[[hat.bench]]'
        echo 'group = "ALL"'
        echo 'senders = ["ALL"]'
        echo 'policy = "BENCH"'
        echo '[policy.BENCH]'
        echo 'max_messages_per_connection = 1000'
        echo 'max_recipients_per_message = 1000'
        echo 'max_concurrent_connections_per_ip = 1000'
        echo 'max_recipients_per_hour = 100000000'
        echo 'sender_rate_limit = 100000000'
        echo "dhap_max_invalid_per_hour = ${HAT_DHAP:-0}"
        echo '[rate_limits]'
        echo "lease_tokens = ${HAT_LEASE:-64}"
        echo '[[rat.bench]]'
        echo "recipient = \"$DOMAIN\""
        echo 'action = "accept"'
        echo '[routes]'
        echo "\"*\" = [\"127.0.0.1:$sink_port\"]"
        destination_controls 0 0
    } >"$file"
}

# start_portcullis LEG: the HAT leg's config, or the shorthand (no policy)
# with destination controls on (controls) or off (portcullis).
start_portcullis() {
    local spool=$work/portcullis-spool how
    rm -rf "$spool"
    mkdir -p "$spool"
    case $1 in
    hat)
        write_hat_config "$work/hat.toml"
        how=(--config "$work/hat.toml")
        ;;
    *)
        write_controls_config "$work/$1.toml" "$([[ $1 == controls ]] && echo on || echo off)"
        how=(--config "$work/$1.toml" --listen "127.0.0.1:$portcullis_port" --relay-domain "$DOMAIN"
            --route "*=127.0.0.1:$sink_port" --admin-listen "")
        ;;
    esac
    local extra=()
    read -r -a extra <<<"$PC_FLAGS"
    "$portcullis_bin" run "${how[@]}" --cores "$CORES" \
        --spool-dir "$spool" --hostname bench-portcullis.test \
        --log-file "$work/portcullis.log" "${extra[@]}" \
        >>"$work/portcullis.out" 2>&1 &
    server_pid=$!
    if ! wait_listening "$portcullis_port" "$server_pid" 20; then
        log "portcullis did not start (exited, or not listening on 127.0.0.1:$portcullis_port within 20s); tail of its output:"
        tail -5 "$work/portcullis.out" "$work/portcullis.log" 2>/dev/null >&2 || true
        stop_pid "$server_pid"
        server_pid=
        return 1
    fi
}

# --- private Postfix instance -----------------------------------------------

postfix_port=$(free_port "$sink_port" "$portcullis_port")

setup_postfix() {
    pf_write "$work/postfix" "$postfix_port" bench-postfix.test
    cat >>"$work/postfix/etc/main.cf" <<EOF
# A relay for the test domain only, to the sink by IP literal.
relay_domains = $DOMAIN
relay_transport = relay:[127.0.0.1]:$sink_port
relayhost = [127.0.0.1]:$sink_port
# Concurrency comparable to portcullis: up to SESSIONS inbound smtpd
# processes and 50 parallel deliveries to the one downstream.
default_process_limit = $((SESSIONS * 2 + 50))
default_destination_concurrency_limit = 50
relay_destination_concurrency_limit = 50
initial_destination_concurrency = 10
EOF
    pf_check "$work/postfix"
}

start_postfix() {
    pf_start "$work/postfix" || return 1
    server_pid=$(pf_master_pid "$work/postfix")
}

stop_postfix() {
    pf_stop "$work/postfix"
    server_pid=
}

# --- perf (optional) ---------------------------------------------------------

perf_pid=

# perf_start LEG LOAD: attach perf to the server of a portcullis leg.
perf_start() {
    local out=$PERF_DIR/$1-c$CORES-$2
    [[ -n $PERF ]] || return 0
    mkdir -p "$PERF_DIR"
    case $PERF in
    stat) perf stat -e "$PERF_EVENTS" -p "$server_pid" -o "$out.stat" 2>/dev/null & ;;
    record) perf record -q ${PERF_RECORD:--e cpu-clock -F 999 -g} -p "$server_pid" -o "$out.data" 2>/dev/null & ;;
    trace) perf trace -s -p "$server_pid" -o "$out.trace" >/dev/null 2>&1 & ;;
    *) log "PERF=$PERF: stat, record or trace"; return 0 ;;
    esac
    perf_pid=$!
}

# perf_stop: perf writes its report or data file on SIGINT.
perf_stop() {
    [[ -n $perf_pid ]] || return 0
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    perf_pid=
}

# --- cleanup ----------------------------------------------------------------

cleanup() {
    perf_stop
    stop_postfix
    stop_pid "$server_pid"
    stop_pid "$sink_pid"
    remove_run_dirs
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- one leg ----------------------------------------------------------------

# run_leg LEG BYTES RCPTS: sets leg_result to "MSGS_PER_SEC CPU_PER_10K
# SECONDS LOADAVG", or "skip"/"fail". Not run in $(...): the trap must know the pids
# it starts.
leg_result=
run_leg() {
    local leg=$1 bytes=$2 rcpts=$3 dir target t0 t1 ticks0=0 ticks1=0 rc=0 loadavg=-
    dir=$dumps/$leg-${bytes}x$rcpts
    leg_result=fail
    start_sink "$dir" || return 0
    case $leg in
    ceiling) target=$sink_port ;;
    portcullis | controls | hat)
        if [[ ! -x $portcullis_bin ]] || ! start_portcullis "$leg"; then
            stop_pid "$sink_pid"; sink_pid=
            leg_result=skip
            return 0
        fi
        target=$portcullis_port
        ;;
    postfix)
        start_postfix || { stop_postfix; stop_pid "$sink_pid"; sink_pid=; return 0; }
        target=$postfix_port
        ;;
    esac
    [[ $leg == ceiling ]] || ticks0=$(ticks_tree "$server_pid")
    [[ $leg == ceiling || $leg == postfix ]] || perf_start "$leg" "${bytes}x$rcpts"

    t0=$(date +%s.%N)
    # shellcheck disable=SC2086 # SOURCE_OPTS is a list of options
    timeout "$LEG_TIMEOUT" /usr/sbin/smtp-source -s "$SESSIONS" -m "$MSGS" -r "$rcpts" -l "$bytes" \
        -f "bench@client.test" -t "rcpt@$DOMAIN" -M client.test $SOURCE_OPTS \
        "127.0.0.1:$target" >"$dir.source" 2>&1 || rc=$?
    if ((rc != 0)); then
        log "$leg: smtp-source exited $rc: $(tail -2 "$dir.source")"
    elif wait_delivered "$dir" "$MSGS" $((MSGS * rcpts)); then
        t1=$(newest_mtime "$dir")
        [[ $leg == ceiling ]] || ticks1=$(ticks_tree "$server_pid")
        # The 1-minute load average over the leg's end: others' load too.
        loadavg=$(cut -d' ' -f1 /proc/loadavg)
    else
        rc=1
    fi
    perf_stop

    case $leg in
    portcullis | controls | hat) stop_pid "$server_pid"; server_pid= ;;
    postfix) stop_postfix ;;
    esac
    stop_pid "$sink_pid"
    sink_pid=
    rm -rf "$dir"

    ((rc == 0)) || return 0
    leg_result=$(awk -v m="$MSGS" -v t0="$t0" -v t1="$t1" -v c0="$ticks0" -v c1="$ticks1" -v hz="$CLK_TCK" -v leg="$leg" -v la="$loadavg" \
        'BEGIN { cpu = (leg == "ceiling") ? "-" : sprintf("%.2f", (c1 - c0) / hz * 10000 / m);
                 printf "%.0f %s %.2f %s\n", m / (t1 - t0), cpu, t1 - t0, la }')
}

# --- main -------------------------------------------------------------------

log "building portcullis (release)"
cargo build --release --quiet --bin portcullis || log "cargo build failed: the portcullis legs will be skipped"

if [[ " $LEGS " == *" postfix "* ]]; then
    setup_postfix
fi

log "MSGS=$MSGS SESSIONS=$SESSIONS CORES=$CORES PC_FLAGS=\"$PC_FLAGS\" loads: $LOADS; legs: $LEGS; sink 127.0.0.1:$sink_port; work $work; dumps $dumps"
declare -A rate cpu load1
for load in $LOADS; do
    bytes=${load%x*}
    rcpts=${load#*x}
    for leg in $LEGS; do
        log "leg $leg: $MSGS msgs, $bytes bytes, $rcpts rcpt(s), $SESSIONS sessions"
        run_leg "$leg" "$bytes" "$rcpts"
        read -r r c secs la <<<"$leg_result" || true
        rate[$load.$leg]=$r
        cpu[$load.$leg]=${c:--}
        load1[$load.$leg]=${la:--}
        if [[ $r == skip || $r == fail ]]; then
            log "leg $leg: $r"
        else
            log "leg $leg: $r msg/s in ${secs}s, CPU ${c} s/10k msgs, load average $la"
        fi
    done
done

# summary_row LOAD: one load's figures ("-" for a leg not run).
summary_row() {
    local load=$1 bytes=${1%x*} rcpts=${1#*x} pc hat ctl pf policy_us=- las=() leg
    pc=${rate[$load.portcullis]:--}
    ctl=${rate[$load.controls]:--}
    hat=${rate[$load.hat]:--}
    pf=${rate[$load.postfix]:--}
    # CPU the connection policy adds per recipient: the HAT leg's CPU
    # minus the no-policy leg's, over every recipient (HAT match, RAT,
    # the two rate counters incl. their cross-shard leases).
    if [[ ${cpu[$load.hat]:--} != - && ${cpu[$load.portcullis]:--} != - ]]; then
        policy_us=$(awk -v h="${cpu[$load.hat]}" -v p="${cpu[$load.portcullis]}" -v r="$rcpts" 'BEGIN { printf "%.1f", (h - p) / (10000 * r) * 1e6 }')
    fi
    for leg in $LEGS; do las+=("${load1[$load.$leg]:--}"); done
    printf '%-10s %8s %8s %8s %8s %8s %7s %7s %7s %7s %8s %8s %8s %8s %8s  %s\n' "$((bytes / 1024))KiBx$rcpts" \
        "${rate[$load.ceiling]:--}" "$pc" "$ctl" "$hat" "$pf" \
        "$(ratio "$pc" "$pf")" "$(ratio "$ctl" "$pf")" "$(ratio "$ctl" "$pc")" "$(ratio "$hat" "$pc")" \
        "${cpu[$load.portcullis]:--}" "${cpu[$load.controls]:--}" "${cpu[$load.hat]:--}" "${cpu[$load.postfix]:--}" \
        "$policy_us" "$(IFS=/; echo "${las[*]}")"
}

echo
printf 'Portcullis load benchmark: %d messages, %d sessions, %s, portcullis --cores %d, %d CPUs (%s)\n' \
    "$MSGS" "$SESSIONS" "$( [[ -n $SOURCE_OPTS ]] && echo "smtp-source $SOURCE_OPTS" || echo "1 connection per message")" \
    "$CORES" "$(nproc)" "$(uname -r)"
fmt='%-10s %8s %8s %8s %8s %8s %7s %7s %7s %7s %8s %8s %8s %8s %8s  %s\n'
# shellcheck disable=SC2059 # one format for the header rows and the rows
printf "$fmt" load ceiling pc ctl hat postfix 'pc/pf' 'ctl/pf' 'ctl/pc' 'hat/pc' 'cpu pc' 'cpu ctl' 'cpu hat' 'cpu pf' 'policy' 'load average'
# shellcheck disable=SC2059
printf "$fmt" '' 'msg/s' 'msg/s' 'msg/s' 'msg/s' 'msg/s' '' '' '' '' 's/10k' 's/10k' 's/10k' 's/10k' 'us/rcpt' "(1 min, at each leg's end: ${LEGS// //})"
for load in $LOADS; do
    summary_row "$load"
done
