#!/usr/bin/env bash
# LDAP benchmark (issue 8; not a test): what LDAP routing and accept queries
# cost an SMTP edge with call-ahead on, against the same leg without LDAP,
# in one run on one box, against a real slapd.
#
#   bash benches/ldap.sh                     # full run: 20,000 msgs per leg
#   MSGS=2000 bash benches/ldap.sh           # quick run
#   LEGS="ldap-off ldap-routing" MSGS=2000 bash benches/ldap.sh
#
# Every leg: smtp-source -N (recipients numbered 1rcpt@, 2rcpt@, ... from 1
# in every run, so every leg sends the very same addresses), SESSIONS (50)
# parallel sessions, one connection per message, MSGS messages of BYTES bytes
# with RCPTS recipients each, -A so a refused recipient does not abort it.
# One portcullis --cores 2 process serves every leg, one public listener per
# leg on one config: the same HAT, policy, RAT and routes, and call-ahead on
# every listener with a profile of its own, so every leg starts with an
# empty verdict cache and probes every recipient (the call-ahead work is the
# same in every leg; only the LDAP work differs).
#
#   ldap-off           call-ahead (static profile on the probe sink), no
#                      LDAP: the reference
#   ldap-routing       + `ldap_routing` (filter `(mail={d})`, cache_ttl_secs
#                      300): the domain's entry names the deliver sink as
#                      `mailHost` and the probe sink as `callAhead`
#                      (delivery-host profile, IP literals); after the first
#                      lookup every RCPT and every delivery round is a hit
#   ldap-routing-cold  the same with cache_ttl_secs 0: every RCPT and every
#                      delivery round asks the directory (lookups of the
#                      one domain key that meet in flight share a search)
#   ldap-accept-cold   ldap-routing + `ldap_accept` (filter `(mail={a})`,
#                      cache_ttl_secs 0) with an entry for every address
#                      smtp-source sends: every RCPT a directory search
#   ldap-accept-prime  the same with an accept query cached 300 s, first
#                      pass: fills its cache (run whenever ldap-accept-warm is)
#   ldap-accept-warm   that query again, the same addresses (a listener and
#                      call-ahead profile of its own): every accept a hit
#   ldap-off-end       ldap-off again at the end (a listener and profile of
#                      its own): how far the machine drifted during the run
#                      (other work on a shared box); its ratio to ldap-off
#                      is the run's noise floor
#
# Downstreams (all on 127.0.0.1, up for the whole run):
#   deliver sink   smtp-sink -d, where accepted mail goes (the route "*", or
#                  the entry's mailHost); a leg ends when it holds every
#                  recipient, at the newest dump's mtime (as in load.sh).
#   probe sink     a second smtp-sink that only call-ahead probes reach.
#   slapd          OpenLDAP, mdb with `mail` indexed, anonymous read, loaded
#                  with slapadd: the domain's routing entry and one entry per
#                  address (benches/lib.sh, slapd_start).
#
# Figures per leg: msgs/s and its ratio to ldap-off; CPU-s per 10,000
# messages of the portcullis process and of slapd (utime+stime over the
# leg); directory searches and cache hits per 1,000 recipients (the
# `portcullis_ldap_lookups_total` counters from the admin listener);
# latency p50/p99 in ms of the `ldap-accept` log lines (the accept lookup
# alone, cold or cached) and of the `callahead` log lines (the RCPT's wait
# for a verdict: routing lookup + probe; ldap-off's is the probe alone, so
# the difference is what routing adds).
#
# Every leg is checked, and the run fails (exit 1, after the table) when one
# did not do what it says: every recipient delivered and none refused; one
# `callahead` line per recipient, accepted by a probe of the probe sink,
# `ldap=off` or `ldap=entry`; one `delivered` line per recipient, `via=ldap`
# on the LDAP legs only; `ldap-accept ... result=accepted` per recipient on
# the accept legs, `cached=0` on the cold and first passes and `cached=1`
# on the warm one; directory searches and cache hits as the TTLs say.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
# shellcheck source=benches/lib.sh
source "$repo/benches/lib.sh"

MSGS=${MSGS:-20000}
SESSIONS=${SESSIONS:-50}
BYTES=${BYTES:-1024}
RCPTS=${RCPTS:-1}
ALL_LEGS="ldap-off ldap-routing ldap-routing-cold ldap-accept-cold ldap-accept-prime ldap-accept-warm ldap-off-end"
LEGS=${LEGS:-$ALL_LEGS}
# The warm pass is only warm after the first one.
[[ " $LEGS " == *" ldap-accept-warm "* && " $LEGS " != *" ldap-accept-prime "* ]] && LEGS+=" ldap-accept-prime"
# The server's default (CONFIG.md): bound connections kept to slapd.
LDAP_CONNECTIONS=${LDAP_CONNECTIONS:-4}
# The call-ahead profile's default; the whole appliance, per server.
CA_MAX_CONNECTIONS=${CA_MAX_CONNECTIONS:-5}
BENCH_DIR=${BENCH_DIR:-$repo/target/bench}
# Floor of 20 msg/s before a leg is declared stuck.
LEG_TIMEOUT=${LEG_TIMEOUT:-$((120 + MSGS / 20))}
DOMAIN=example.test
CLK_TCK=$(getconf CLK_TCK)
RCPTS_TOTAL=$((MSGS * RCPTS))

require_tools ldap.sh
for tool in /usr/sbin/slapd /usr/sbin/slapadd; do
    [[ -x $tool ]] || { echo "ldap.sh: $tool missing: apt-get install slapd ldap-utils" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "ldap.sh: curl missing (reads the admin listener's /metrics)" >&2; exit 1; }

wants() { [[ " $LEGS " == *" $1 "* ]]; }

bench_dirs ldap

deliver=$dumps/deliver
probe=$work/probe-sink
directory=$work/slapd
pc_log=$work/portcullis.log
pc_bin=$repo/target/release/portcullis

# Every port handed out so far, so no two are the same before they listen.
taken=()
sink_port=$(free_port) && taken+=("$sink_port")
probe_port=$(free_port "${taken[@]}") && taken+=("$probe_port")
ldap_port=$(free_port "${taken[@]}") && taken+=("$ldap_port")
admin_port=$(free_port "${taken[@]}") && taken+=("$admin_port")
declare -A port
for leg in $ALL_LEGS; do
    port[$leg]=$(free_port "${taken[@]}")
    taken+=("${port[$leg]}")
done

deliver_pid=
probe_pid=
pc_pid=

cleanup() {
    stop_pid "$pc_pid"
    slapd_stop
    stop_pid "$deliver_pid"
    stop_pid "$probe_pid"
    remove_run_dirs
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the directory ------------------------------------------------------------

# The routing entry of $DOMAIN (the seed's example shape: `mail: DOMAIN`,
# mailHost, callAhead with a port) and one entry per address smtp-source
# sends (`mail: Nrcpt@DOMAIN`, N from 1 to MSGS*RCPTS).
write_ldif() {
    cat <<EOF
dn: mail=$DOMAIN,$SLAPD_DOMAINS
objectClass: portcullisMailRoute
mail: $DOMAIN
mailHost: 127.0.0.1:$sink_port
callAhead: 127.0.0.1:$probe_port

EOF
    awk -v n="$RCPTS_TOTAL" -v d="$DOMAIN" -v ou="$SLAPD_PEOPLE" 'BEGIN {
        for (i = 1; i <= n; i++)
            printf "dn: mail=%drcpt@%s,%s\nobjectClass: portcullisMailRoute\nmail: %drcpt@%s\n\n", i, d, ou, i, d
    }'
}

# --- portcullis -----------------------------------------------------------------

# The LDAP queries of each leg's listener: "routing accept" ("-" = none).
leg_queries() {
    case $1 in
    ldap-off | ldap-off-end) echo "- -" ;;
    ldap-routing) echo "routing -" ;;
    ldap-routing-cold) echo "routing-cold -" ;;
    ldap-accept-cold) echo "routing accept-cold" ;;
    ldap-accept-prime | ldap-accept-warm) echo "routing accept-warm" ;;
    esac
}

write_listener() {
    local leg=$1 routing accept
    read -r routing accept <<<"$(leg_queries "$leg")"
    cat <<EOF
[[listener]]
name = "$leg"
address = "127.0.0.1:${port[$leg]}"
type = "public"
hat = "bench"
rat = "bench"
callahead = "$leg"
EOF
    [[ $routing == - ]] || echo "ldap_routing = \"$routing\""
    [[ $accept == - ]] || echo "ldap_accept = \"$accept\""
    echo
}

# A call-ahead profile per leg (an empty verdict cache each): static on the
# probe sink without LDAP; with it, delivery_host, so the probe goes where
# the entry's callAhead says (the probe sink).
write_profile() {
    local leg=$1 cache=$((2 * RCPTS_TOTAL))
    ((cache < 100)) && cache=100
    ((cache > 1000000)) && cache=1000000
    echo "[callahead.\"$leg\"]"
    if [[ $leg == ldap-off* ]]; then
        echo 'server_type = "static"'
        echo "static_servers = [\"127.0.0.1:$probe_port\"]"
    else
        echo 'server_type = "delivery_host"'
    fi
    echo "cache_entries = $cache"
    echo "max_connections_per_server = $CA_MAX_CONNECTIONS"
    echo
}

# query NAME KIND FILTER TTL
write_query() {
    echo "[ldap.query.\"$1\"]"
    echo 'server = "bench"'
    echo "kind = \"$2\""
    echo "filter = \"$3\""
    if [[ $2 == routing ]]; then
        echo 'mailhost_attribute = "mailHost"'
        echo 'callahead_attribute = "callAhead"'
    fi
    echo "cache_ttl_secs = $4"
    echo
}

write_portcullis_config() {
    local leg
    {
        cat <<EOF
hostname = "bench-portcullis.test"
admin_listen = "127.0.0.1:$admin_port"

EOF
        for leg in $ALL_LEGS; do write_listener "$leg"; done
        cat <<EOF
[[hat.bench]]
group = "ALL"
senders = ["ALL"]
policy = "BENCH"

# 50 sessions from one IP.
[policy.BENCH]
max_messages_per_connection = 1000
max_recipients_per_message = 1000
max_concurrent_connections_per_ip = 1000
dhap_max_invalid_per_hour = 0

[[rat.bench]]
recipient = "$DOMAIN"
action = "accept"

# Without LDAP (and for an entry without mailHost) mail goes here too.
[routes]
"*" = ["127.0.0.1:$sink_port"]

EOF
        for leg in $ALL_LEGS; do write_profile "$leg"; done
        cat <<EOF
[ldap.server.bench]
urls = ["ldap://127.0.0.1:$ldap_port"]
base = "$SLAPD_BASE"
connections = $LDAP_CONNECTIONS

EOF
        write_query routing routing '(mail={d})' 300
        write_query routing-cold routing '(mail={d})' 0
        write_query accept-cold accept '(mail={a})' 0
        write_query accept-warm accept '(mail={a})' 300
    } >"$1"
}

start_portcullis() {
    local conf=$work/portcullis.toml leg
    write_portcullis_config "$conf"
    "$pc_bin" check-config "$conf" >"$work/check-config.out" 2>&1 || { cat "$work/check-config.out" >&2; return 1; }
    mkdir -p "$work/portcullis-spool"
    "$pc_bin" run --config "$conf" --cores 2 --spool-dir "$work/portcullis-spool" \
        --hostname bench-portcullis.test --log-file "$pc_log" >>"$work/portcullis.out" 2>&1 &
    pc_pid=$!
    for leg in $ALL_LEGS; do
        wait_listening "${port[$leg]}" "$pc_pid" 20 || { tail -5 "$work/portcullis.out" >&2; return 1; }
    done
    wait_listening "$admin_port" "$pc_pid" 20 || { tail -5 "$work/portcullis.out" >&2; return 1; }
}

# ldap_lookups RESULT...: the sum of portcullis_ldap_lookups_total for the
# results named (hit, entry, no-entry, error), all shards.
ldap_lookups() {
    curl -s --max-time 5 "http://127.0.0.1:$admin_port/metrics" |
        awk -v want=" $* " '/^portcullis_ldap_lookups_total\{/ {
            r = $1; sub(/.*result="/, "", r); sub(/".*/, "", r)
            if (index(want, " " r " ")) n += $2
        } END { printf "%d\n", n }'
}

# --- log segments ---------------------------------------------------------------

count_in() {
    if [[ -f $1 ]]; then grep -cF -- "$2" "$1" || true; else echo 0; fi
}

# percentiles FILE [FIELD]: "p50/p99" of the FIELD= (default ms=) values
# of FILE's lines (nearest rank), "-" if none. The last one of a line: a
# quoted reason before it may hold anything.
percentiles() {
    awk -v f="${2:-ms}=" '{ v = ""; for (i = 1; i <= NF; i++) if (index($i, f) == 1 && substr($i, length(f) + 1) ~ /^[0-9.]+$/) v = substr($i, length(f) + 1); if (v != "") print v }' "$1" |
        sort -n | awk '{ v[NR] = $1 } END { if (!NR) { print "-"; exit }
                       print v[int((NR * 50 + 99) / 100)] "/" v[int((NR * 99 + 99) / 100)] }'
}

# leg_segment LEG FROM: the log since byte FROM, split by event into
# $work/LEG.{callahead,accept,delivered}, once every recipient's call-ahead
# and delivery lines are there (shards flush their log every 200 ms) or 10 s
# passed.
leg_segment() {
    local leg=$1 from=$2 i
    for ((i = 0; i < 100; i++)); do
        tail -c +$((from + 1)) "$pc_log" >"$work/$leg.log"
        grep -F ' callahead ' "$work/$leg.log" >"$work/$leg.callahead" || true
        grep -F ' ldap-accept ' "$work/$leg.log" >"$work/$leg.accept" || true
        grep -F ' delivered ' "$work/$leg.log" >"$work/$leg.delivered" || true
        (($(wc -l <"$work/$leg.callahead") >= RCPTS_TOTAL && $(wc -l <"$work/$leg.delivered") >= RCPTS_TOTAL)) && return 0
        sleep 0.1
    done
}

# --- one leg --------------------------------------------------------------------

declare -A rate secs cpu slapd_cpu searches hits accept_ms cached_share ca_ms routing_ms note
failures=()

# fail LEG WHAT: the leg did not do what it says.
fail() {
    note[$1]+=" $2"
    failures+=("$1: $2")
}

# expect LEG WHAT GOT WANT
expect() { (($3 == $4)) || fail "$1" "$2=$3/$4"; }

run_leg() {
    local leg=$1 out=$work/$1.source t0 t1 ticks0 ticks1 sticks0 sticks1 rc=0 base from rej s0 h0 s1 h1
    rate[$leg]=fail
    find "$deliver" -type f -delete
    base=$(sink_messages "$deliver")
    from=$(stat -c %s "$pc_log" 2>/dev/null || echo 0)
    s0=$(ldap_lookups entry no-entry error)
    h0=$(ldap_lookups hit)
    ticks0=$(ticks_tree "$pc_pid")
    sticks0=$(ticks_tree "$slapd_pid")

    t0=$(date +%s.%N)
    timeout "$LEG_TIMEOUT" /usr/sbin/smtp-source -A -N -s "$SESSIONS" -m "$MSGS" -r "$RCPTS" -l "$BYTES" \
        -f "bench@client.test" -t "rcpt@$DOMAIN" -M client.test "127.0.0.1:${port[$leg]}" >"$out" 2>&1 || rc=$?
    rej=$(count_in "$out" "recipient rejected:")
    if ((rc != 0)); then
        fail "$leg" "smtp-source-exit-$rc"
        log "$leg: smtp-source exited $rc: $(tail -2 "$out")"
        return 0
    fi
    if ((rej != 0)); then
        fail "$leg" "${rej}-refused"
        log "$leg: $rej recipients refused, e.g. $(grep -m1 -F 'recipient rejected:' "$out")"
        return 0
    fi
    wait_delivered "$deliver" "$MSGS" "$RCPTS_TOTAL" "${base:-0}" || { fail "$leg" "not-delivered"; return 0; }
    t1=$(newest_mtime "$deliver")
    [[ -n $t1 ]] || t1=$(date +%s.%N)
    ticks1=$(ticks_tree "$pc_pid")
    sticks1=$(ticks_tree "$slapd_pid")

    rate[$leg]=$(awk -v m="$MSGS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", m / (b - a) }')
    secs[$leg]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    cpu[$leg]=$(per_10k_msgs $((ticks1 - ticks0)))
    slapd_cpu[$leg]=$(per_10k_msgs $((sticks1 - sticks0)))
    leg_segment "$leg" "$from"
    s1=$(ldap_lookups entry no-entry error)
    h1=$(ldap_lookups hit)
    searches[$leg]=$(per_1k_rcpts $((s1 - s0)))
    hits[$leg]=$(per_1k_rcpts $((h1 - h0)))
    ca_ms[$leg]=$(percentiles "$work/$leg.callahead")
    routing_ms[$leg]=$(percentiles "$work/$leg.callahead" ldap_ms)
    accept_ms[$leg]=$(percentiles "$work/$leg.accept")
    check_leg "$leg" $((s1 - s0)) $((h1 - h0))
}

per_10k_msgs() { awk -v c="$1" -v hz="$CLK_TCK" -v m="$MSGS" 'BEGIN { printf "%.2f", c / hz * 10000 / m }'; }
per_1k_rcpts() { awk -v n="$1" -v d="$RCPTS_TOTAL" 'BEGIN { printf "%.1f", n * 1000 / d }'; }

# check_leg LEG SEARCHES HITS: the leg's log says it did what it is named for.
check_leg() {
    local leg=$1 n=$2 h=$3 seg=$work/$1 ldap=entry via=$RCPTS_TOTAL cached
    [[ $leg == ldap-off* ]] && { ldap=off; via=0; }
    expect "$leg" callahead-lines "$(wc -l <"$seg.callahead")" "$RCPTS_TOTAL"
    expect "$leg" probed-accepted "$(grep -F ' source=probe ' "$seg.callahead" | grep -cF ' verdict=accepted ' || true)" "$RCPTS_TOTAL"
    expect "$leg" probe-sink "$(count_in "$seg.callahead" " server=127.0.0.1:$probe_port ")" "$RCPTS_TOTAL"
    expect "$leg" "ldap=$ldap" "$(count_in "$seg.callahead" " ldap=$ldap ")" "$RCPTS_TOTAL"
    expect "$leg" delivered-lines "$(wc -l <"$seg.delivered")" "$RCPTS_TOTAL"
    expect "$leg" via=ldap "$(count_in "$seg.delivered" " via=ldap ")" "$via"
    case $leg in
    ldap-off*)
        expect "$leg" accept-lines "$(wc -l <"$seg.accept")" 0
        expect "$leg" searches "$n" 0
        ;;
    ldap-routing)
        expect "$leg" accept-lines "$(wc -l <"$seg.accept")" 0
        # One search per run (the first lookup; more only if the TTL ran out).
        ((n <= 2)) || fail "$leg" "searches=$n/<=2"
        ;;
    ldap-routing-cold)
        # Nothing cached: every lookup a search. Lookups of the one domain
        # key that meet in flight share one search (single flight), so
        # there are fewer searches than lookups, but never a hit.
        ((n > 0)) || fail "$leg" "searches=0"
        expect "$leg" hits "$h" 0
        ;;
    ldap-accept-*)
        expect "$leg" accepted "$(count_in "$seg.accept" " result=accepted ")" "$RCPTS_TOTAL"
        cached=$(count_in "$seg.accept" " cached=1 ")
        cached_share[$leg]=$(awk -v c="$cached" -v n="$RCPTS_TOTAL" 'BEGIN { printf "%.1f%%", c * 100 / n }')
        if [[ $leg == ldap-accept-warm ]]; then
            expect "$leg" cached=1 "$cached" "$RCPTS_TOTAL"
        else
            expect "$leg" cached=0 "$(count_in "$seg.accept" " cached=0 ")" "$RCPTS_TOTAL"
            ((n >= RCPTS_TOTAL)) || fail "$leg" "searches=$n/>=$RCPTS_TOTAL"
        fi
        ;;
    esac
}

# --- main -----------------------------------------------------------------------

log "building portcullis (release)"
cargo build --release --quiet --bin portcullis || { log "cargo build failed"; exit 1; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
start_sink "$deliver" "$sink_port" -d
deliver_pid=$started_pid
start_sink "$probe" "$probe_port"
probe_pid=$started_pid
mkdir -p "$directory"
write_ldif >"$work/entries.ldif"
slapd_start "$directory" "$ldap_port" "$work/entries.ldif" || { log "slapd did not start"; exit 1; }
start_portcullis || { log "portcullis did not start"; exit 1; }
log "MSGS=$MSGS RCPTS=$RCPTS BYTES=$BYTES SESSIONS=$SESSIONS legs: $LEGS; work $work"
log "deliver sink :$sink_port, probe sink :$probe_port, slapd :$ldap_port ($((RCPTS_TOTAL + 1)) entries), admin :$admin_port"

for leg in $ALL_LEGS; do
    wants "$leg" || continue
    log "leg $leg: $MSGS msgs x $RCPTS rcpt to @$DOMAIN, $SESSIONS sessions, queries: $(leg_queries "$leg")"
    run_leg "$leg"
    log "leg $leg: ${rate[$leg]} msg/s${secs[$leg]:+ in ${secs[$leg]}s}${note[$leg]:+ (${note[$leg]# })}"
done

echo
printf 'Portcullis LDAP benchmark: %d messages x %d rcpt, %d bytes, %d sessions, 1 connection per message, --cores 2, %d CPUs (%s)\n' \
    "$MSGS" "$RCPTS" "$BYTES" "$SESSIONS" "$(nproc)" "$(uname -r)"
printf 'call-ahead on every leg (a fresh profile each: every RCPT probed), max_connections_per_server = %s; slapd %s, LDAP connections = %s\n' \
    "$CA_MAX_CONNECTIONS" "$(/usr/sbin/slapd -VV 2>&1 | sed -n '1s/.*slapd \([^ ]*\).*/\1/p')" "$LDAP_CONNECTIONS"
# Other work on the box shows here (msgs/s suffers; CPU-s per message less).
printf 'load average (1/5/15 min) at the start: %s, at the end: %s\n' "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)"
row() { printf '%-18s %7s %6s %7s %7s %9s %9s %15s %7s %15s %15s  %s\n' "$@"; }
row leg msg/s 'vs off' 'cpu' 'slapd' 'searches' 'hits' 'accept ms' 'cached' 'routing ms' 'callahead ms' notes
row '' '' '' 's/10k' 's/10k' '/1k rcpt' '/1k rcpt' 'p50/p99' '' 'p50/p99' 'p50/p99' ''
for leg in $ALL_LEGS; do
    wants "$leg" || continue
    row "$leg" "${rate[$leg]}" "$(ratio "${rate[$leg]}" "${rate[ldap-off]:--}")" "${cpu[$leg]:--}" "${slapd_cpu[$leg]:--}" \
        "${searches[$leg]:--}" "${hits[$leg]:--}" "${accept_ms[$leg]:--}" "${cached_share[$leg]:--}" "${routing_ms[$leg]:--}" "${ca_ms[$leg]:--}" \
        "${note[$leg]:+${note[$leg]# }}"
done

if ((${#failures[@]})); then
    echo
    echo "CHECKS FAILED (a leg did not do what it says; its figures mean nothing):"
    printf '  %s\n' "${failures[@]}"
    exit 1
fi
