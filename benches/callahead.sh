#!/usr/bin/env bash
# Call-ahead benchmark (issue 7; not a test): portcullis' SMTP call-ahead
# against Postfix's reject_unverified_recipient, in one run on one box.
#
#   bash benches/callahead.sh                # full run: 20,000 msgs per leg
#   MSGS=2000 bash benches/callahead.sh      # quick run
#   LEGS="ca-cold ca-warm ca-off" MSGS=2000 bash benches/callahead.sh
#
# Every leg: smtp-source -N (each recipient address new: -N numbers them
# 1rcpt@, 2rcpt@, ... from 1 in every run, so a second run sends the very
# same addresses), SESSIONS (50) parallel sessions, one connection per
# message, MSGS messages of BYTES bytes with RCPTS recipients each, and -A so
# a refused recipient does not abort smtp-source (it sends RSET, QUIT).
#
#   ca-cold        portcullis --cores 2, call-ahead on: every RCPT probed
#   ca-warm        the same recipients again right after: cache hits
#   ca-off         the same process and config, a listener without
#                  `callahead` (the reference for warm)
#   ca-rejected    recipients of a domain the downstream does not know:
#                  every RCPT probed, 550 5.1.1 passed through
#   ca-rejected-warm  the same again: negative cache hits
#   pf-verify-cold / pf-verify-warm / pf-verify-rejected-cold /
#   pf-verify-rejected
#                  the same four against a private Postfix relay with
#                  `smtpd_recipient_restrictions = reject_unverified_recipient`
#                  (verify(8), address_verify_poll_delay = 1s); "rejected"
#                  is its second pass (cached rejects), as the issue asks.
#
# Downstreams (all on 127.0.0.1, up for the whole run):
#   deliver sink   smtp-sink -d: where accepted mail is delivered (both
#                  products); a leg ends when it holds every recipient, at the
#                  newest dump's mtime, as in load.sh.
#   probe sink     a second smtp-sink (accepts every RCPT, offers PIPELINING)
#                  that only call-ahead probes reach: portcullis' profile is
#                  `server_type = "static"` on it, Postfix's probes go there
#                  by address_verify_relay_transport. A sink of its own so the
#                  delivery sink's dumps and end time are exactly load.sh's,
#                  and probe connections are counted at the server: sessions
#                  the sink saw end (its sess= counter) plus those still open
#                  (kernel table). It has no RCPT counter, so probe RCPTs
#                  come from our side (portcullis: `source=probe` log lines;
#                  Postfix: status=deliverable lines of its probes).
#   rejector       a real Postfix smtpd: relay_domains = unknown.test with an
#                  empty relay_recipient_maps, so every RCPT gets "550 5.1.1
#                  ... User unknown in relay recipient table" (smtp-sink's -f
#                  is 500 5.3.0, which call-ahead rightly treats as a failure).
#                  Both products' probes of unknown.test go here; its log gives
#                  probe connections (": connect from ") and probe RCPTs
#                  ("NOQUEUE: reject: RCPT") counted at the server.
#                  REJECTOR_LIMITS=default keeps smtpd's error limits (after
#                  10 rejects in a session every reply waits 1 s, after 20 the
#                  session is dropped with 421); the default here raises them
#                  so the figure measures the products, not that tarpit.
#
# A rejected leg ends when smtp-source exits (every RCPT answered) and is
# reported in sessions/s; it must have seen MSGS*RCPTS 5xx refusals, and for
# portcullis as many `callahead ... verdict=mailbox-unknown` log lines.
# Latency: the `ms=` of portcullis' `callahead` log lines (the RCPT's wait
# for a verdict, in milliseconds to the microsecond), p50/p99 by source. Postfix logs no
# per-RCPT time. CPU: utime+stime of the server process tree per 10,000
# messages (see load.sh), downstreams not included.
#
# Floors (issue 7): ca-cold >= 20x pf-verify-cold msgs/s; ca-warm within
# 10 % of ca-off.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
# shellcheck source=benches/lib.sh
source "$repo/benches/lib.sh"

MSGS=${MSGS:-20000}
SESSIONS=${SESSIONS:-50}
BYTES=${BYTES:-1024}
RCPTS=${RCPTS:-1}
ALL_LEGS="ca-cold ca-warm ca-off ca-rejected ca-rejected-warm pf-verify-cold pf-verify-warm pf-verify-rejected-cold pf-verify-rejected"
LEGS=${LEGS:-$ALL_LEGS}
# The profile's default (CONFIG.md); the whole appliance, per server.
CA_MAX_CONNECTIONS=${CA_MAX_CONNECTIONS:-5}
REJECTOR_LIMITS=${REJECTOR_LIMITS:-raised}
BENCH_DIR=${BENCH_DIR:-$repo/target/bench}
# Floor of 20 msg/s before a leg is declared stuck (Postfix's cold verify
# manages about 49/s).
LEG_TIMEOUT=${LEG_TIMEOUT:-$((120 + MSGS / 20))}
DOMAIN=example.test
UNKNOWN_DOMAIN=unknown.test
CLK_TCK=$(getconf CLK_TCK)
RCPTS_TOTAL=$((MSGS * RCPTS))

require_tools callahead.sh
for leg in $LEGS; do
    [[ " $ALL_LEGS " == *" $leg "* ]] || { echo "callahead.sh: unknown leg $leg (legs: $ALL_LEGS)" >&2; exit 2; }
done
wants() { [[ " $LEGS " == *" $1 "* ]]; }

bench_dirs callahead

deliver=$dumps/deliver
probe=$work/probe-sink
rejector=$work/rejector
pfverify=$work/pf-verify
pc_log=$work/portcullis.log
pc_bin=$repo/target/release/portcullis

sink_port=$(free_port)
probe_port=$(free_port "$sink_port")
rejector_port=$(free_port "$sink_port" "$probe_port")
ca_port=$(free_port "$sink_port" "$probe_port" "$rejector_port")
off_port=$(free_port "$sink_port" "$probe_port" "$rejector_port" "$ca_port")
carej_port=$(free_port "$sink_port" "$probe_port" "$rejector_port" "$ca_port" "$off_port")
pf_port=$(free_port "$sink_port" "$probe_port" "$rejector_port" "$ca_port" "$off_port" "$carej_port")

deliver_pid=
probe_pid=
pc_pid=

cleanup() {
    stop_pid "$pc_pid"
    pf_stop "$pfverify"
    pf_stop "$rejector"
    stop_pid "$deliver_pid"
    stop_pid "$probe_pid"
    remove_run_dirs
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- downstreams ------------------------------------------------------------

setup_rejector() {
    pf_write "$rejector" "$rejector_port" bench-rejector.test
    : >"$rejector/etc/relay_recipients"
    cat >>"$rejector/etc/main.cf" <<EOF
# The downstream that knows nobody: every RCPT for $UNKNOWN_DOMAIN gets
# 550 5.1.1 from smtpd's relay recipient check.
relay_domains = $UNKNOWN_DOMAIN
relay_recipient_maps = texthash:$rejector/etc/relay_recipients
default_process_limit = 200
EOF
    if [[ $REJECTOR_LIMITS != default ]]; then
        cat >>"$rejector/etc/main.cf" <<EOF
# A probe session is many rejected RCPTs (and RSETs) by design: without
# these, smtpd delays every reply by 1 s after 10 errors and hangs up after
# 20 (smtpd_soft_error_limit, smtpd_hard_error_limit), for both products.
smtpd_soft_error_limit = 1000000
smtpd_hard_error_limit = 1000000
smtpd_junk_command_limit = 1000000
EOF
    fi
    pf_check "$rejector"
}

# --- the two products -------------------------------------------------------

# One process for every ca- leg: three public listeners on one config, the
# same HAT, policy, RAT and routes; `callahead` on two of them.
write_portcullis_config() {
    local cache=$((2 * RCPTS_TOTAL))
    ((cache < 100)) && cache=100
    ((cache > 1000000)) && cache=1000000
    cat >"$1" <<EOF
hostname = "bench-portcullis.test"
admin_listen = ""

[[listener]]
name = "callahead"
address = "127.0.0.1:$ca_port"
type = "public"
hat = "bench"
rat = "bench"
callahead = "probe_sink"

[[listener]]
name = "off"
address = "127.0.0.1:$off_port"
type = "public"
hat = "bench"
rat = "bench"

[[listener]]
name = "rejected"
address = "127.0.0.1:$carej_port"
type = "public"
hat = "bench"
rat = "bench"
callahead = "rejector"

[[hat.bench]]
group = "ALL"
senders = ["ALL"]
policy = "BENCH"

# 50 sessions from one IP; every recipient of a rejected leg is invalid,
# so DHAP would otherwise answer for call-ahead after 25.
[policy.BENCH]
max_messages_per_connection = 1000
max_recipients_per_message = 1000
max_concurrent_connections_per_ip = 1000
dhap_max_invalid_per_hour = 0

[[rat.bench]]
recipient = "$DOMAIN"
action = "accept"

[[rat.bench]]
recipient = "$UNKNOWN_DOMAIN"
action = "accept"

[routes]
"*" = ["127.0.0.1:$sink_port"]

# Every address of a leg fits in the domain's one cache partition.
[callahead.probe_sink]
server_type = "static"
static_servers = ["127.0.0.1:$probe_port"]
cache_entries = $cache
max_connections_per_server = $CA_MAX_CONNECTIONS

[callahead.rejector]
server_type = "static"
static_servers = ["127.0.0.1:$rejector_port"]
cache_entries = $cache
max_connections_per_server = $CA_MAX_CONNECTIONS
EOF
}

start_portcullis() {
    local conf=$work/portcullis.toml
    write_portcullis_config "$conf"
    "$pc_bin" check-config "$conf" >"$work/check-config.out" 2>&1 || { cat "$work/check-config.out" >&2; return 1; }
    mkdir -p "$work/portcullis-spool"
    "$pc_bin" run --config "$conf" --cores 2 --spool-dir "$work/portcullis-spool" \
        --hostname bench-portcullis.test --log-file "$pc_log" >>"$work/portcullis.out" 2>&1 &
    pc_pid=$!
    local port
    for port in "$ca_port" "$off_port" "$carej_port"; do
        wait_listening "$port" "$pc_pid" 20 || { tail -5 "$work/portcullis.out" >&2; return 1; }
    done
}

setup_pf_verify() {
    pf_write "$pfverify" "$pf_port" bench-postfix.test
    cat >>"$pfverify/etc/main.cf" <<EOF
# A relay for both test domains: mail to the deliver sink, $UNKNOWN_DOMAIN
# (never accepted) to the rejector.
relay_domains = $DOMAIN $UNKNOWN_DOMAIN
relay_transport = relay:[127.0.0.1]:$sink_port
transport_maps = inline:{ $UNKNOWN_DOMAIN=relay:[127.0.0.1]:$rejector_port }
# Recipient verification (verify(8)): probes of $DOMAIN go to the probe sink;
# those of $UNKNOWN_DOMAIN follow transport_maps to the rejector.
smtpd_recipient_restrictions = reject_unverified_recipient
address_verify_poll_delay = 1s
address_verify_relay_transport = relay:[127.0.0.1]:$probe_port
# A verified "no" is a 550, as portcullis passes the downstream's 550 on
# (Postfix's default is 450).
unverified_recipient_reject_code = 550
# Concurrency comparable to portcullis (as in load.sh).
default_process_limit = $((SESSIONS * 2 + 50))
default_destination_concurrency_limit = 50
relay_destination_concurrency_limit = 50
initial_destination_concurrency = 10
EOF
    pf_check "$pfverify"
}

# --- one leg ----------------------------------------------------------------

leg_port() {
    case $1 in
    ca-cold | ca-warm) echo "$ca_port" ;;
    ca-off) echo "$off_port" ;;
    ca-rejected*) echo "$carej_port" ;;
    pf-*) echo "$pf_port" ;;
    esac
}
leg_domain() { [[ $1 == *rejected* ]] && echo "$UNKNOWN_DOMAIN" || echo "$DOMAIN"; }
leg_server_pid() {
    if [[ $1 == ca-* ]]; then echo "$pc_pid"; else pf_master_pid "$pfverify"; fi
}

# Lines of FILE matching a fixed string ("" for no file).
count_in() {
    if [[ -f $1 ]]; then grep -cF -- "$2" "$1" || true; else echo 0; fi
}

# settled_count FILE STRING: count once it stopped growing (Postfix logs
# through postlogd, portcullis flushes its log every 200 ms).
settled_count() {
    local n m i
    n=$(count_in "$1" "$2")
    for ((i = 0; i < 20; i++)); do
        sleep 0.3
        m=$(count_in "$1" "$2")
        ((m == n)) && break
        n=$m
    done
    echo "$n"
}

# percentiles FILE SOURCE: "p50/p99" of the ms= of callahead lines with
# source=SOURCE in FILE (nearest rank), "-" if none.
percentiles() {
    awk -v s="source=$2" '{ ms = ""; hit = 0; for (i = 1; i <= NF; i++) { if ($i == s) hit = 1; if ($i ~ /^ms=/) ms = substr($i, 4) } if (hit && ms != "") print ms }' "$1" |
        sort -n | awk '{ v[NR] = $1 } END { if (!NR) { print "-"; exit }
                       print v[int((NR * 50 + 99) / 100)] "/" v[int((NR * 99 + 99) / 100)] }'
}

per_1k() { awk -v n="$1" -v d="$RCPTS_TOTAL" 'BEGIN { printf "%.2f", n * 1000 / d }'; }

# run_leg LEG: sets the row of LEG in the result arrays.
declare -A rate unit refused secs cpu cache_ms probe_ms probes srv_rcpts srv_conns note
# Counters read before the leg, for leg_figures.
declare -A before
run_leg() {
    local leg=$1 port domain pid t0 t1 ticks0 ticks1 rc=0 out base rej5 rej4 want
    out=$work/$leg.source
    port=$(leg_port "$leg")
    domain=$(leg_domain "$leg")
    pid=$(leg_server_pid "$leg")
    rate[$leg]=fail
    unit[$leg]=$([[ $leg == *rejected* ]] && echo sess/s || echo msg/s)

    # Before: the deliver sink is idle (the last leg waited for all of its
    # mail), so its dumps can go; counters are read as bases.
    find "$deliver" -type f -delete
    base=$(sink_messages "$deliver")
    before[probe_conns]=$(($(sink_sessions_closed "$probe") + $(established "$probe_port")))
    before[rej_conns]=$(count_in "$rejector/maillog" ": connect from ")
    before[rej_rcpts]=$(count_in "$rejector/maillog" "NOQUEUE: reject: RCPT")
    before[log_bytes]=$(stat -c %s "$pc_log" 2>/dev/null || echo 0)
    before[pf_probes]=$(pf_probes_logged)
    ticks0=$(ticks_tree "$pid")

    t0=$(date +%s.%N)
    timeout "$LEG_TIMEOUT" /usr/sbin/smtp-source -A -N -s "$SESSIONS" -m "$MSGS" -r "$RCPTS" -l "$BYTES" \
        -f "bench@client.test" -t "rcpt@$domain" -M client.test "127.0.0.1:$port" >"$out" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    rej5=$(count_in "$out" "recipient rejected: 5")
    rej4=$(count_in "$out" "recipient rejected: 4")
    refused[$leg]=$((rej5 + rej4))
    ((rej4 == 0)) || note[$leg]+=" ${rej4}x4xx"
    if ((rc != 0)); then
        log "$leg: smtp-source exited $rc: $(tail -2 "$out")"
        return 0
    fi
    if [[ $leg == *rejected* ]]; then
        # Every RCPT answered when smtp-source is done; all must be refusals.
        if ((rej5 != RCPTS_TOTAL)); then
            log "$leg: $rej5 of $RCPTS_TOTAL recipients got 5xx"
            note[$leg]+=" only-${rej5}x5xx"
        fi
    else
        want=$((RCPTS_TOTAL - rej5 - rej4))
        wait_delivered "$deliver" $((MSGS - rej5 - rej4 < 0 ? 0 : MSGS - rej5 - rej4)) "$want" "${base:-0}" || return 0
        t1=$(newest_mtime "$deliver")
        [[ -n $t1 ]] || t1=$(date +%s.%N)
    fi
    ticks1=$(ticks_tree "$pid")
    leg_figures "$leg" "$t0" "$t1" $((ticks1 - ticks0))
}

# Probe results Postfix's delivery agents logged so far (one per probe).
pf_probes_logged() {
    echo $(($(count_in "$pfverify/maillog" "status=deliverable") + $(count_in "$pfverify/maillog" "status=undeliverable")))
}

# leg_figures LEG T0 T1 TICKS: the row of LEG, from the times, the server's
# CPU ticks, and the counters now against `before`.
leg_figures() {
    local leg=$1 t0=$2 t1=$3 seg=$work/$1.callahead n unknown conns=0
    rate[$leg]=$(awk -v m="$MSGS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", m / (b - a) }')
    secs[$leg]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    cpu[$leg]=$(awk -v c="$4" -v hz="$CLK_TCK" -v m="$MSGS" 'BEGIN { printf "%.2f", c / hz * 10000 / m }')

    # Probe connections at the server: the probe sink's (ended + open
    # sessions) or the rejector's ": connect from " lines.
    if [[ $leg == *rejected* ]]; then
        conns=$(($(settled_count "$rejector/maillog" ": connect from ") - before[rej_conns]))
        srv_rcpts[$leg]=$(per_1k $(($(settled_count "$rejector/maillog" "NOQUEUE: reject: RCPT") - before[rej_rcpts])))
    else
        sleep 0.3
        conns=$(($(sink_sessions_closed "$probe") + $(established "$probe_port") - before[probe_conns]))
        srv_rcpts[$leg]=-
    fi
    srv_conns[$leg]=$(per_1k "$conns")

    cache_ms[$leg]=-
    probe_ms[$leg]=-
    if [[ $leg == ca-* ]]; then
        [[ $leg == ca-off ]] && { probes[$leg]=-; return 0; }
        # Wait for the shards' log buffers to reach the file.
        for ((n = 0; n < 50; n++)); do
            tail -c +$((before[log_bytes] + 1)) "$pc_log" | grep -F ' callahead ' >"$seg" || true
            (($(wc -l <"$seg") >= RCPTS_TOTAL)) && break
            sleep 0.1
        done
        (($(wc -l <"$seg") >= RCPTS_TOTAL)) || note[$leg]+=" log:$(wc -l <"$seg")/$RCPTS_TOTAL-lines"
        cache_ms[$leg]=$(percentiles "$seg" cache)
        probe_ms[$leg]=$(percentiles "$seg" probe)
        probes[$leg]=$(per_1k "$(count_in "$seg" " source=probe ")")
        if [[ $leg == *rejected* ]]; then
            unknown=$(count_in "$seg" " verdict=mailbox-unknown ")
            ((unknown == RCPTS_TOTAL)) || note[$leg]+=" ${unknown}x-mailbox-unknown"
        fi
        n=$(grep -vcF -e ' source=probe ' -e ' source=cache ' "$seg" || true)
        ((n == 0)) || note[$leg]+=" ${n}-other-sources"
    else
        settled_count "$pfverify/maillog" "status=" >/dev/null
        probes[$leg]=$(per_1k $(($(pf_probes_logged) - before[pf_probes])))
    fi
}

# --- main -------------------------------------------------------------------

log "building portcullis (release)"
cargo build --release --quiet --bin portcullis || { log "cargo build failed"; exit 1; }

start_sink "$deliver" "$sink_port" -d
deliver_pid=$started_pid
start_sink "$probe" "$probe_port"
probe_pid=$started_pid
if [[ $LEGS == *rejected* ]]; then
    setup_rejector
    pf_start "$rejector"
fi
log "MSGS=$MSGS RCPTS=$RCPTS BYTES=$BYTES SESSIONS=$SESSIONS legs: $LEGS; work $work"
log "deliver sink :$sink_port, probe sink :$probe_port, rejector :$rejector_port"

for leg in $ALL_LEGS; do
    wants "$leg" || continue
    if [[ $leg == ca-* && -z $pc_pid ]]; then
        start_portcullis || { log "portcullis did not start"; exit 1; }
    fi
    if [[ $leg == pf-* && ! -f $pfverify/up ]]; then
        if [[ -n $pc_pid ]]; then
            stop_pid "$pc_pid"
            pc_pid=
        fi
        setup_pf_verify
        pf_start "$pfverify"
    fi
    log "leg $leg: $MSGS msgs x $RCPTS rcpt to @$(leg_domain "$leg"), $SESSIONS sessions"
    run_leg "$leg"
    log "leg $leg: ${rate[$leg]} ${unit[$leg]}${secs[$leg]:+ in ${secs[$leg]}s}${note[$leg]:+ (${note[$leg]# })}"
done

match() {
    case $1 in
    ca-cold) echo pf-verify-cold ;;
    ca-warm) echo pf-verify-warm ;;
    ca-rejected | ca-rejected-warm) echo pf-verify-rejected ;;
    *) echo - ;;
    esac
}

echo
printf 'Portcullis call-ahead benchmark: %d messages x %d rcpt, %d bytes, %d sessions, 1 connection per message, --cores 2, %d CPUs (%s)\n' \
    "$MSGS" "$RCPTS" "$BYTES" "$SESSIONS" "$(nproc)" "$(uname -r)"
printf 'profile: static probe server, max_connections_per_server = %s, max_recipients_per_session = 1000; rejector error limits: %s\n' \
    "$CA_MAX_CONNECTIONS" "$REJECTOR_LIMITS"
row() { printf '%-24s %7s %-7s %-18s %6s %7s %7s %10s %10s %9s %9s %9s  %s\n' "$@"; }
row leg rate unit 'vs Postfix leg' ratio refused 'cpu' 'cache ms' 'probe ms' 'probes' 'srv rcpt' 'srv conn' notes
row '' '' '' '' '' '' 's/10k' 'p50/p99' 'p50/p99' '/1k rcpt' '/1k rcpt' '/1k rcpt' ''
for leg in $ALL_LEGS; do
    wants "$leg" || continue
    m=$(match "$leg")
    row "$leg" "${rate[$leg]}" "${unit[$leg]}" "$m" "$(ratio "${rate[$leg]}" "${rate[$m]:--}")" \
        "${refused[$leg]:--}" "${cpu[$leg]:--}" "${cache_ms[$leg]:--}" "${probe_ms[$leg]:--}" \
        "${probes[$leg]:--}" "${srv_rcpts[$leg]:--}" "${srv_conns[$leg]:--}" "${note[$leg]:+${note[$leg]# }}"
done

echo
cold=$(ratio "${rate[ca-cold]:--}" "${rate[pf-verify-cold]:--}")
warm=$(ratio "${rate[ca-warm]:--}" "${rate[ca-off]:--}")
verdict() {
    if [[ $1 == - ]]; then echo "not measured"; else awk -v r="$1" -v f="$2" 'BEGIN { print (r >= f) ? "met" : "MISSED" }'; fi
}
echo "floor: ca-cold >= 20x pf-verify-cold: ${cold/%[0-9]/&x}, $(verdict "$cold" 20)"
echo "floor: ca-warm within 10 % of ca-off (>= 0.90x): ${warm/%[0-9]/&x}, $(verdict "$warm" 0.90)"
