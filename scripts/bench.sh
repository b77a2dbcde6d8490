#!/usr/bin/env bash
# predmon's benchmark suite: predmon against its limits and its peers (issue 5).
#
#   scripts/bench.sh                 measure and print the table (nothing is written to the repo)
#   scripts/bench.sh --update-docs   also rewrite the table in docs/BENCHMARKS.md
#
# Environment: BENCH_RUNS (default 3; each figure is the median), BENCH_EVENTS (default
# 1000000 lines per file), CI=true (a stage that cannot run fails the script instead of
# being skipped). Works under target/bench/; needs python3 and /usr/bin/time (Debian
# `time`), installs `mtail` and `time` with apt when missing and run as root, and uses
# scripts/test-env.sh for the tansu broker of the Kafka stage.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
RUNS="${BENCH_RUNS:-3}"
EVENTS="${BENCH_EVENTS:-1000000}"
UPDATE_DOCS=0
for arg in "$@"; do
    case "$arg" in
        --update-docs) UPDATE_DOCS=1 ;;
        -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "bench: unknown argument $arg" >&2; exit 2 ;;
    esac
done
work="$repo/target/bench"
mkdir -p "$work"
started_all=$(date +%s)

say() { printf 'bench [%3ds]: %s\n' "$(($(date +%s) - started_all))" "$*" >&2; }
skip() { # skip STAGE REASON: fatal under CI
    if [ "${CI:-}" = "true" ]; then
        say "FAILED: $1: $2"
        exit 1
    fi
    say "skipping $1: $2"
    SKIPPED+=("$1: $2")
}
SKIPPED=()

apt_get() { # apt_get PKG: installs a missing Debian package when we can
    dpkg -s "$1" >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] || return 1
    say "apt-get install $1"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1"; } >/dev/null 2>&1
}

[ -x /usr/bin/time ] || apt_get time || { say "needs /usr/bin/time (Debian package \`time\`)"; exit 1; }
command -v python3 >/dev/null || { say "needs python3"; exit 1; }

# ---------------------------------------------------------------------------- build
say "building (release)"
cargo build --release --quiet --bin predmon --example kafka_bare
# Only the script's binaries: a plain `cargo bench --no-run` also builds the crate's
# unit tests as a bench harness.
cargo bench --no-run --quiet --message-format=json --bench gen_events --bench limits \
    --bench scaling --bench scrape --bench kafka_load >"$work/build.json"
bench_bin() { # the executable of benches/$1.rs
    python3 - "$work/build.json" "$1" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    t = m.get("target") or {}
    if m.get("executable") and t.get("name") == sys.argv[2] and "bench" in t.get("kind", []):
        path = m["executable"]
print(path)
EOF
}
PREDMON="$repo/target/release/predmon"
GEN="$(bench_bin gen_events)"
LIMITS="$(bench_bin limits)"
SCALING="$(bench_bin scaling)"
SCRAPE="$(bench_bin scrape)"
KAFKA_LOAD="$(bench_bin kafka_load)"

# ---------------------------------------------------------------------------- inputs
now_ms=$(($(date +%s%N) / 1000000))
say "generating $EVENTS-line files under target/bench/"
"$GEN" --output "$work/combined.jsonl" --count "$EVENTS" 2>/dev/null
"$GEN" --output "$work/split.jsonl" --count "$EVENTS" --split 2>/dev/null
"$GEN" --output "$work/pending.jsonl" --count "$EVENTS" --split --no-labels 2>/dev/null
"$GEN" --output "$work/pending-small.jsonl" --count 1000 --split --no-labels 2>/dev/null
# For the daemon: the same shape, ending at the wall clock so that the windows hold it.
"$GEN" --output "$work/live.jsonl" --count "$EVENTS" --start-ms $((now_ms - EVENTS)) 2>/dev/null
"$GEN" --output "$work/live-20x20.jsonl" --count "$EVENTS" --models 20 --classes 20 \
    --start-ms $((now_ms - EVENTS)) 2>/dev/null
# Every extension that a single-label stream can have on (issue 8): E4 segments (8
# values of /country), E3 and E6 (a positive class and two extra thresholds per model);
# E1, E2 and E5 are on for every stream. The same samples as the plain files.
"$GEN" --output "$work/combined-ext.jsonl" --count "$EVENTS" --segments 8 2>/dev/null
"$GEN" --output "$work/split-ext.jsonl" --count "$EVENTS" --split --segments 8 2>/dev/null
"$GEN" --output "$work/live-ext.jsonl" --count "$EVENTS" --segments 8 --start-ms $((now_ms - EVENTS)) 2>/dev/null
{
    printf '[fields]\nsegment = "/country"\n'
    for m in fraud-v3 churn-v2 spam-v7 intent-v1; do
        printf '[[models]]\nname = "%s"\npositive_class = "class-1"\nthresholds = [0.3, 0.7]\n' "$m"
    done
} >"$work/extensions.toml"
cat "$work"/*.jsonl >/dev/null # into the page cache

# ---------------------------------------------------------------------------- helpers
declare -A SECS RSS RATES # name -> space-separated samples (seconds, KiB, events/s)
timed() { # timed NAME CMD...: one run; wall seconds and peak RSS of CMD
    local name="$1" t0 t1 rss
    shift
    t0=$(date +%s%N)
    /usr/bin/time -f '%M' -o "$work/time.out" "$@" >"$work/out.txt" 2>"$work/err.txt" || {
        say "$name failed:"
        tail -5 "$work/err.txt" >&2
        return 1
    }
    t1=$(date +%s%N)
    rss=$(tail -1 "$work/time.out")
    SECS[$name]="${SECS[$name]:-} $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')"
    RSS[$name]="${RSS[$name]:-} $rss"
}
repeat() { # repeat NAME CMD...: RUNS runs
    local i
    for ((i = 0; i < RUNS; i++)); do timed "$@" || return 1; done
}
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
json_field() { python3 -c 'import json, statistics, sys
d = json.loads(sys.argv[1]); v = d[sys.argv[2]]
print(v if not isinstance(v, list) else (f"{statistics.median(v):.2f} {max(v):.2f} {len(v)}" if v else "nan nan 0"))' "$1" "$2"; }
lines_of() { wc -l <"$1" | tr -d ' '; }

# ---------------------------------------------------------------------------- one-shot stages
say "floor and parse limit ($RUNS runs each)"
repeat floor "$LIMITS" lines "$work/combined.jsonl"
repeat limit "$LIMITS" serde "$work/combined.jsonl"
repeat limit_split "$LIMITS" serde "$work/split.jsonl"
say "predmon report"
repeat report "$PREDMON" report --format json "$work/combined.jsonl"
repeat report_split "$PREDMON" report --format json "$work/split.jsonl"
say "predmon report, every extension on"
repeat report_cfg "$PREDMON" report --config "$work/extensions.toml" --format json "$work/combined.jsonl"
repeat report_ext "$PREDMON" report --config "$work/extensions.toml" --format json "$work/combined-ext.jsonl"
repeat report_split_ext "$PREDMON" report --config "$work/extensions.toml" --format json "$work/split-ext.jsonl"
timed pending "$PREDMON" report --format json "$work/pending.jsonl"
timed pending_small "$PREDMON" report --format json "$work/pending-small.jsonl"

MTAIL_OK=0
if command -v mtail >/dev/null || apt_get mtail; then
    say "mtail --one_shot"
    mkdir -p "$work/mtail"
    cat >"$work/mtail/confusion.mtail" <<'EOF'
# The same confusion cells predmon counts, from the same lines.
counter predmon_confusion by model, actual, predicted
/"model": "(?P<model>[^"]+)".*"prediction": "(?P<predicted>[^"]+)", "label": "(?P<actual>[^"]+)"/ {
  predmon_confusion[$model][$actual][$predicted]++
}
EOF
    if repeat mtail mtail --one_shot --one_shot_format=prometheus --progs "$work/mtail" \
        --logs "$work/combined.jsonl"; then
        counted=$(awk '/^predmon_confusion\{/ { s += $2 } END { print s + 0 }' "$work/out.txt")
        [ "$counted" = "$EVENTS" ] || say "warning: mtail counted $counted of $EVENTS"
        MTAIL_OK=1
    else
        skip mtail "mtail failed"
    fi
else
    skip mtail "mtail is not installed and cannot be (Debian package mtail)"
fi

# ---------------------------------------------------------------------------- daemon stages
declare -A DAEMON
DAEMON_SEQ=0
daemon_runs() { # daemon_runs NAME ARGS...: RUNS runs of bench_daemon.py
    local name="$1" i out
    shift
    for ((i = 0; i < RUNS; i++)); do
        DAEMON_SEQ=$((DAEMON_SEQ + 1)) # a fresh consumer group for every run
        out=$(python3 scripts/bench_daemon.py --predmon "$PREDMON" "$@" --group "bench-$name-$DAEMON_SEQ-$$") || return 1
        SECS[$name]="${SECS[$name]:-} $(json_field "$out" seconds)"
        RSS[$name]="${RSS[$name]:-} $(json_field "$out" hwm_kib)"
        RATES[$name]="${RATES[$name]:-} $(python3 -c 'import json, sys
d = json.loads(sys.argv[1]); n = d["events"] - d["first_events"]; s = d["seconds"] - d["first_seconds"]
print(f"{n / s:.0f}" if n > 0 and s > 0 else "nan")' "$out")"
        DAEMON[$name]="$out"
    done
}
say "predmon run, file source"
daemon_runs run_file --lines "$(lines_of "$work/live.jsonl")" --file "$work/live.jsonl" ||
    skip run_file "predmon run with a file source failed"
say "predmon run, file source, every extension on"
daemon_runs run_ext --lines "$(lines_of "$work/live-ext.jsonl")" --file "$work/live-ext.jsonl" \
    --extra-config "$work/extensions.toml" ||
    skip run_ext "predmon run with a file source and every extension failed"
say "predmon run, file source, 20 models x 20 classes x 4 windows"
daemon_runs run_20 --lines "$(lines_of "$work/live-20x20.jsonl")" --file "$work/live-20x20.jsonl" \
    --every 0.1 --settle 2 --idle-scrapes 20 ||
    skip run_20 "predmon run with a file source failed"
say "predmon run holding every line of pending.jsonl as a pending join, without and with [state]"
# Runs of their own (daemon_runs keeps rates): VmHWM at the end, snapshots included;
# with [state], a snapshot every 2 s for 10 s while /metrics is requested every 5 ms
# (it waits for the engine lock), then a restart from the last snapshot.
declare -A PSTATE # name -> space-separated samples
pstate() { PSTATE[$1]="${PSTATE[$1]:-} $2"; }
pending_runs() {
    local i out n
    n=$(lines_of "$work/pending.jsonl")
    for ((i = 0; i < RUNS; i++)); do
        out=$(python3 scripts/bench_daemon.py --predmon "$PREDMON" --lines "$n" --file "$work/pending.jsonl" \
            --every 0.1) || return 1
        pstate hwm_plain "$(json_field "$out" hwm_kib_end)"
        rm -rf "$work/state" && mkdir -p "$work/state"
        out=$(python3 scripts/bench_daemon.py --predmon "$PREDMON" --lines "$n" --file "$work/pending.jsonl" \
            --every 0.1 --state "$work/state" --state-interval 2s --hold 10) || return 1
        pstate hwm_state "$(json_field "$out" hwm_kib_end)"
        read -r _ probe_max _ <<<"$(json_field "$out" probe_ms)"
        pstate probe_max "$probe_max"
        python3 -c 'import json, sys
for s in json.loads(sys.argv[1])["snapshots"]:
    print(s["total_ms"], s["longest_hold_ms"], s["held_ms"], int(s["bytes"]))' "$out" >>"$work/snapshots.txt"
        out=$(python3 scripts/bench_daemon.py --predmon "$PREDMON" --lines "$n" --file "$work/pending.jsonl" \
            --every 0.1 --state "$work/state" --state-interval 1h) || return 1
        pstate hwm_restart "$(json_field "$out" hwm_kib_end)"
        pstate restart_s "$(json_field "$out" seconds)"
    done
}
: >"$work/snapshots.txt"
pending_runs || skip pending_state "predmon run with pending joins and [state] failed"

say "scrape, /api/v1/models and the page under load, in-process (5 s each)"
"$SCRAPE" 5 >"$work/scrape.txt" 2>"$work/scrape.err"

KAFKA_OK=0
declare -A KCPU # Kafka stage: name -> space-separated samples of CPU microseconds per message
sched_ns() { # CPU nanoseconds of every thread of process $1 so far
    cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
}
kafka_stage() {
    if [ -z "${PREDMON_TANSU:-}" ]; then
        # shellcheck disable=SC1091
        . scripts/test-env.sh >/dev/null 2>&1 || { skip kafka "scripts/test-env.sh could not provide tansu"; return; }
    fi
    [ -x "${PREDMON_TANSU:-}" ] || { skip kafka "no tansu broker"; return; }
    local port tansu_pid lines i
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$PREDMON_TANSU" broker --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/ \
        >"$work/tansu.log" 2>&1 &
    tansu_pid=$!
    # shellcheck disable=SC2064
    trap "kill $tansu_pid 2>/dev/null || true" EXIT
    for _ in $(seq 100); do
        (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    "$PREDMON_TANSU" topic create bench --partitions 1 --broker "tcp://127.0.0.1:$port" >/dev/null 2>&1 ||
        { skip kafka "tansu topic create failed"; kill "$tansu_pid"; return; }
    say "kafka: producing $EVENTS events to tansu"
    "$KAFKA_LOAD" "127.0.0.1:$port" bench "$work/live.jsonl" 2>"$work/produce.err" ||
        { skip kafka "producing to tansu failed: $(tail -1 "$work/produce.err")"; kill "$tansu_pid"; return; }
    lines=$(lines_of "$work/live.jsonl")
    # Both Kafka figures are timed from the first message (examples/kafka_bare.rs's
    # convention), so that connecting and assigning partitions are not counted.
    # Alternated, one of each per round: the broker's own speed drifts over a run (the
    # bare consumer read 1.1 M msgs/s in one round and 1.5 M in another), and a ratio of
    # figures taken minutes apart measured that drift more than the consumers.
    say "kafka: bare consumer + serde_json (examples/kafka_bare.rs) and predmon run, alternated"
    # CPU per message as well as the rate: both consumers share two cores with the
    # broker, so the rates follow the CPU each spends per message (tansu's included).
    KAFKA_OK=1
    local t0
    for ((i = 0; i < RUNS; i++)); do
        t0=$(sched_ns "$tansu_pid")
        timed kafka_bare "$repo/target/release/examples/kafka_bare" bare "127.0.0.1:$port" bench "$lines" ||
            { skip kafka "the bare consumer failed"; kill "$tansu_pid"; KAFKA_OK=0; return; }
        KCPU[tansu_bare]="${KCPU[tansu_bare]:-} $(awk -v a="$t0" -v b="$(sched_ns "$tansu_pid")" -v n="$lines" 'BEGIN { printf "%.3f", (b - a) / 1e3 / n }')"
        RATES[kafka_bare]="${RATES[kafka_bare]:-} $(awk '/msgs\/s/ { print $2 }' "$work/out.txt")"
        KCPU[bare]="${KCPU[bare]:-} $(sed -n 's/.*, \([0-9.]*\) us CPU per message/\1/p' "$work/out.txt")"
        t0=$(sched_ns "$tansu_pid")
        RUNS=1 daemon_runs run_kafka --lines "$lines" --brokers "127.0.0.1:$port" --topic bench --timeout 120 ||
            { skip kafka_predmon "predmon run with a kafka source failed (see above)"; KAFKA_OK=0; break; }
        KCPU[tansu_predmon]="${KCPU[tansu_predmon]:-} $(awk -v a="$t0" -v b="$(sched_ns "$tansu_pid")" -v n="$lines" 'BEGIN { printf "%.3f", (b - a) / 1e3 / n }')"
        for t in total predmon-engine kafka-src rdk:broker predmon; do
            KCPU[$t]="${KCPU[$t]:-} $(python3 -c 'import json, sys
cpu = json.loads(sys.argv[1]).get("cpu_us", {})
# librdkafka names its broker threads after the broker (rdk:broker1, rdk:broker-1 ...)
print(sum(v for k, v in cpu.items() if k == sys.argv[2] or (sys.argv[2] == "rdk:broker" and k.startswith("rdk:"))))' "${DAEMON[run_kafka]}" "$t")"
        done
    done
    kill "$tansu_pid" 2>/dev/null || true
    wait "$tansu_pid" 2>/dev/null || true
    trap - EXIT
}
kafka_stage

say "scaling tables (engine API)"
"$SCALING" >"$work/scaling.md"

# ---------------------------------------------------------------------------- table
rate() { awk -v n="$2" -v s="$(median "${SECS[$1]:-}")" 'BEGIN { if (s == "nan" || s == 0) print "nan"; else printf "%.0f", n / s }'; }
mib() { awk -v k="$(median "${RSS[$1]:-}")" 'BEGIN { if (k == "nan") print "n/a"; else printf "%.1f MiB", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "n/a"; else printf "%.2fx", a / b }'; }
fmt() { awk -v r="$1" 'BEGIN { if (r == "nan") print "n/a"; else { s = sprintf("%d", r); out = ""; while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }; print s out } }'; }

N_COMB=$(lines_of "$work/combined.jsonl")
N_SPLIT=$(lines_of "$work/split.jsonl")
R_FLOOR=$(rate floor "$N_COMB")
R_LIMIT=$(rate limit "$N_COMB")
R_LIMIT_SPLIT=$(rate limit_split "$N_SPLIT")
R_REPORT=$(rate report "$N_COMB")
R_REPORT_SPLIT=$(rate report_split "$N_SPLIT")
R_REPORT_CFG=$(rate report_cfg "$N_COMB")
R_REPORT_EXT=$(rate report_ext "$N_COMB")
R_REPORT_SPLIT_EXT=$(rate report_split_ext "$N_SPLIT")
R_MTAIL=nan
[ "$MTAIL_OK" = 1 ] && R_MTAIL=$(rate mtail "$N_COMB")
R_RUN=nan
[ -n "${SECS[run_file]:-}" ] && R_RUN=$(rate run_file "$N_COMB")
R_RUN_EXT=nan
[ -n "${SECS[run_ext]:-}" ] && R_RUN_EXT=$(rate run_ext "$N_COMB")
R_RUN20=nan
[ -n "${SECS[run_20]:-}" ] && R_RUN20=$(rate run_20 "$N_COMB")
R_BARE=nan R_KAFKA=nan
[ -n "${RATES[kafka_bare]:-}" ] && R_BARE=$(median "${RATES[kafka_bare]}")
[ "$KAFKA_OK" = 1 ] && R_KAFKA=$(median "${RATES[run_kafka]}")
PENDING_BYTES=$(awk -v a="$(median "${RSS[pending]}")" -v b="$(median "${RSS[pending_small]}")" -v n="$(lines_of "$work/pending.jsonl")" \
    'BEGIN { printf "%.0f", (a - b) * 1024 / n }')
read -r S_MED S_MAX S_N <<<"$( [ -n "${DAEMON[run_20]:-}" ] && json_field "${DAEMON[run_20]}" scrape_ms || echo "nan nan 0")"
read -r I_MED I_MAX _ <<<"$( [ -n "${DAEMON[run_20]:-}" ] && json_field "${DAEMON[run_20]}" idle_scrape_ms || echo "nan nan 0")"
RSS20=$( [ -n "${DAEMON[run_20]:-}" ] && json_field "${DAEMON[run_20]}" rss_kib || echo nan)
EXPO=$( [ -n "${DAEMON[run_20]:-}" ] && json_field "${DAEMON[run_20]}" exposition_bytes || echo nan)
kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" "$work/scrape.txt"; }
pmib() { awk -v k="$(median "${PSTATE[$1]:-}")" 'BEGIN { if (k == "nan") print "n/a"; else printf "%.1f MiB", k / 1024 }'; }
snap() { median "$(awk -v c="$1" '{ printf "%s ", $c }' "$work/snapshots.txt")"; }
snap_max() { awk -v c="$1" 'BEGIN { m = "nan" } { if (m == "nan" || $c + 0 > m) m = $c + 0 } END { print m }' "$work/snapshots.txt"; }
N_SNAP=$(wc -l <"$work/snapshots.txt" | tr -d ' ')
r1() { awk -v v="$1" 'BEGIN { if (v == "nan" || v == "") print "n/a"; else printf "%.1f", v }'; }
SNAP_MB=$(awk 'NR == 1 { printf "%.0f MB", $4 / 1e6 }' "$work/snapshots.txt")

cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
load="$(cut -d' ' -f1-3 /proc/loadavg)"
table="$work/table.md"
{
    echo "Machine: $cpu; $(free -g | awk '/^Mem:/ { print $2 " GiB" }'); load average at the end: $load."
    echo "Files: $N_COMB lines each ($(du -m "$work/combined.jsonl" | cut -f1) MB combined); medians of $RUNS runs;"
    echo "peak RSS from \`/usr/bin/time\` (daemon: VmHWM). \`scripts/bench.sh\`, $(date -u +%Y-%m-%d), $(git rev-parse --short HEAD)."
    echo
    echo "| measurement | events/s | peak RSS | vs its limit | vs mtail |"
    echo "|---|---:|---:|---:|---:|"
    echo "| floor: read lines only (memchr, 1 core) | $(fmt "$R_FLOOR") | $(mib floor) | | |"
    echo "| parse limit: serde_json borrowed struct + 1 count, combined (1 core) | $(fmt "$R_LIMIT") | $(mib limit) | | $(ratio "$R_LIMIT" "$R_MTAIL") |"
    echo "| parse limit, split events (1 core) | $(fmt "$R_LIMIT_SPLIT") | $(mib limit_split) | | |"
    echo "| \`predmon report\`, combined (1 core) | $(fmt "$R_REPORT") | $(mib report) | $(ratio "$R_REPORT" "$R_LIMIT") of parse limit; time $(ratio "$R_FLOOR" "$R_REPORT") the floor's | $(ratio "$R_REPORT" "$R_MTAIL") |"
    echo "| \`predmon report\`, split, delayed labels (1 core) | $(fmt "$R_REPORT_SPLIT") | $(mib report_split) | $(ratio "$R_REPORT_SPLIT" "$R_LIMIT_SPLIT") of split parse limit | |"
    echo "| \`predmon run\`, file source, to completion, /metrics every 25 ms (2 cores) | $(fmt "$R_RUN") | $(mib run_file) | $(ratio "$R_RUN" "$R_LIMIT") of parse limit | $(ratio "$R_RUN" "$R_MTAIL") |"
    echo "| \`predmon report\`, combined, every extension configured, the plain file (no segment field; 1 core) | $(fmt "$R_REPORT_CFG") | $(mib report_cfg) | $(ratio "$R_REPORT_CFG" "$R_REPORT") of plain \`report\` | |"
    echo "| \`predmon report\`, combined, every extension on (8 segments, positive class, 2 thresholds; 1 core) | $(fmt "$R_REPORT_EXT") | $(mib report_ext) | $(ratio "$R_REPORT_EXT" "$R_REPORT") of plain \`report\` | |"
    echo "| \`predmon report\`, split, every extension on (1 core) | $(fmt "$R_REPORT_SPLIT_EXT") | $(mib report_split_ext) | $(ratio "$R_REPORT_SPLIT_EXT" "$R_REPORT_SPLIT") of plain split | |"
    echo "| \`predmon run\`, file source, every extension on, /metrics every 25 ms (2 cores) | $(fmt "$R_RUN_EXT") | $(mib run_ext) | $(ratio "$R_RUN_EXT" "$R_RUN") of plain \`run\` | |"
    echo "| \`predmon run\`, file, 20 models x 20 classes x 4 windows, /metrics every 100 ms | $(fmt "$R_RUN20") | $(mib run_20) | | |"
    echo "| bare rdkafka consumer + serde_json (examples/kafka_bare.rs; tansu, 1 partition; from the first message) | $(fmt "$R_BARE") | $(mib kafka_bare) | | |"
    echo "| \`predmon run\`, Kafka source (tansu, 1 partition; from the first message, /metrics every 25 ms) | $(fmt "$R_KAFKA") | $(mib run_kafka) | $(ratio "$R_KAFKA" "$R_BARE") of bare consumer | |"
    echo "| mtail --one_shot, counting the same confusion cells | $(fmt "$R_MTAIL") | $(mib mtail) | | 1.00x |"
    echo
    echo "| other limit | measured |"
    echo "|---|---:|"
    echo "| \`/metrics\` at 20 x 20 x 4 ($EXPO bytes), during full-speed ingestion, HTTP (median / max of $S_N) | $S_MED / $S_MAX ms |"
    echo "| \`/metrics\` at 20 x 20 x 4, idle, HTTP (median / max of 20) | $I_MED / $I_MAX ms |"
    echo "| \`/metrics\` render in-process under load (median / max of $(kv scrapes)) | $(kv render_ms_median) / $(kv render_ms_max) ms |"
    echo "| engine lock held by a scrape's copy (median / max) | $(kv capture_ms_median) / $(kv capture_ms_max) ms |"
    echo "| longest ingestion stall behind a scrape (ingestion thread's wait for the lock) | $(kv ingest_lock_wait_ms_max) ms |"
    echo "| \`/api/v1/models\` at 20 x 20 x 4, in-process under load: request / engine lock held (median / max of $(kv api_requests)) | $(kv api_ms_median) / $(kv api_ms_max) ms; $(kv api_lock_ms_median) / $(kv api_lock_ms_max) ms |"
    echo "| page at \`/\`, the same: request / engine lock held (median / max of $(kv page_requests)) | $(kv page_ms_median) / $(kv page_ms_max) ms; $(kv page_lock_ms_median) / $(kv page_lock_ms_max) ms |"
    echo "| longest ingestion stall behind \`/api/v1/models\` / the page (computed under the lock as before: $(kv api_locked_ingest_lock_wait_ms_max) / $(kv page_locked_ingest_lock_wait_ms_max) ms) | $(kv api_ingest_lock_wait_ms_max) / $(kv page_ingest_lock_wait_ms_max) ms |"
    [ "$KAFKA_OK" = 1 ] && echo "| Kafka, CPU per message (medians): bare consumer / tansu meanwhile; predmon run (engine + Kafka polling thread + librdkafka's threads + HTTP) / tansu meanwhile | $(median "${KCPU[bare]:-}") / $(median "${KCPU[tansu_bare]:-}") µs; $(median "${KCPU[total]:-}") ($(median "${KCPU[predmon-engine]:-}") + $(median "${KCPU[kafka-src]:-}") + $(median "${KCPU[rdk:broker]:-}") + $(median "${KCPU[predmon]:-}")) / $(median "${KCPU[tansu_predmon]:-}") µs |"
    echo "| RSS steady state, daemon at 20 x 20 x 4 after ingesting $N_COMB events | $(awk -v k="$RSS20" 'BEGIN { printf "%.1f MiB", k / 1024 }') |"
    echo "| memory per pending join entry ($(lines_of "$work/pending.jsonl") pending prediction halves, \`report\`) | $PENDING_BYTES bytes (peak RSS $(mib pending)) |"
    echo "| \`predmon run\` holding $(lines_of "$work/pending.jsonl") pending prediction halves, VmHWM: without \`[state]\` / with \`[state]\` (a snapshot every 2 s for 10 s) / restarted from that snapshot | $(pmib hwm_plain) / $(pmib hwm_state) / $(pmib hwm_restart) |"
    echo "| snapshot of those halves (${SNAP_MB:-n/a}), written (fsync included; the engine thread does not ingest meanwhile) (median / max of $N_SNAP) | $(r1 "$(snap 1)") / $(r1 "$(snap_max 1)") ms |"
    echo "| engine lock held by a snapshot, longest single hold (median / max) | $(r1 "$(snap 2)") / $(r1 "$(snap_max 2)") ms |"
    echo "| longest \`/metrics\` request during those snapshots, HTTP (median of runs) | $(r1 "$(median "${PSTATE[probe_max]:-}")") ms |"
    echo "| restart from that snapshot to the first scrape that sees every event (median) | $(r1 "$(median "${PSTATE[restart_s]:-}")") s |"
    echo
    cat "$work/scaling.md"
    if [ "${#SKIPPED[@]}" -gt 0 ]; then
        echo
        for s in "${SKIPPED[@]}"; do echo "Skipped: $s"; done
    fi
} >"$table"

# ---------------------------------------------------------------------------- targets
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "nan" && b != "nan" && a + 0 >= b + 0) }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "nan" && a != "" && a + 0 < b + 0) }'; }
check() { # check DESCRIPTION CONDITION...
    local what="$1"
    shift
    if "$@"; then echo "- met: $what"; else echo "- MISSED: $what"; fi
}
mul() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan") print "nan"; else print a * b }'; }
{
    echo
    echo "Targets:"
    check "report combined >= 2,000,000 events/s ($(fmt "$R_REPORT"))" ge "$R_REPORT" 2000000
    check "report combined >= 0.8 of the parse limit ($(ratio "$R_REPORT" "$R_LIMIT"))" ge "$R_REPORT" "$(mul "$R_LIMIT" 0.8)"
    check "report combined >= 15x mtail ($(ratio "$R_REPORT" "$R_MTAIL"))" ge "$R_REPORT" "$(mul "$R_MTAIL" 15)"
    check "report combined peak RSS < 50 MiB ($(mib report))" lt "$(median "${RSS[report]}")" 51200
    check "report split >= 1,200,000 events/s ($(fmt "$R_REPORT_SPLIT"))" ge "$R_REPORT_SPLIT" 1200000
    check "run file source >= 1,000,000 events/s, scrapes included ($(fmt "$R_RUN"))" ge "$R_RUN" 1000000
    check "every extension configured, the plain file: report combined >= 2,000,000 events/s ($(fmt "$R_REPORT_CFG"))" ge "$R_REPORT_CFG" 2000000
    check "every extension on: report combined >= 2,000,000 events/s ($(fmt "$R_REPORT_EXT"))" ge "$R_REPORT_EXT" 2000000
    check "every extension on: report combined peak RSS < 50 MiB ($(mib report_ext))" lt "$(median "${RSS[report_ext]}")" 51200
    check "every extension on: report split >= 1,200,000 events/s ($(fmt "$R_REPORT_SPLIT_EXT"))" ge "$R_REPORT_SPLIT_EXT" 1200000
    check "every extension on: run file source >= 1,000,000 events/s ($(fmt "$R_RUN_EXT"))" ge "$R_RUN_EXT" 1000000
    check "run Kafka >= 0.8 of bare consumer+parse ($(ratio "$R_KAFKA" "$R_BARE"))" ge "$R_KAFKA" "$(mul "$R_BARE" 0.8)"
    check "/metrics render at 20x20x4 < 20 ms (in-process median $(kv render_ms_median) ms, HTTP idle median $I_MED ms)" lt "$(kv render_ms_median)" 20
    check "no ingestion stall > 5 ms (longest $(kv ingest_lock_wait_ms_max) ms)" lt "$(kv ingest_lock_wait_ms_max)" 5
    check "no ingestion stall > 5 ms behind /api/v1/models or the page (longest $(kv api_ingest_lock_wait_ms_max) / $(kv page_ingest_lock_wait_ms_max) ms)" \
        lt "$(awk -v a="$(kv api_ingest_lock_wait_ms_max)" -v b="$(kv page_ingest_lock_wait_ms_max)" 'BEGIN { print (a > b ? a : b) }')" 5
    check "RSS < 30 MiB steady state at 20x20x4 ($(awk -v k="$RSS20" 'BEGIN { printf "%.1f", k / 1024 }') MiB)" lt "$RSS20" 30720
    check "< 200 bytes per pending join entry ($PENDING_BYTES)" lt "$PENDING_BYTES" 200
    check "1,000,000 pending joins in < 200 MiB RSS, \`predmon run\` with \`[state]\` ($(pmib hwm_state); restarted $(pmib hwm_restart))" \
        lt "$(awk -v a="$(median "${PSTATE[hwm_state]:-}")" -v b="$(median "${PSTATE[hwm_restart]:-}")" 'BEGIN { print (a > b ? a : b) }')" 204800
} >>"$table"

cat "$table"
say "done in $(($(date +%s) - started_all)) s"
if [ "$UPDATE_DOCS" = 1 ]; then
    python3 - "$repo/docs/BENCHMARKS.md" "$table" <<'EOF'
import sys
doc, table = sys.argv[1], open(sys.argv[2]).read().strip()
text = open(doc).read()
begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
i, j = text.index(begin) + len(begin), text.index(end)
open(doc, "w").write(text[:i] + "\n" + table + "\n" + text[j:])
EOF
    say "updated docs/BENCHMARKS.md"
fi
