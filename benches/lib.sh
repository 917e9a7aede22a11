# shellcheck shell=bash
# Helpers shared by the load benchmarks (sourced by benches/load.sh,
# benches/callahead.sh and benches/ldap.sh, never run): loopback ports and
# readiness, process CPU accounting, smtp-sink counters and dumps, private
# Postfix instances and a private slapd. Callers set `set -euo pipefail` and LEG_TIMEOUT.
#
# Everything listens on 127.0.0.1 only. A private Postfix instance lives in
# one directory (etc/, queue/, data/, maillog) with its own master: the
# system Postfix (if any) is neither used nor touched.

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

# require_tools SCRIPT: the Postfix programs every leg needs, or exit.
require_tools() {
    local tool
    for tool in /usr/sbin/smtp-sink /usr/sbin/smtp-source /usr/sbin/postfix /usr/sbin/postconf; do
        [[ -x $tool ]] || { echo "$1: $tool missing: run 'bash tests/run.sh' once (installs postfix)" >&2; exit 1; }
    done
}

# bench_dirs NAME: sets `work`, a run directory under BENCH_DIR (same disk
# as a spool an operator would test), and `dumps`, where sinks dump mail
# (tmpfs when there is one, so sinks never compete with spools for the disk).
bench_dirs() {
    mkdir -p "$BENCH_DIR"
    work=$(mktemp -d "$BENCH_DIR/$1.XXXXXX")
    # Postfix daemons run as user postfix and must traverse down to their queue.
    chmod 0755 "$work"
    if [[ -d /dev/shm && -w /dev/shm ]]; then
        dumps=$(mktemp -d "/dev/shm/portcullis-$1.XXXXXX")
    else
        dumps=$work/dumps
        mkdir -p "$dumps"
    fi
    chmod 0755 "$dumps"
}

# --- ports and readiness ----------------------------------------------------

# Hex "0100007F:PPPP" entries in LISTEN state (0A) from the kernel table: a
# readiness check that opens no SMTP session.
listening() {
    local hex
    hex=$(printf '0100007F:%04X' "$1")
    awk -v h="$hex" '$2 == h && $4 == "0A" { found = 1 } END { exit !found }' /proc/net/tcp
}

# free_port [TAKEN...]: a port below the ephemeral range (32768+), so client
# connections of the benchmark itself cannot take it, that nothing listens
# on and that is none of TAKEN (ports handed out but not listening yet).
free_port() {
    local i port
    for ((i = 0; i < 500; i++)); do
        port=$((20000 + RANDOM % 12000))
        [[ " $* " == *" $port "* ]] && continue
        listening "$port" || { echo "$port"; return 0; }
    done
    echo "bench: no free port" >&2
    return 1
}

# wait_listening PORT PID SECONDS: poll until PORT listens; fail early if PID
# (when given) died.
wait_listening() {
    local port=$1 pid=$2 deadline=$((SECONDS + $3))
    while ((SECONDS < deadline)); do
        listening "$port" && return 0
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.05
    done
    return 1
}

# wait_gone PID SECONDS
wait_gone() {
    local pid=$1 deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    return 1
}

stop_pid() {
    local pid=$1
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    wait_gone "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# established PORT: server-side TCP connections open on 127.0.0.1:PORT now.
established() {
    local hex
    hex=$(printf '0100007F:%04X' "$1")
    awk -v h="$hex" '$2 == h && $4 == "01" { n++ } END { print n + 0 }' /proc/net/tcp
}

# --- CPU accounting ---------------------------------------------------------

# Fields of /proc/PID/stat after the ")" that ends the command name:
# $2 ppid, $12 utime, $13 stime, $14 cutime, $15 cstime (clock ticks).
stat_fields() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null; }

# ticks_tree PID: own + reaped children's time of PID, plus live children.
# Children are read before PID, so a child that exits in between is counted
# twice at worst, never missed.
ticks_tree() {
    local root=$1 children=0 own
    # cat, not awk FILES: a process may exit between the glob and the read.
    children=$({ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v p="$root" '{
                   sub(/^.*\) /, ""); split($0, f, " ");
                   if (f[2] == p) t += f[12] + f[13] + f[14] + f[15]
               } END { print t + 0 }')
    own=$({ stat_fields "$root" || true; } | awk '{ print $12 + $13 + $14 + $15 }')
    echo $((children + ${own:-0}))
}

# Live direct children of PID.
children_of() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } |
        awk -v p="$1" '{ pid = $1; sub(/^.*\) /, ""); split($0, f, " "); if (f[2] == p) print pid }'
}

# --- smtp-sink --------------------------------------------------------------

# The running message counter of a sink started with -c and stdout to
# DIR.counters ("mesg=N" after each final dot).
sink_messages() {
    { tail -c 100 "$1.counters" 2>/dev/null || true; } | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1
}

# The sessions a sink started with -c has seen end ("sess=N" counts at
# disconnect, so connections still open are not in it).
sink_sessions_closed() {
    { tail -c 100 "$1.counters" 2>/dev/null || true; } | tr '\r' '\n' | sed -n 's/.*sess=\([0-9]*\).*/\1/p' | tail -1
}

# start_sink DIR PORT [-d]: smtp-sink with running counters in DIR.counters;
# with -d it dumps each transaction into DIR. Sets started_pid.
started_pid=
start_sink() {
    local dir=$1 port=$2 user=() dump=()
    # smtp-sink refuses to run as root without -u.
    ((EUID == 0)) && user=(-u nobody)
    if [[ ${3:-} == -d ]]; then
        mkdir -p "$dir"
        chmod 1777 "$dir"
        dump=(-d "$dir/")
    fi
    /usr/sbin/smtp-sink "${user[@]}" -c "${dump[@]}" "127.0.0.1:$port" 1024 >"$dir.counters" 2>"$dir.err" &
    started_pid=$!
    wait_listening "$port" "$started_pid" 10 || { cat "$dir.err" >&2; return 1; }
}

# The end of a run (the scripts' cleanup): the sink dumps go, and the run
# directory $work too unless KEEP is set.
remove_run_dirs() {
    rm -rf "$dumps"
    if [[ -n ${KEEP:-} ]]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
}

# Recipients in the transactions dumped to DIR (smtp-sink -d).
dumped_recipients() {
    { find "$1" -type f -print0 | xargs -0 -r grep -h '^X-Rcpt-Args:' || true; } | wc -l
}

# wait_delivered DIR MSGS RCPTS [BASE]: poll the cheap message counter until
# it reaches BASE + MSGS, then confirm by counting recipients in the dumps
# (a relay may legitimately split a message's recipients over several
# transactions). BASE: the counter before the leg, for a sink kept running
# across legs (whose dump files the caller removed in between).
wait_delivered() {
    local dir=$1 want_msgs=$2 want_rcpts=$3 base=${4:-0} deadline=$((SECONDS + LEG_TIMEOUT)) n rcpts
    while ((SECONDS < deadline)); do
        n=$(sink_messages "$dir")
        if ((${n:-0} - base >= want_msgs)); then
            rcpts=$(dumped_recipients "$dir")
            ((rcpts >= want_rcpts)) && return 0
        fi
        sleep 0.1
    done
    log "timeout: sink has $((${n:-0} - base)) messages / ${rcpts:-?} recipients, want $want_msgs / $want_rcpts"
    return 1
}

newest_mtime() { find "$1" -type f -printf '%T@\n' | sort -n | tail -1; }

# ratio A B: A/B with two decimals, "-" unless both are numbers and B > 0.
ratio() {
    if [[ $1 =~ ^[0-9.]+$ && $2 =~ ^[0-9.]+$ ]] && awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
    else
        echo -
    fi
}

# --- private Postfix instances ----------------------------------------------

# pf_write DIR PORT HOSTNAME: a private instance in DIR whose smtpd listens
# on 127.0.0.1:PORT: master.cf, and the main.cf lines every instance here
# shares (no local delivery, no DNS, logging to DIR/maillog). The caller
# appends its role (relay domains, transports, restrictions, process
# limits) to DIR/etc/main.cf, then runs pf_check.
pf_write() {
    local dir=$1 port=$2 host=$3
    mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
    # The master takes its lock in data_directory as mail_owner.
    chown postfix: "$dir/data"
    # Only the services a relay needs; chroot off, because a chroot would
    # need copies of /etc files inside the private queue directory.
    cat >"$dir/etc/master.cf" <<EOF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
    cat >"$dir/etc/main.cf" <<EOF
# Private benchmark instance written by benches/ (see benches/lib.sh).
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = $host
mydomain = $host
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# Nothing is delivered locally.
mydestination =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
local_recipient_maps =
# Downstreams are IP literals: no DNS, no MX lookups.
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
# Log to a file through postlogd instead of syslog (there may be none).
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
biff = no
append_dot_mydomain = no
readme_directory = no
EOF
}

pf_check() {
    /usr/sbin/postfix -c "$1/etc" check >"$1/check.log" 2>&1 || { cat "$1/check.log" >&2; return 1; }
}

pf_master_pid() { sed -n '1{s/ //g;p}' "$1/queue/pid/master.pid" 2>/dev/null || true; }

# pf_start DIR: start the instance and wait until its smtpd port listens.
# DIR/up marks it ours to stop (a stale pid file never makes us signal a
# stranger).
pf_start() {
    local dir=$1 port
    /usr/sbin/postfix -c "$dir/etc" start >>"$dir/start.log" 2>&1 || { tail -5 "$dir/maillog" >&2; return 1; }
    touch "$dir/up"
    port=$(sed -n '1s/^127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$dir/etc/master.cf")
    wait_listening "$port" "$(pf_master_pid "$dir")" 20
}

pf_stop() {
    local dir=$1 master pid children=()
    [[ -f $dir/up ]] || return 0
    rm -f "$dir/up"
    master=$(pf_master_pid "$dir")
    # The master signals its process group and exits without waiting for
    # its daemons; note them first so none outlives the leg holding a port
    # or burning CPU in the next leg.
    [[ -n $master ]] && mapfile -t children < <(children_of "$master")
    /usr/sbin/postfix -c "$dir/etc" stop >>"$dir/start.log" 2>&1 || true
    for pid in ${master:+"$master"} "${children[@]}"; do
        wait_gone "$pid" 15 || kill -KILL "$pid" 2>/dev/null || true
    done
}

# --- slapd (LDAP) -------------------------------------------------------------

# A private OpenLDAP slapd in one directory (slapd.conf, schema, mdb data,
# log), on 127.0.0.1 only, anonymous read: the directory of the LDAP
# benchmark. The schema is the tests' own file, tests/slapd/portcullis.schema
# (private OIDs under 1.3.6.1.4.1.99999), so an entry written for the tests
# loads here.
SLAPD_BASE="dc=example,dc=com"
SLAPD_DOMAINS="ou=domains,$SLAPD_BASE"
SLAPD_PEOPLE="ou=people,$SLAPD_BASE"

slapd_write_schema() {
    cp "$(dirname "${BASH_SOURCE[0]}")/../tests/slapd/portcullis.schema" "$1/portcullis.schema"
}

# slapd_write_conf DIR: slapd.conf for an mdb under SLAPD_BASE. `mail` is
# indexed (equality), so a search is an index lookup however many entries
# are loaded, as in any real directory; the map may grow to 1 GiB (sparse).
# loglevel 0: slapd's own per-operation logging would measure syslog.
slapd_write_conf() {
    local dir=$1
    mkdir -p "$dir/data"
    cat >"$dir/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include $dir/portcullis.schema
pidfile $dir/slapd.pid
argsfile $dir/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
loglevel 0

database mdb
maxsize 1073741824
suffix "$SLAPD_BASE"
rootdn "cn=admin,$SLAPD_BASE"
directory $dir/data
index objectClass eq
index mail eq
access to * by * read
CONF
}

# slapd_base_ldif: the suffix and the two OUs the entries live under.
slapd_base_ldif() {
    cat <<LDIF
dn: $SLAPD_BASE
objectClass: dcObject
objectClass: organization
dc: example
o: Portcullis benchmark directory

dn: $SLAPD_DOMAINS
objectClass: organizationalUnit
ou: domains

dn: $SLAPD_PEOPLE
objectClass: organizationalUnit
ou: people

LDIF
}

# slapd_start DIR PORT [LDIF]: write the config into DIR, load the base
# entries and LDIF (a file, e.g. thousands of entries) with slapadd before
# the first start (offline, much faster than ldapadd), run slapd in the
# foreground of a background job (`-d 0`: no fork, so $! is slapd) on
# ldap://127.0.0.1:PORT/ and wait until it listens. Sets slapd_pid.
slapd_pid=
slapd_start() {
    local dir=$1 port=$2 ldif=${3:-}
    mkdir -p "$dir"
    slapd_write_schema "$dir"
    slapd_write_conf "$dir"
    slapd_base_ldif >"$dir/base.ldif"
    if [[ -n $ldif ]]; then cat "$ldif" >>"$dir/base.ldif"; fi
    # -q: no consistency checks while loading (the LDIF is ours).
    /usr/sbin/slapadd -q -f "$dir/slapd.conf" -l "$dir/base.ldif" >"$dir/slapadd.log" 2>&1 ||
        { tail -5 "$dir/slapadd.log" >&2; return 1; }
    /usr/sbin/slapd -d 0 -h "ldap://127.0.0.1:$port/" -f "$dir/slapd.conf" >"$dir/slapd.log" 2>&1 &
    slapd_pid=$!
    wait_listening "$port" "$slapd_pid" 20 || { tail -5 "$dir/slapd.log" >&2; return 1; }
}

slapd_stop() {
    stop_pid "$slapd_pid"
    slapd_pid=
}
