#!/usr/bin/env bash
# MariaDB's own test suite (mysql-test-run, `mtr`, Debian package mariadb-test) against
# goneaway's proxy: every test of the list runs in mtr's --extern mode against a throwaway
# server, once directly and once through `goneaway proxy` (a fresh server behind it), with
# the text protocol and with --ps-protocol. A test that passes directly but fails through
# the proxy fails the run, unless compat/known-differences.txt names it with a reason.
#
#   compat/run.sh                         the full list (compat/tests.txt), all four runs
#   compat/run.sh --list compat/smoke.txt the short list (make compat-smoke)
#   compat/run.sh --only direct           only the direct runs (to vet a new list)
#   compat/run.sh --protocol ps           only the --ps-protocol pair
#   compat/run.sh --known FILE            another known-differences file (given twice or
#                                         more: the differences of all of them)
#   compat/run.sh main.ps main.sp         these tests (configurations from the list)
#
# Each server is started by mtr itself (`mtr --start`), so it has mtr's configuration, the
# `test` and `mtr` databases and the timezone tables the tests expect, plus the options mtr
# would give each test (see server_args); tests that need different options get different
# servers. mtr stops at a test's first failure and the rest go on against a fresh server,
# so that one failure cannot leave tables or variables behind for the next tests. The proxy
# logs clients in as root with no password (mtr's account) and logs in to the server the
# same way; accounts a test creates log in through the proxy as themselves. Everything goes
# to 127.0.0.1 only. Results, .reject files and logs stay in the
# work directory (GONEAWAY_COMPAT_DIR, default a new /tmp/goneaway-compat.*).
#
# Environment: GONEAWAY_MTR_DIR (default /usr/share/mysql/mysql-test), GONEAWAY_BIN (a built
# goneaway binary; default: cargo build -p goneaway-cli), GONEAWAY_COMPAT_TIMEOUT (minutes a
# test may take, default 2; mtr counts whole minutes), GONEAWAY_COMPAT_LOG (the proxy's
# --log filter, default warn), GONEAWAY_COMPAT_PROXY_ARGS (`goneaway proxy` flags; default
# --no-commit-marks: commit marks keep a schema of the proxy's own on the server and add an
# insert to each write transaction, which the tests that list schemas, count statements or
# read the binary log see — MariaDB's suite checks the server, and marks change what it
# holds; set it empty to run with them).
#
# Exit status: 0 all listed tests that passed directly passed through the proxy (or are
# known differences); 1 a test regressed through the proxy, or a listed test no longer passes
# directly (the list is stale); 2 the environment is broken (no mtr, a server or the proxy
# did not start, mtr itself failed).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
mtr_dir=${GONEAWAY_MTR_DIR:-/usr/share/mysql/mysql-test}
mtr_run_dir=$mtr_dir # the shadow tree, once make_shadow has made it
timeout_min=${GONEAWAY_COMPAT_TIMEOUT:-2}
known_files=("$here/known-differences.txt")
known_given=0
list_file="$here/tests.txt"
only=all
protocols="text ps"
tests=()
declare -A config_of=()

die() { echo "compat: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --list) list_file=$2; shift 2 ;;
        --only) only=$2; shift 2 ;;
        --protocol) protocols=$2; shift 2 ;;
        --known)
            [ "$known_given" = 0 ] && known_files=()
            known_given=1
            known_files+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,/^set -/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) tests+=("$1"); shift ;;
    esac
done
case "$only" in all|direct|proxy) ;; *) die "--only takes direct, proxy or all" ;; esac
for p in $protocols; do case "$p" in text|ps) ;; *) die "--protocol takes text or ps" ;; esac; done

# A missing mtr or server is a failure, never a silent skip.
mtr="$mtr_dir/mariadb-test-run.pl"
[ -f "$mtr" ] || die "no mysql-test-run at $mtr: install Debian's mariadb-test (make compat-deps) or set GONEAWAY_MTR_DIR"
command -v perl >/dev/null || die "perl is missing (mysql-test-run is a Perl script)"
command -v mariadb >/dev/null || die "the mariadb client is missing: sudo apt-get install mariadb-client"
server_version=$( (PATH="$PATH:/usr/sbin"; mariadbd --version 2>/dev/null || mysqld --version 2>/dev/null) | head -1)
[ -n "$server_version" ] || die "no mariadbd: sudo apt-get install mariadb-server"
# mtr's result files belong to one server version: a mismatch fails tests for no proxy reason.
if command -v dpkg-query >/dev/null; then
    v_server=$(dpkg-query -W -f='${Version}' mariadb-server 2>/dev/null || true)
    v_test=$(dpkg-query -W -f='${Version}' mariadb-test 2>/dev/null || true)
    if [ -n "$v_server" ] && [ -n "$v_test" ] && [ "$v_server" != "$v_test" ]; then
        die "mariadb-test $v_test does not match mariadb-server $v_server (its result files belong to one version): sudo apt-get install mariadb-test=$v_server mariadb-test-data=$v_server"
    fi
fi

# A server configuration is mtr's own (the tests' expected results assume it: InnoDB,
# partitioning and the sequence engine off, no binary log) plus what mtr itself would add
# for the test: the options of the include files it sources that come with an .opt file
# (include/have_innodb.opt, have_log_bin-master.opt, ...) and of its own .opt and
# -master.opt files. A list line names them after the test, joined by "+": an include file
# by its name ("have_innodb"), a test by its path ("main/ps"); "default" for none. So
# "main.ps have_log_bin+main/ps" runs main.ps on a server started with the options of
# include/have_log_bin-master.opt and main/ps-master.opt.
#
# The options of an .opt file as mtr's arguments, NUL-separated, split and unquoted as
# mtr_cases.pm's opts_from_file does (spaces inside quotes survive the split).
opts_perl='
    sub unspace { my ($s, $q) = @_; $s =~ s/[ \t]/\x11/g; "$q$s$q" }
    open(my $fh, "<", $ARGV[0]) or die "$ARGV[0]: $!\n";
    while (<$fh>) {
        chomp; s/^\s+//; s/\s+$//;
        for my $i (1, 2) {
            s/\x27([^\x27"]*)\x27/unspace($1, "\x0a")/ge;
            s/"([^\x27"]*)"/unspace($1, "\x0b")/ge;
        }
        for my $arg (split /[ \t]+/) {
            $arg =~ tr/\x11\x0a\x0b/ \x27"/;
            $arg =~ s/^([^\x27"]*)\x27(.*)\x27([^\x27"]*)$/$1$2$3/
                or $arg =~ s/^([^\x27"]*)"(.*)"([^\x27"]*)$/$1$2$3/;
            $arg =~ s/\\\\/\\/g;
            print "--mysqld=$arg\0" if length $arg;
        }
    }'
# server_args CONFIG sets server_argv to mtr's --mysqld=... arguments for it. mtr expands
# the variables in them ($MYSQLTEST_VARDIR is then the server's vardir, $*_SO a plugin).
server_args() {
    local config=$1 token f found
    server_argv=()
    [ "$config" = default ] && return 0
    for token in ${config//+/ }; do
        found=0
        case "$token" in
            */*) set -- "$mtr_dir/$token.opt" "$mtr_dir/$token-master.opt" ;;
            *) set -- "$mtr_dir/include/$token.opt" "$mtr_dir/include/$token-master.opt" ;;
        esac
        for f in "$@"; do
            [ -f "$f" ] || continue
            found=1
            perl -e "$opts_perl" "$f" >/dev/null || return 1
            local opts=()
            mapfile -d '' opts < <(perl -e "$opts_perl" "$f")
            server_argv+=("${opts[@]}")
        done
        [ $found = 1 ] || { echo "compat: server configuration '$config': no $1 or $2" >&2; return 1; }
    done
}

# The list: one test a line, then its server configuration. Tests named on the command line
# take their configuration from the list when it has them ("default" otherwise).
named=${#tests[@]}
if [ "$named" -eq 0 ] || [ -f "$list_file" ]; then
    [ -f "$list_file" ] || die "no test list $list_file"
    while read -r name config rest; do
        case "$name" in ''|'#'*) continue ;; esac
        [ "$named" -eq 0 ] && tests+=("$name")
        case "${config:-}" in ''|'#'*) config=default ;; esac
        config_of[$name]=$config
    done < "$list_file"
fi
declare -A checked=()
for t in "${tests[@]}"; do
    [ -n "${config_of[$t]:-}" ] || config_of[$t]=default
    c=${config_of[$t]}
    [ -n "${checked[$c]:-}" ] && continue
    server_args "$c" || die "bad server configuration for $t"
    checked[$c]=1
done
[ ${#tests[@]} -gt 0 ] || die "the test list is empty"

# Known differences: "suite.test  reason" per line; a line without a reason is an error.
declare -A known=()
for known_file in "${known_files[@]}"; do
    [ -f "$known_file" ] || die "no known-differences file $known_file"
    n=0
    while IFS= read -r line; do
        n=$((n + 1))
        line=${line%%#*}
        [ -z "${line//[[:space:]]/}" ] && continue
        name=$(echo "$line" | awk '{print $1}')
        reason=$(echo "$line" | sed -E 's/^[[:space:]]*[^[:space:]]+[[:space:]]*//')
        [ -n "$reason" ] || die "$known_file:$n: $name has no reason"
        known[$name]=$reason
    done < "$known_file"
done

work=${GONEAWAY_COMPAT_DIR:-$(mktemp -d /tmp/goneaway-compat.XXXXXX)}
mkdir -p "$work" || die "cannot create $work"
work=$(cd "$work" && pwd)

# mysqltest writes a failed test's .reject next to its .result when it may write there,
# which root may in /usr/share: the tests run from a shadow tree of symbolic links in the
# work directory instead, laid out like /usr (mtr finds the binaries relative to its own
# directory), so every file a run writes stays in the work directory.
make_shadow() {
    local src=$1 usr=$work/shadow/usr e
    [ -d "$usr/share/mysql/mysql-test" ] && return 0
    case "$src" in
        /usr/share/mysql/mysql-test) ;;
        *) mtr_run_dir=$src; return 0 ;; # a source or private build: run it where it is
    esac
    mkdir -p "$usr/share/mysql" || die "cannot create $usr"
    for e in /usr/*; do [ "$e" = /usr/share ] || ln -s "$e" "$usr/"; done
    for e in /usr/share/*; do [ "$e" = /usr/share/mysql ] || ln -s "$e" "$usr/share/"; done
    for e in /usr/share/mysql/*; do [ "$e" = "$src" ] || ln -s "$e" "$usr/share/mysql/"; done
    cp -rs "$src" "$usr/share/mysql/mysql-test" || die "cannot copy $src as links"
    mtr_run_dir=$usr/share/mysql/mysql-test
}
make_shadow "$mtr_dir"
mtr="$mtr_run_dir/mariadb-test-run.pl"

pids=()
# pids holds what this script started: a process id, or a process group as -id.
cleanup() {
    for pid in "${pids[@]}"; do
        kill -- "$pid" 2>/dev/null
    done
    for pid in "${pids[@]}"; do
        wait "${pid#-}" 2>/dev/null
    done
    pids=()
}
trap cleanup EXIT
trap 'exit 2' INT TERM

# The proxy binary: built from this checkout unless GONEAWAY_BIN names one.
goneaway=""
if [ "$only" != direct ]; then
    if [ -n "${GONEAWAY_BIN:-}" ]; then
        goneaway=$GONEAWAY_BIN
    else
        echo "compat: building goneaway (cargo build -p goneaway-cli) ..."
        (cd "$root" && ${CARGO:-cargo} build --quiet -p goneaway-cli) || die "cargo build -p goneaway-cli failed"
        goneaway="$root/target/debug/goneaway"
    fi
    [ -x "$goneaway" ] || die "no goneaway binary at $goneaway"
fi

# Prints the port that the sed script $2 finds in file $1, waiting while process $3 lives,
# at most $4 half-seconds; prints nothing if it never appears.
port_from() {
    local file=$1 script=$2 pid=$3 tries=$4 waited=0 port=""
    while [ $waited -lt "$tries" ]; do
        port=$(sed -nE "$script" "$file" 2>/dev/null | head -1)
        [ -n "$port" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
        waited=$((waited + 1))
    done
    echo "$port"
}

# Starts a throwaway server with mtr --start in $1 (a directory) with configuration $2; sets
# server_pid and server_port. mtr stays in the foreground until killed, and takes its server
# with it. secure_file_priv is lifted because the tests write files in their own vardir,
# not in the server's.
start_server() {
    local dir=$1 config=$2
    rm -rf "$dir"
    mkdir -p "$dir"
    server_args "$config" || die "bad server configuration $config"
    # Its own process group (setsid keeps the pid when, as here, it need not fork): mtr
    # forks a worker that owns the server, and the group is stopped as one.
    (cd "$mtr_run_dir" && exec setsid perl "$mtr" --start --vardir="$dir/var" \
        --mysqld=--secure-file-priv= "${server_argv[@]}" \
        main.1st) > "$dir/server.out" 2>&1 < /dev/null &
    server_pid=$!
    pids+=("-$server_pid")
    server_port=$(port_from "$dir/server.out" 's/.*mysqld\.1 +([0-9]+) +.*/\1/p' "$server_pid" 240)
    if [ -z "$server_port" ]; then
        tail -20 "$dir/server.out" >&2
        die "the server did not start (see $dir/server.out and $dir/var/log)"
    fi
    mariadb --no-defaults -h127.0.0.1 -P"$server_port" -uroot -e 'SELECT 1' >/dev/null 2>&1 \
        || die "the server on port $server_port does not accept root logins"
    # mtr's my_safe_process puts the server in a process group of its own, and notices
    # its parent's end only when it next looks: stop_server waits for this pid too.
    mariadbd_pid=$(cat "$dir/var/run/mysqld.1.pid" 2>/dev/null)
    [ -n "$mariadbd_pid" ] && pids+=("$mariadbd_pid")
}

# Stops the server started by start_server: mtr's process group, then the server itself.
stop_server() {
    local group=$1 pid=$2 n=0
    stop_pid "-$group"
    [ -n "$pid" ] || return 0
    while kill -0 "$pid" 2>/dev/null && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
    stop_pid "$pid"
}

# Stops a process ($1) or a process group (-$1) this script started, and waits for it.
stop_pid() {
    local pid=$1 rest=() n=0
    kill -- "$pid" 2>/dev/null
    wait "${pid#-}" 2>/dev/null
    # A group's other members (mtr's worker, the server) may outlive its leader briefly.
    while kill -0 -- "$pid" 2>/dev/null && [ $n -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
    kill -KILL -- "$pid" 2>/dev/null
    for p in "${pids[@]}"; do [ "$p" != "$pid" ] && rest+=("$p"); done
    pids=("${rest[@]}")
}

# Starts goneaway proxy in front of 127.0.0.1:$2, logging to $1/proxy.log; sets proxy_pid
# and proxy_port. Clients log in as the backend URL's account (root, empty password: the
# account mtr's tests use) or as any account the tests create (the server's own accounts).
start_proxy() {
    local dir=$1 backend_port=$2
    "$goneaway" --log "${GONEAWAY_COMPAT_LOG:-warn}" proxy \
        --listen 127.0.0.1:0 --backend "mysql://root@127.0.0.1:$backend_port/" \
        ${GONEAWAY_COMPAT_PROXY_ARGS---no-commit-marks} > "$dir/proxy.log" 2>&1 < /dev/null &
    proxy_pid=$!
    pids+=("$proxy_pid")
    proxy_port=$(port_from "$dir/proxy.log" 's/.*listening on 127\.0\.0\.1:([0-9]+).*/\1/p' "$proxy_pid" 120)
    if [ -z "$proxy_port" ]; then
        cat "$dir/proxy.log" >&2
        die "the proxy did not start (see $dir/proxy.log)"
    fi
    mariadb --no-defaults -h127.0.0.1 -P"$proxy_port" -uroot -e 'SELECT 1' >/dev/null 2>&1 \
        || die "the proxy on port $proxy_port does not accept root logins (see $dir/proxy.log)"
}

# Runs tests ($4...) in mtr --extern mode against 127.0.0.1:$2 with protocol $3; mtr's
# output in $1/mtr.out, one "name result" line per test run in $1/results.
run_mtr() {
    local dir=$1 port=$2 protocol=$3 extra=()
    shift 3
    [ "$protocol" = ps ] && extra+=(--ps-protocol)
    # --extern writes a [client] section from these; protocol=tcp makes mysqltest's
    # "localhost" connections use TCP too, and the socket does not exist, so nothing can
    # bypass the proxy. One worker: the tests share the server's `test` database. mtr stops
    # at the first failure (--max-test-fail=1): a failed test leaves tables and variables
    # behind, and in --extern mode mtr cannot restart the server, so the caller goes on
    # with a fresh one. --noreorder keeps the list's order, so what is left is known.
    (cd "$mtr_run_dir" && MASTER_MYPORT=$port MASTER_MYSOCK="$work/no-such.sock" exec perl "$mtr" \
        --vardir="$dir/var" \
        --extern host=127.0.0.1 --extern port="$port" --extern user=root \
        --extern protocol=tcp --extern socket="$work/no-such.sock" \
        --force --max-test-fail=1 --retry=0 --parallel=1 --noreorder \
        --testcase-timeout="$timeout_min" --suite-timeout=60 --tail-lines=40 \
        "${extra[@]}" "$@") > "$dir/mtr.out" 2>&1 < /dev/null
    local rc=$?
    # Keep this round's .reject files with its logs (the next round would remove them).
    find "$mtr_run_dir" -name '*.reject' -exec mv -t "$dir/var/log/" {} + 2>/dev/null
    sed -nE 's/^(worker\[[0-9]+\] )?([a-z0-9_]+\.[^ ]+)( '"'"'[^ ]*'"'"')? +\[ (pass|fail|skipped|disabled) \].*/\2 \4/p' \
        "$dir/mtr.out" > "$dir/results"
    if ! grep -q . "$dir/results"; then
        tail -30 "$dir/mtr.out" >&2
        die "mtr ran no test (exit $rc, see $dir/mtr.out)"
    fi
    return 0
}

# Runs the tests of configuration $3 in mode $1 with protocol $2: rounds of a fresh server
# (and proxy), mtr until the first failure, then the rest of the tests on a fresh server.
# Appends to $work/$1-$2/results; each round keeps its logs in $work/$1-$2/<n>-<config>/.
run_config() {
    local mode=$1 protocol=$2 config=$3 base="$work/$1-$2" round port
    shift 3
    local remaining=("$@")
    while [ ${#remaining[@]} -gt 0 ]; do
        round=$(( $(cat "$base/rounds") + 1 ))
        echo "$round" > "$base/rounds"
        local dir="$base/$round-${config//\//.}"
        start_server "$dir" "$config"
        local spid=$server_pid mpid=$mariadbd_pid ppid=""
        port=$server_port
        if [ "$mode" = proxy ]; then
            start_proxy "$dir" "$server_port"
            port=$proxy_port
            ppid=$proxy_pid
        fi
        run_mtr "$dir" "$port" "$protocol" "${remaining[@]}"
        # Not a proxy failure: a test that shuts the server down (the list should not
        # have it).
        if ! kill -0 "$spid" 2>/dev/null ||
            ! mariadb --no-defaults -h127.0.0.1 -P"$server_port" -uroot -e 'SELECT 1' >/dev/null 2>&1; then
            echo "compat: warning: the server died in round $round (after $(tail -1 "$dir/results"))"
        fi
        if [ -n "$ppid" ]; then
            kill -0 "$ppid" 2>/dev/null || echo "compat: warning: the proxy exited in round $round (see $dir/proxy.log)"
            stop_pid "$ppid"
        fi
        stop_server "$spid" "$mpid"
        cat "$dir/results" >> "$base/results"
        # A round without a failure keeps only its logs: a server's data directory is a few
        # hundred MB, and a whole run has dozens of rounds.
        if ! grep -q ' fail$' "$dir/results"; then
            find "$dir/var" -mindepth 1 -maxdepth 1 ! -name log -exec rm -rf {} +
        fi
        # The tests not yet run, in order.
        local next=() t
        for t in "${remaining[@]}"; do
            grep -qxF -e "$t pass" -e "$t fail" -e "$t skipped" -e "$t disabled" "$dir/results" || next+=("$t")
        done
        if [ ${#next[@]} -eq ${#remaining[@]} ]; then
            die "mtr made no progress in round $round (see $dir/mtr.out)"
        fi
        remaining=("${next[@]}")
    done
}

# One run: mode $1 (direct or proxy), protocol $2, every configuration of the list.
run_mode() {
    local mode=$1 protocol=$2 base="$work/$1-$2" started c t
    rm -rf "$base"
    mkdir -p "$base"
    echo 0 > "$base/rounds"
    : > "$base/results"
    started=$(date +%s)
    echo "compat: $mode, $protocol protocol ..."
    local configs=()
    for t in "${tests[@]}"; do
        [[ " ${configs[*]} " == *" ${config_of[$t]} "* ]] || configs+=("${config_of[$t]}")
    done
    for c in "${configs[@]}"; do
        local group=()
        for t in "${tests[@]}"; do
            [ "${config_of[$t]}" = "$c" ] && group+=("$t")
        done
        [ ${#group[@]} -gt 0 ] && run_config "$mode" "$protocol" "$c" "${group[@]}"
    done
    local secs=$(( $(date +%s) - started ))
    echo "$secs" > "$base/seconds"
    printf 'compat: %-6s %-4s %4d pass %4d fail %4d skipped %4d disabled  (%d tests, %d servers, %dm%02ds)\n' \
        "$mode" "$protocol" \
        "$(grep -c ' pass$' "$base/results")" "$(grep -c ' fail$' "$base/results")" \
        "$(grep -c ' skipped$' "$base/results")" "$(grep -c ' disabled$' "$base/results")" \
        "${#tests[@]}" "$(cat "$base/rounds")" $((secs / 60)) $((secs % 60))
}

result_of() { awk -v t="$2" '$1 == t { print $2; exit }' "$1"; }

# The essence of a failure: mysqltest's own error line, or the first lines of the diff, and
# where the logs are (each round of servers has its own directory).
why() {
    local base=$1 t=$2 dir
    for dir in "$base"/*/; do
        grep -qxF "$t fail" "$dir/results" 2>/dev/null || continue
        awk -v t="$t" '
            index($0, t) && /\[ fail \]/ { on = 1; n = 0; if (/timeout/) print "      " $0; next }
            on && (/\[ (pass|fail|skipped|disabled) \]/ || /^ - saving/) { exit }
            on && (/^mysqltest: / || /^[-+][^-+]/ || /^@@ /) { print "      " $0; if (++n >= 6) exit }
        ' "$dir/mtr.out"
        echo "      logs: ${dir%/}/var/log/ (${t#*.}.reject, ${t#*.}.log)"
    done
}

echo "compat: ${#tests[@]} tests, work directory $work"
echo "compat: server $server_version; mtr $mtr"
status=0
for protocol in $protocols; do
    [ "$only" != proxy ] && run_mode direct "$protocol"
    [ "$only" != direct ] && run_mode proxy "$protocol"
done

summary="$work/summary.txt"
: > "$summary"
for protocol in $protocols; do
    d="$work/direct-$protocol/results" p="$work/proxy-$protocol/results"
    if [ -f "$d" ]; then
        # Listed tests that do not pass directly: the list or the environment changed.
        for t in "${tests[@]}"; do
            r=$(result_of "$d" "$t")
            if [ "$r" != pass ]; then
                echo "direct $protocol: $t ${r:-not run}" >> "$summary"
                if [ "$r" = fail ] || [ -z "$r" ]; then
                    echo "compat: STALE LIST: $t does not pass directly ($protocol protocol: ${r:-not run})"
                    why "$work/direct-$protocol" "$t"
                    status=1
                fi
            fi
        done
    fi
    [ -f "$p" ] || continue
    for t in "${tests[@]}"; do
        r=$(result_of "$p" "$t")
        rd=pass
        [ -f "$d" ] && rd=$(result_of "$d" "$t")
        [ "$rd" = pass ] || continue
        [ "$r" = pass ] && {
            [ -n "${known[$t]:-}" ] && echo "compat: note: known difference $t passes through the proxy ($protocol protocol)"
            continue
        }
        echo "proxy $protocol: $t ${r:-not run}" >> "$summary"
        if [ -n "${known[$t]:-}" ]; then
            echo "compat: known difference ($protocol protocol): $t: ${known[$t]}"
        else
            echo "compat: FAIL through the proxy ($protocol protocol): $t (${r:-not run})"
            why "$work/proxy-$protocol" "$t"
            status=1
        fi
    done
done
echo "compat: details in $work (summary.txt, */mtr.out, */var/log/*.reject, proxy-*/proxy.log)"
exit $status
