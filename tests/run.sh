#!/usr/bin/env bash
# The one test command: `bash tests/run.sh [cargo test args...]`.
#
# 1. Installs the real peers the end-to-end tests talk to, from Debian
#    packages, only when one is missing (so a warm machine never touches apt).
# 2. Runs `cargo test --release` with its output visible and exits with its
#    status. Release, because the end-to-end and durability tests drive load
#    and a debug build would measure the debug build.
#
# The tests run their own smtp-sink/smtp-source/swaks/unbound processes on
# 127.0.0.1 ports they pick; they never use the system Postfix or unbound
# daemons, so it does not matter whether those run (left alone either way).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# package -> a file that proves it is installed (a program, or a module's file). Add peers here (slapd,
# a DNS server, ...) as the tests grow.
declare -A probe=(
    [postfix]=/usr/sbin/smtp-sink   # also ships smtp-source and postfix (bench)
    [swaks]=/usr/bin/swaks
    [openssl]=/usr/bin/openssl
    [unbound]=/usr/sbin/unbound      # the tests' DNS server (tests/common/dns.rs)
    [slapd]=/usr/sbin/slapd          # the tests' LDAP server (tests/common/slapd.rs)
    [ldap-utils]=/usr/bin/ldapadd    # ldapadd/ldapmodify/ldapsearch for the slapd harness
    [libnet-ssleay-perl]=/usr/share/doc/libnet-ssleay-perl/copyright   # swaks --tls (a Perl module: its package's copyright file)
    [testssl.sh]=/usr/bin/testssl    # rates the STARTTLS port (tests/e2e_testssl.rs)
    [ldnsutils]=/usr/bin/ldns-signzone  # ldns-keygen/ldns-signzone: the DANE tests' signed zone (tests/common/dnssec.rs)
    [python3]=/usr/bin/python3       # its email package parses our RFC 3464 bounces (tests/mime/parse_report.py)
)

missing=()
for pkg in "${!probe[@]}"; do
    [[ -e ${probe[$pkg]} ]] || missing+=("$pkg")
done

if ((${#missing[@]})); then
    echo "run.sh: installing test dependencies: ${missing[*]}"
    sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || { echo "run.sh: need root or sudo to install ${missing[*]}" >&2; exit 1; }
        sudo=(sudo -n)
    fi
    export DEBIAN_FRONTEND=noninteractive
    # "No configuration": postfix installs its binaries without writing a
    # main.cf or asking anything, and does not become a running mail server
    # the tests could accidentally depend on. Only preseeded when postfix is
    # being installed, so an existing installation's answers stay as they are.
    if [[ " ${missing[*]} " == *" postfix "* ]]; then
        printf '%s\n' \
            'postfix postfix/main_mailer_type select No configuration' \
            'postfix postfix/mailname string portcullis-test.invalid' |
            "${sudo[@]}" debconf-set-selections
    fi
    # The same for slapd: no database, no admin password asked, no
    # directory the tests could depend on; the tests write their own
    # config (tests/common/slapd.rs).
    if [[ " ${missing[*]} " == *" slapd "* ]]; then
        echo 'slapd slapd/no_configuration boolean true' |
            "${sudo[@]}" debconf-set-selections
    fi
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    # unbound's postinst starts the system resolver service (on port 53)
    # where it can, and slapd's the system directory (on port 389); the
    # tests start their own on free ports, so keep the packages from
    # starting one: a policy-rc.d that denies every start
    # (exit 101), only for this install and only if the machine has none.
    # Their postinsts tolerate the denied start (unbound's `|| true`,
    # slapd's `|| ignore_init_failure`).
    # Removed right after the install (the EXIT trap covers a failed one;
    # it never runs after the final exec).
    policy=/usr/sbin/policy-rc.d
    made_policy=
    if [[ ( " ${missing[*]} " == *" unbound "* || " ${missing[*]} " == *" slapd "* ) && ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
        made_policy=1
        trap 'rm -f "$log"; "${sudo[@]}" rm -f "$policy"' EXIT
    fi
    apt_install() {
        "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Use-Pty=0 "${missing[@]}" >"$log" 2>&1
    }
    # A fresh machine has empty package lists: update only when the
    # install fails, so a machine with current lists stays quick.
    if ! apt_install; then
        "${sudo[@]}" apt-get update -qq >>"$log" 2>&1 || true
        apt_install || { cat "$log" >&2; echo "run.sh: apt-get install failed" >&2; exit 1; }
    fi
    if [[ -n $made_policy ]]; then
        "${sudo[@]}" rm -f "$policy"
    fi
    for pkg in "${missing[@]}"; do
        [[ -e ${probe[$pkg]} ]] || { echo "run.sh: $pkg installed but ${probe[$pkg]} missing" >&2; exit 1; }
    done
fi

# Load tests open many sockets and spool files; lift the soft limit to the
# hard one (no privilege needed). A low hard limit is the machine's choice.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# glommio registers io_uring buffers (locked memory); many test servers run at
# once. Root may lift the limit; otherwise keep the machine's.
ulimit -l unlimited 2>/dev/null || true

exec cargo test --release "$@"
