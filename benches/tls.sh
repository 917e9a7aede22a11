#!/usr/bin/env bash
# TLS benchmark (issue 9; not a test): what STARTTLS on every inbound
# session costs Portcullis, against itself in clear and against Postfix
# with and without TLS, in one run on the same box.
#
#   bash benches/tls.sh                         # 5,000 msgs a leg, RSA-2048
#   CERT_KEY=p256 bash benches/tls.sh           # an ECDSA P-256 certificate
#   ROUNDS=3 MSGS=10000 bash benches/tls.sh     # medians of 3 rounds
#   RESUME=1 bash benches/tls.sh                # the client resumes sessions
#
# smtp-source cannot speak TLS, so every leg is driven by the same client,
# benches/smtp_load.rs (rustls on std threads, built here as the example
# target/release/examples/smtp_load): CLIENTS threads, each running its
# sessions one after another, PER_SESSION messages of 1 KiB to one
# recipient per session, one command at a time. Its handshakes are full
# ones (RESUME=1: it may resume, from one session cache all its threads
# share) and it verifies the server's certificate against the run's own
# CA, as a sending MTA with DANE or a CA store would.
# Legs (the same client options but --starttls):
#
#   pc-clear  smtp_load -> portcullis --cores 2 (policy tls = "off") -> smtp-sink
#   pc-tls    smtp_load --starttls -> portcullis (tls = "preferred") -> smtp-sink
#   pf-clear  smtp_load -> private Postfix smtpd (smtpd_tls_security_level = none) -> smtp-sink
#   pf-tls    smtp_load --starttls -> Postfix smtpd (smtpd_tls_security_level = may) -> smtp-sink
#
# for each PER_SESSION in "1 10" (1: one message per session, handshake
# dominated; 10: ten messages share one handshake). Portcullis runs once
# with two listeners (one per policy), Postfix once with two smtpd services
# (the clear one with `-o smtpd_tls_security_level=none`); both use the
# same certificate and key. One smtp-sink takes all the mail.
#
# A leg runs from the client's start until the sink holds every message
# (the newest dump file's mtime), as in load.sh. CPU: utime+stime of the
# server's process tree (lib.sh ticks_tree) before and after, per session.
# The handshake's CPU cost per session is the TLS leg's minus the clear
# leg's. The 1-message legs give it best; at 10 messages a session there
# are a tenth as many sessions and the tick resolution (1/CLK_TCK) shows.
# Handshake ms: the client's wall clock from the STARTTLS 220 to the end of
# the handshake (both sides' CPU and the scheduler of a shared 2-CPU box),
# and Portcullis's own `tls … ms=` log figure (from its STARTTLS 220 to
# the client's Finished). Their p99 is mostly the first CLIENTS
# handshakes, which arrive at once: a shard signs for one after another.
#
# Everything listens on 127.0.0.1; the system Postfix (if any) is neither
# used nor touched. Temporary files go under BENCH_DIR and /dev/shm and are
# removed at exit (KEEP=1 keeps the run directory).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
# shellcheck source=benches/lib.sh
source "$repo/benches/lib.sh"

MSGS=${MSGS:-5000}
CLIENTS=${CLIENTS:-50}
PER_SESSION=${PER_SESSION:-"1 10"}
LEGS=${LEGS:-"pc-clear pc-tls pf-clear pf-tls"}
ROUNDS=${ROUNDS:-1}
# rsa2048 (what most MX hosts present) or p256 (ECDSA, far cheaper to sign).
CERT_KEY=${CERT_KEY:-rsa2048}
RESUME=${RESUME:-}
BENCH_DIR=${BENCH_DIR:-$repo/target/bench}
# Floor of 20 msg/s before a leg is declared stuck.
LEG_TIMEOUT=${LEG_TIMEOUT:-$((120 + MSGS / 20))}
DOMAIN=example.test
CLK_TCK=$(getconf CLK_TCK)

require_tools tls.sh
command -v openssl >/dev/null || { echo "tls.sh: openssl missing (makes the run's certificates)" >&2; exit 1; }
case $CERT_KEY in
rsa2048) key_opts=(-newkey rsa:2048) ;;
p256) key_opts=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
*) echo "tls.sh: CERT_KEY=$CERT_KEY: rsa2048 or p256" >&2; exit 1 ;;
esac

wants() { [[ " $LEGS " == *" $1 "* ]]; }

bench_dirs tls

deliver=$dumps/deliver
pki=$work/pki
pc_log=$work/portcullis.log
pc_bin=$repo/target/release/portcullis
client_bin=$repo/target/release/examples/smtp_load

taken=()
sink_port=$(free_port) && taken+=("$sink_port")
declare -A port
for leg in pc-clear pc-tls pf-clear pf-tls; do
    port[$leg]=$(free_port "${taken[@]}")
    taken+=("${port[$leg]}")
done

sink_pid=
pc_pid=
pf_dir=$work/postfix

cleanup() {
    stop_pid "$pc_pid"
    pf_stop "$pf_dir"
    stop_pid "$sink_pid"
    remove_run_dirs
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- certificates -------------------------------------------------------------

# A CA and a server certificate it signs (SAN 127.0.0.1 and localhost), as
# tests/common/certs.rs makes them: webpki refuses a self-signed leaf.
make_pki() {
    mkdir -p "$pki"
    (
        cd "$pki"
        openssl req -x509 "${key_opts[@]}" -nodes -keyout ca.key -out ca.pem -days 2 \
            -subj "/CN=Portcullis Bench CA" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl req "${key_opts[@]}" -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
            -days 2 -extfile server.ext 2>/dev/null
        # Postfix's smtpd reads the key as root before it drops privileges;
        # the directory is the run's own and goes at exit.
        chmod 0644 server.key
    ) || { log "openssl could not make the certificates"; return 1; }
}

# --- portcullis -------------------------------------------------------------------

write_portcullis_config() {
    cat >"$1" <<EOF
hostname = "bench-portcullis.test"
admin_listen = ""

[tls]
certificate = "$pki/server.pem"
private_key = "$pki/server.key"

[[listener]]
name = "clear"
address = "127.0.0.1:${port[pc-clear]}"
type = "public"
rat = "bench"
unmatched_policy = "CLEAR"

[[listener]]
name = "tls"
address = "127.0.0.1:${port[pc-tls]}"
type = "public"
rat = "bench"
unmatched_policy = "TLS"

# $CLIENTS sessions from one IP, up to 10 messages each.
[policy.CLEAR]
tls = "off"
max_messages_per_connection = 1000
max_recipients_per_message = 1000
max_concurrent_connections_per_ip = 1000
dhap_max_invalid_per_hour = 0

[policy.TLS]
tls = "preferred"
max_messages_per_connection = 1000
max_recipients_per_message = 1000
max_concurrent_connections_per_ip = 1000
dhap_max_invalid_per_hour = 0

[[rat.bench]]
recipient = "$DOMAIN"
action = "accept"

[routes]
"*" = ["127.0.0.1:$sink_port"]
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
    local leg
    for leg in pc-clear pc-tls; do
        wait_listening "${port[$leg]}" "$pc_pid" 20 || { tail -5 "$work/portcullis.out" >&2; return 1; }
    done
}

# --- postfix ------------------------------------------------------------------------

# The relay of load.sh, plus TLS: `may` on the first smtpd service, none on
# a second one, the run's certificate, TLS 1.2 and up, no session cache
# (the client never resumes), and tlsmgr (smtpd asks it for seeding).
setup_postfix() {
    pf_write "$pf_dir" "${port[pf-tls]}" bench-postfix.test
    cat >>"$pf_dir/etc/master.cf" <<EOF
127.0.0.1:${port[pf-clear]} inet n - n - - smtpd -o smtpd_tls_security_level=none
tlsmgr    unix  - - n 1000? 1 tlsmgr
EOF
    cat >>"$pf_dir/etc/main.cf" <<EOF
relay_domains = $DOMAIN
relay_transport = relay:[127.0.0.1]:$sink_port
relayhost = [127.0.0.1]:$sink_port
# Up to CLIENTS smtpd processes per service and 50 parallel deliveries.
default_process_limit = $((CLIENTS * 2 + 50))
default_destination_concurrency_limit = 50
relay_destination_concurrency_limit = 50
initial_destination_concurrency = 10
smtpd_tls_security_level = may
smtpd_tls_chain_files = $pki/server.key, $pki/server.pem
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_session_cache_database =
smtpd_tls_received_header = yes
smtpd_tls_loglevel = 0
smtp_tls_security_level = none
EOF
    pf_check "$pf_dir"
}

start_postfix() {
    pf_start "$pf_dir" || return 1
    wait_listening "${port[pf-clear]}" "$(pf_master_pid "$pf_dir")" 20
}

# --- one leg --------------------------------------------------------------------------

# client_field FILE KEY: KEY's value on the client's summary line.
client_field() { sed -n "s/^smtp_load .*\\b$2=\\([^ ]*\\).*/\\1/p" "$1" | tail -1; }

# server_handshakes FROM: the `tls` log lines Portcullis wrote since byte
# FROM into $work/leg.tls, once WANT of them are there (shards flush their
# log every 200 ms) or 10 s passed.
server_handshakes() {
    local from=$1 want=$2 i
    for ((i = 0; i < 100; i++)); do
        tail -c +$((from + 1)) "$pc_log" | grep -F ' tls conn=' >"$work/leg.tls" || true
        (($(wc -l <"$work/leg.tls") >= want)) && return 0
        sleep 0.1
    done
}

# percentiles FILE: "p50/p99" of the ms= values (nearest rank), "-" if none.
percentiles() {
    sed -n 's/.* ms=\([0-9.]*\).*/\1/p' "$1" | sort -n |
        awk '{ v[NR] = $1 } END { if (!NR) { print "-"; exit } print v[int((NR * 50 + 99) / 100)] "/" v[int((NR * 99 + 99) / 100)] }'
}

declare -A rate client_rate cpu_ms hs_client hs_server note
failures=()

fail() {
    note[$1]+=" $2"
    failures+=("$1: $2")
}

# run_leg KEY LEG M: KEY names the results (round.M.leg).
run_leg() {
    local key=$1 leg=$2 m=$3 out=$work/leg.out per_thread sessions total server rc=0 base from t0 t1 ticks0 ticks1 tls=()
    per_thread=$((MSGS / (CLIENTS * m)))
    ((per_thread > 0)) || per_thread=1
    sessions=$((CLIENTS * per_thread))
    total=$((sessions * m))
    rate[$key]=fail
    [[ $leg == *-tls ]] && tls=(--starttls --ca "$pki/ca.pem" ${RESUME:+--resume})
    case $leg in
    pc-*) server=$pc_pid ;;
    pf-*) server=$(pf_master_pid "$pf_dir") ;;
    esac
    find "$deliver" -type f -delete
    base=$(sink_messages "$deliver")
    from=$(stat -c %s "$pc_log" 2>/dev/null || echo 0)
    ticks0=$(ticks_tree "$server")

    t0=$(date +%s.%N)
    timeout "$LEG_TIMEOUT" "$client_bin" --threads "$CLIENTS" --sessions "$per_thread" --messages "$m" "${tls[@]}" \
        --from "bench@client.test" --to "rcpt@$DOMAIN" "127.0.0.1:${port[$leg]}" >"$out" 2>"$out.err" || rc=$?
    if ((rc != 0)); then
        fail "$key" "smtp_load-exit-$rc"
        log "$key: smtp_load exited $rc: $(head -3 "$out.err")"
        return 0
    fi
    wait_delivered "$deliver" "$total" "$total" "${base:-0}" || { fail "$key" "not-delivered"; return 0; }
    t1=$(newest_mtime "$deliver")
    [[ -n $t1 ]] || t1=$(date +%s.%N)
    ticks1=$(ticks_tree "$server")

    rate[$key]=$(awk -v n="$total" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
    client_rate[$key]=$(client_field "$out" msgs_per_sec | cut -d. -f1)
    cpu_ms[$key]=$(awk -v c=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v s="$sessions" 'BEGIN { printf "%.3f", c / hz * 1000 / s }')
    check_leg "$key" "$leg" "$out" "$sessions" "$total" "$from"
}

# check_leg KEY LEG OUT SESSIONS MSGS FROM: the leg did what it is named for.
check_leg() {
    local key=$1 leg=$2 out=$3 sessions=$4 total=$5 from=$6 handshakes resumed want=0
    [[ $(client_field "$out" sessions) == "$sessions" ]] || fail "$key" "sessions=$(client_field "$out" sessions)/$sessions"
    [[ $(client_field "$out" messages) == "$total" ]] || fail "$key" "messages=$(client_field "$out" messages)/$total"
    handshakes=$(client_field "$out" handshakes)
    [[ $leg == *-tls ]] && want=$sessions
    [[ $handshakes == "$want" ]] || fail "$key" "handshakes=$handshakes/$want"
    resumed=$(client_field "$out" resumed)
    if [[ -z $RESUME ]]; then
        [[ $resumed == 0 ]] || fail "$key" "resumed=$resumed"
    elif [[ $leg == *-tls ]]; then
        note[$key]+=" resumed=$resumed"
    fi
    hs_client[$key]="$(client_field "$out" handshake_ms_p50)/$(client_field "$out" handshake_ms_p99)"
    [[ $leg == *-tls ]] || hs_client[$key]=-
    if [[ $leg == pc-* ]]; then
        server_handshakes "$from" "$want"
        [[ $(wc -l <"$work/leg.tls") == "$want" ]] || fail "$key" "tls-lines=$(wc -l <"$work/leg.tls")/$want"
        [[ $(grep -c ' result=ok ' "$work/leg.tls") == "$want" ]] || fail "$key" "tls-ok=$(grep -c ' result=ok ' "$work/leg.tls")/$want"
        hs_server[$key]=$(percentiles "$work/leg.tls")
    fi
    if [[ $leg == *-tls ]]; then note[$key]+=" $(client_field "$out" tls)"; fi
}

# --- the report -----------------------------------------------------------------------

# median VALUES...: of the numeric ones, "-" if none.
median() {
    printf '%s\n' "$@" | { grep -E '^[0-9.]+$' || true; } | sort -n |
        awk '{ v[NR] = $1 } END { if (!NR) { print "-"; exit } print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# over_rounds MAP M LEG: the median of MAP[round.M.LEG] over the rounds.
over_rounds() {
    local -n map=$1
    local r values=()
    for ((r = 1; r <= ROUNDS; r++)); do values+=("${map[$r.$2.$3]:--}"); done
    median "${values[@]}"
}

# handshake_cpu TLS_CPU CLEAR_CPU: milliseconds of CPU per session.
handshake_cpu() {
    if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]]; then awk -v t="$1" -v c="$2" 'BEGIN { printf "%.3f", t - c }'; else echo -; fi
}

print_report() {
    local m leg r key pc_clear pc_tls pf_clear pf_tls row
    echo
    printf 'Portcullis TLS benchmark: %d messages a leg (1 KiB, 1 rcpt), %d client threads (smtp_load), %s, %s certificate, --cores 2, %d CPUs (%s), %d round(s)\n' \
        "$MSGS" "$CLIENTS" "$([[ -n $RESUME ]] && echo 'resumption allowed' || echo 'full handshakes')" "$CERT_KEY" "$(nproc)" "$(uname -r)" "$ROUNDS"
    printf 'Postfix %s (OpenSSL %s); load average (1/5/15 min) at the start: %s, at the end: %s\n' \
        "$(/usr/sbin/postconf -d -h mail_version 2>/dev/null)" "$(openssl version | cut -d' ' -f2)" "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)"
    row='%-6s %-9s %7s %8s %10s %15s %15s  %s\n'
    # shellcheck disable=SC2059 # the format is the row's
    printf "$row" round leg 'msg/s' 'accept' 'CPU ms' 'handshake ms' 'server hs ms' notes
    # shellcheck disable=SC2059
    printf "$row" '' 'x msgs' '' 'msg/s' '/session' 'client p50/p99' 'p50/p99' ''
    for ((r = 1; r <= ROUNDS; r++)); do
        for m in $PER_SESSION; do
            for leg in $LEGS; do
                key=$r.$m.$leg
                # shellcheck disable=SC2059
                printf "$row" "$r" "$leg x$m" "${rate[$key]:--}" "${client_rate[$key]:--}" "${cpu_ms[$key]:--}" \
                    "${hs_client[$key]:--}" "${hs_server[$key]:--}" "${note[$key]:+${note[$key]# }}"
            done
        done
    done
    echo
    echo "Medians over the rounds; handshake CPU = the TLS leg's CPU per session minus the clear leg's."
    printf '%-9s %9s %9s %9s %9s %9s %9s %9s %11s %11s\n' msgs/sess 'pc clear' 'pc tls' 'pf clear' 'pf tls' \
        'pc tls/' 'pc tls/' 'pf tls/' 'pc hs CPU' 'pf hs CPU'
    printf '%-9s %9s %9s %9s %9s %9s %9s %9s %11s %11s\n' '' 'msg/s' 'msg/s' 'msg/s' 'msg/s' 'pc clear' 'pf tls' 'pf clear' 'ms/session' 'ms/session'
    for m in $PER_SESSION; do
        pc_clear=$(over_rounds rate "$m" pc-clear)
        pc_tls=$(over_rounds rate "$m" pc-tls)
        pf_clear=$(over_rounds rate "$m" pf-clear)
        pf_tls=$(over_rounds rate "$m" pf-tls)
        printf '%-9s %9s %9s %9s %9s %9s %9s %9s %11s %11s\n' "$m" "$pc_clear" "$pc_tls" "$pf_clear" "$pf_tls" \
            "$(ratio "$pc_tls" "$pc_clear")" "$(ratio "$pc_tls" "$pf_tls")" "$(ratio "$pf_tls" "$pf_clear")" \
            "$(handshake_cpu "$(over_rounds cpu_ms "$m" pc-tls)" "$(over_rounds cpu_ms "$m" pc-clear)")" \
            "$(handshake_cpu "$(over_rounds cpu_ms "$m" pf-tls)" "$(over_rounds cpu_ms "$m" pf-clear)")"
    done
}

# --- main -------------------------------------------------------------------------------

log "building portcullis and smtp_load (release)"
cargo build --release --quiet --bin portcullis --example smtp_load || { log "cargo build failed"; exit 1; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
make_pki
start_sink "$deliver" "$sink_port" -d
sink_pid=$started_pid
if wants pc-clear || wants pc-tls; then
    start_portcullis || { log "portcullis did not start"; exit 1; }
fi
if wants pf-clear || wants pf-tls; then
    setup_postfix
    start_postfix || { log "postfix did not start"; exit 1; }
fi
log "MSGS=$MSGS CLIENTS=$CLIENTS PER_SESSION=$PER_SESSION CERT_KEY=$CERT_KEY ROUNDS=$ROUNDS legs: $LEGS; work $work"
log "sink :$sink_port; portcullis clear :${port[pc-clear]} tls :${port[pc-tls]}; postfix clear :${port[pf-clear]} tls :${port[pf-tls]}"

for ((round = 1; round <= ROUNDS; round++)); do
    for m in $PER_SESSION; do
        for leg in $LEGS; do
            key=$round.$m.$leg
            log "round $round leg $leg: $MSGS msgs, $m per session, $CLIENTS clients"
            run_leg "$key" "$leg" "$m"
            log "round $round leg $leg x$m: ${rate[$key]} msg/s, CPU ${cpu_ms[$key]:--} ms/session${note[$key]:+ (${note[$key]# })}"
        done
    done
done

print_report

if ((${#failures[@]})); then
    echo
    echo "CHECKS FAILED (a leg did not do what it says; its figures mean nothing):"
    printf '  %s\n' "${failures[@]}"
    exit 1
fi
