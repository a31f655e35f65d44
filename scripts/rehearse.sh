#!/usr/bin/env bash
# A newcomer's first hour, scripted (`make rehearse`), on a fresh clone of this checkout's HEAD:
#   make run (up, demo loaded) -> Ctrl-C (all stopped within 15 s) -> make test
#   -> make run at once -> Ctrl-C -> make test again
# then a second clone on the same machine: on the first one's ports its `make run` must refuse
# with a clear message while the first runs; moved with IMMUNREG_PORT_OFFSET it runs beside it.
# Every step is timed; the summary goes to stdout, to rehearse.log in the work folder and to
# bench/rehearsal.md.
# Usage: scripts/rehearse.sh [work folder]   (default: a new folder under /tmp)
# REHEARSE_PORT_OFFSET moves the first clone's ports (default 0: the ports a newcomer gets;
# this checkout's own stack must then be stopped); the second clone goes 300 above it.
set -uo pipefail
base=${REHEARSE_PORT_OFFSET:-0}
export IMMUNREG_PORT_OFFSET=$base

source_repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$(mktemp -d /tmp/immunreg-rehearse.XXXXXX)}"
summary="$work/rehearse.log"
mkdir -p "$work"
# mktemp's folder is private to root; PostgreSQL runs as postgres and must get through it.
chmod 755 "$work"
failures=0

say() { echo "$*" | tee -a "$summary"; }
fail() { say "FAILED: $*"; failures=$((failures + 1)); }

# The stack's ports for an offset (PostgreSQL, Kafka, its controller, the six services).
ports_for() {
    local o=$1
    echo $((55432 + o)) $((59092 + o)) $((59093 + o)) $((8081 + o)) $((8082 + o)) \
        $((8083 + o)) $((8084 + o)) $((8085 + o)) $((8086 + o))
}

listening() {
    local taken=""
    for port in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then taken="$taken $port"; fi
    done
    echo "$taken"
}

clone() {
    local dest=$1
    git clone -q "$source_repo" "$dest/main"
    # CI lays shared/ beside the clone; the rehearsal does the same when there is one.
    if [ -d "$source_repo/../shared" ] && [ ! -e "$dest/shared" ]; then
        ln -s "$(cd "$source_repo/../shared" && pwd)" "$dest/shared"
    fi
}

# make run in a process group of its own (as a terminal runs it); wait until it says it is up;
# Ctrl-C the group as a terminal does; check it stopped within 15 s and left no port open.
run_then_ctrl_c() {
    local repo=$1 label=$2 offset=${3:-$base}
    local log="$work/$label.log"
    local started=$SECONDS
    (cd "$repo" && IMMUNREG_PORT_OFFSET=$offset exec setsid make run >"$log" 2>&1 </dev/null) &
    local pid=$!
    while ! grep -q "Ctrl-C (or" "$log" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            fail "$label: make run exited before it was up (see $log)"
            tail -20 "$log" | tee -a "$summary"
            return
        fi
        if ((SECONDS - started > 1200)); then
            fail "$label: make run not up after 20 minutes"
            kill -KILL -- "-$pid" 2>/dev/null
            return
        fi
        sleep 1
    done
    say "$label: up (demo loaded) after $((SECONDS - started)) s"
    local stop_started
    stop_started=$(date +%s.%N)
    kill -INT -- "-$pid"
    local waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < 300)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    local took
    took=$(echo "$(date +%s.%N) - $stop_started" | bc)
    if kill -0 "$pid" 2>/dev/null; then
        fail "$label: still running 30 s after Ctrl-C"
        kill -KILL -- "-$pid" 2>/dev/null
    elif (($(echo "$took > 15" | bc))); then
        fail "$label: Ctrl-C took ${took} s (more than 15 s)"
    else
        say "$label: Ctrl-C stopped everything in ${took} s"
    fi
    local taken
    taken=$(listening $(ports_for "$offset"))
    [ -z "$taken" ] || fail "$label: still listening after the stop:$taken"
}

make_test() {
    local repo=$1 label=$2
    local started=$SECONDS
    if (cd "$repo" && make test >"$work/$label.log" 2>&1 </dev/null); then
        say "$label: make test passed in $((SECONDS - started)) s ($(grep -E '^[0-9]+ passed' "$work/$label.log" | tail -1))"
    else
        fail "$label: make test failed (see $work/$label.log)"
        tail -30 "$work/$label.log" | tee -a "$summary"
    fi
}

say "rehearsal of $(git -C "$source_repo" rev-parse --short HEAD) in $work"
clone "$work/first"
first="$work/first/main"

run_then_ctrl_c "$first" "1-make-run"
make_test "$first" "2-make-test"
run_then_ctrl_c "$first" "3-make-run-again"
make_test "$first" "4-make-test-again"

# A second clone while the first runs: refused on the same ports, then beside it.
clone "$work/second"
second="$work/second/main"
(cd "$first" && exec setsid make run >"$work/5-first-running.log" 2>&1 </dev/null) &
first_pid=$!
until grep -q "Ctrl-C (or" "$work/5-first-running.log" 2>/dev/null || ! kill -0 "$first_pid" 2>/dev/null; do
    sleep 1
done
if (cd "$second" && make run >"$work/6-second-same-ports.log" 2>&1 </dev/null); then
    fail "6-second-same-ports: a second clone's make run started on the first one's ports"
elif grep -q "is taken by a PostgreSQL serving $first" "$work/6-second-same-ports.log"; then
    say "6-second-same-ports: refused: $(grep -o 'port [0-9]* is taken by a PostgreSQL serving [^ ]*' "$work/6-second-same-ports.log" | head -1)"
else
    fail "6-second-same-ports: failed without saying whose port it is (see $work/6-second-same-ports.log)"
fi
if psql -h 127.0.0.1 -p $((55432 + base)) -U postgres -d immunreg -Atc "SELECT 1" >/dev/null 2>&1; then
    say "6-second-same-ports: the first clone's database still answers"
fi
run_then_ctrl_c "$second" "7-second-beside-first" $((base + 300))
kill -INT -- "-$first_pid"
wait "$first_pid"
say "5-first-running: stopped"

if ((failures)); then
    say "rehearsal: $failures step(s) failed"
else
    say "rehearsal: every step passed"
fi
# The summary beside the benchmarks' figures, as the record of the last rehearsal.
{
    echo "# Newcomer rehearsal"
    echo
    echo "Written by \`make rehearse\` (scripts/rehearse.sh) on fresh clones; the summary of the last run:"
    echo
    echo '```'
    cat "$summary"
    echo '```'
} >"$source_repo/bench/rehearsal.md"
exit $((failures ? 1 : 0))
