#!/usr/bin/env bash
# End-to-end proof against a real Prometheus (Debian's `prometheus` package):
#
#   1. predmon run (release binary) on 127.0.0.1 with the built-in `generate` source at
#      2000 events/s, labels 1 s after their predictions, windows 1m/5m/1h/all, state
#      snapshots every second;
#   2. Prometheus on 127.0.0.1 (temporary storage, scrape and evaluation every 1 s)
#      scraping it as job "predmon" and loading a test copy of
#      config/prometheus/predmon-rules.yml in which only `for:` is shortened to 5s;
#   3. scripts/e2e_prometheus.py, through the HTTP API: every PromQL expression of
#      scripts/dashboard_queries.py (dashboards, variables, recording rules, alerts,
#      Grafana alert rules) parses and returns finite data - but the few listed there as
#      expected-empty, each with its reason; fraud-v3's PredmonRecallCollapse,
#      PredmonPredictionCollapse and PredmonNearChance reach `firing`; no quality alert
#      is ever pending or firing for the healthy churn-v2 and intent-router; the agent
#      alerts (but PredmonPendingJoinsGrowing, see there) stay silent; every recording
#      rule equals predmon's own gauge in the scrape its evaluation read, and predmon's own predmon_alert agrees;
#   4. scripts/metrics_table.py: README's Metrics table against predmon's /metrics;
#   5. the Dockerfile's HEALTHCHECK command, run as the image would (sh, its ENV defaults):
#      it passes against this predmon; against a second predmon with TLS, required client
#      certificates and basic auth it fails with the defaults and passes with the
#      PREDMON_HEALTHCHECK_* settings README.md documents.
#
#   bash scripts/e2e-prometheus.sh        # PREDMON_BIN=... to test another binary
#
# Prints one line per check and "e2e-prometheus: N passed, M failed"; exits 1 on a
# failure. Every process it starts is killed on exit. Without prometheus (and unable to
# install it) the run is skipped, except under CI=true, where it fails. Takes ~15 s.

set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
START=$SECONDS
IN_CI=0
[[ "${CI:-}" == "true" ]] && IN_CI=1

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); printf 'PASS  %s\n' "$1"; }
fail() {
  FAILED=$((FAILED + 1))
  printf 'FAIL  %s\n' "$1"
  [[ -n "${2:-}" && -s "$2" ]] && tail -n "${3:-20}" "$2" | sed 's/^/      /'
  return 0
}
finish() {
  echo "e2e-prometheus: $PASSED passed, $FAILED failed ($((SECONDS - START)) s)"
  [[ $FAILED -eq 0 ]]
  exit
}

TMP=$(mktemp -d)
PREDMON_PID=""
PROM_PID=""
TLS_PID=""
FEED_PID=""
cleanup() {
  local pid
  for pid in $PROM_PID $PREDMON_PID $TLS_PID $FEED_PID; do
    kill "$pid" 2>/dev/null
  done
  for pid in $PROM_PID $PREDMON_PID $TLS_PID $FEED_PID; do
    # up to 5 s for a clean exit, then SIGKILL
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools ---------------------------------------------------------------------------------
if ! declare -F apt_install >/dev/null; then
  apt_install() {
    [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null || return 1
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "$@" >"$TMP/apt.log" 2>&1 ||
      { apt-get update -qq >>"$TMP/apt.log" 2>&1 && apt-get install -y -qq "$@" >>"$TMP/apt.log" 2>&1; }
  }
fi
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null || ! command -v curl >/dev/null; then
  echo "....  installing prometheus curl (apt-get)"
  apt_install prometheus curl
fi
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null || ! command -v curl >/dev/null; then
  if [[ $IN_CI == 1 ]]; then
    fail "tools: prometheus, promtool and curl installed (apt-get install prometheus curl)" "$TMP/apt.log"
    finish
  fi
  echo "SKIP  e2e against a real Prometheus: prometheus/promtool/curl not available"
  echo "e2e-prometheus: 0 passed, 0 failed, 1 skipped"
  exit 0
fi

# Python with a YAML parser for scripts/deploylib.py: the test venv, else python3.
PY="${PREDMON_PYTHON:-}"
if [[ -z "$PY" ]]; then
  if python3 -c 'import yaml' 2>/dev/null; then
    PY=python3
  else
    # shellcheck source=scripts/test-env.sh
    . scripts/test-env.sh && PY="$PREDMON_PYTHON"
  fi
fi
if [[ -z "$PY" ]] || ! "$PY" -c 'import sys; sys.path.insert(0, "scripts"); import deploylib' 2>"$TMP/py.err"; then
  fail "tools: a Python that can import scripts/deploylib.py (PyYAML or ruamel.yaml)" "$TMP/py.err"
  finish
fi

# The release binary: PREDMON_BIN, else target/release/predmon brought up to date.
BIN="${PREDMON_BIN:-}"
if [[ -z "$BIN" ]]; then
  BIN=target/release/predmon
  if command -v cargo >/dev/null; then
    if ! cargo build --release --locked --quiet --bin predmon >"$TMP/build.log" 2>&1; then
      fail "cargo build --release" "$TMP/build.log"
      finish
    fi
  fi
fi
if [[ ! -x "$BIN" ]]; then
  fail "predmon binary $BIN exists (cargo build --release, or set PREDMON_BIN)"
  finish
fi

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PREDMON_PORT=$(free_port)
PROM_PORT=$(free_port)
while [[ "$PROM_PORT" == "$PREDMON_PORT" ]]; do PROM_PORT=$(free_port); done

# wait_http URL SECONDS [PID]: until URL answers 2xx; stops early if PID died.
wait_http() {
  local url=$1 deadline=$((SECONDS + $2)) pid=${3:-}
  while ((SECONDS < deadline)); do
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
    [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null && return 1
    sleep 0.2
  done
  return 1
}

# --- predmon -------------------------------------------------------------------------------------
cat >"$TMP/predmon.toml" <<EOF
# scripts/e2e-prometheus.sh: the generate source's scenario, fast
[server]
listen_address = "127.0.0.1:$PREDMON_PORT"

# segments (E4): the generator writes no segment field, so slice by the predicted class;
# a max_segments below some models' class counts exercises __other__
[fields]
segment = "/prediction"

[limits]
max_segments = 3

[metrics]
# the windows the rules (5m, 1h) and the dashboards' \$window use
windows = ["1m", "5m", "1h", "all"]
bucket = "10s"

[state]
path = "$TMP/state.json"
interval = "1s"

# a reference period that completes within the run: the drift panels and rule need it
[drift]
reference = "10s"

# the generator's binary model: ROC/PR AUC and the extra-threshold panels need a positive class
[[models]]
name = "fraud-v3"
positive_class = "fraud"
thresholds = [0.3, 0.7]

[[sources]]
type = "generate"
name = "generate"
rate = 2000.0
label_delay = "1s"
seed = 42

# a multi-label model (the generator writes single-label events only): the Hamming-loss
# and samples-F1 panel needs one; its events are appended to a file while the test runs
[[models]]
name = "tagger-v1"
multi_label = true

[[sources]]
type = "file"
name = "multilabel"
paths = ["$TMP/multilabel.jsonl"]
start_at = "beginning"
poll_interval = "100ms"
EOF
# 20 multi-label events per second, no timestamp (arrival time), every third one split in
# two halves; about 90% of each true set predicted, few extra classes: no quality alert.
: >"$TMP/multilabel.jsonl"
"$PY" - "$TMP/multilabel.jsonl" <<'FEED' &
import json, random, sys, time
rng, tags, i = random.Random(7), ["news", "sports", "tech", "health"], 0
while True:
    with open(sys.argv[1], "a") as f:
        for _ in range(10):
            i += 1
            truth = [t for t in tags if rng.random() < 0.45]
            pred = [t for t in truth if rng.random() < 0.9] + [
                t for t in tags if t not in truth and rng.random() < 0.05]
            if i % 3:
                events = [{"model": "tagger-v1", "prediction": pred, "label": truth}]
            else:
                events = [{"model": "tagger-v1", "id": i, "prediction": pred},
                          {"model": "tagger-v1", "id": i, "label": truth}]
            for e in events:
                f.write(json.dumps(e) + "\n")
    time.sleep(0.5)
FEED
FEED_PID=$!
PREDMON_LOG=warn "$BIN" run --config "$TMP/predmon.toml" >"$TMP/predmon.log" 2>&1 &
PREDMON_PID=$!
if wait_http "http://127.0.0.1:$PREDMON_PORT/readyz" 20 "$PREDMON_PID"; then
  pass "predmon run (generate, 2000 events/s) ready on 127.0.0.1:$PREDMON_PORT (/readyz 200)"
else
  fail "predmon run (generate, 2000 events/s) ready on 127.0.0.1:$PREDMON_PORT (/readyz 200)" "$TMP/predmon.log"
  finish
fi

# --- Prometheus ------------------------------------------------------------------------------------
# The shipped rules with every `for:` shortened to 5s, and nothing else changed.
RULES="$TMP/predmon-rules.e2e.yml"
sed -E 's/^([[:space:]]+)for:[[:space:]]*[0-9a-z]+[[:space:]]*$/\1for: 5s/' \
  config/prometheus/predmon-rules.yml >"$RULES"
n_alerts=$(grep -cE '^[[:space:]]+- alert:' config/prometheus/predmon-rules.yml)
n_for=$(grep -cE '^[[:space:]]+for: 5s$' "$RULES")
if [[ "$n_alerts" -gt 0 && "$n_for" -eq "$n_alerts" ]] &&
  diff <(grep -vE '^[[:space:]]+for:' config/prometheus/predmon-rules.yml) \
    <(grep -vE '^[[:space:]]+for:' "$RULES") >"$TMP/rules.diff" &&
  promtool check rules "$RULES" >>"$TMP/rules.diff" 2>&1; then
  pass "rules: test copy of config/prometheus/predmon-rules.yml differs only in for: 5s ($n_for alerts), promtool check rules"
else
  fail "rules: test copy of config/prometheus/predmon-rules.yml differs only in for: 5s ($n_for of $n_alerts alerts)" "$TMP/rules.diff"
  finish
fi
# Prometheus 2.42 evaluates a group's rules one after another against whatever is
# committed at that moment, so a scrape committed in the middle of an evaluation gives
# that evaluation inputs from two scrapes (newer Prometheus has `query_offset` for this).
# Two test-only rules, first and last in the group, record the timestamp of the scrape
# each end of the evaluation read; scripts/e2e_prometheus.py compares every recorded
# value with predmon's gauge from exactly that scrape, and skips (and counts) the torn
# evaluations whose two ends differ.
MARKER='max(timestamp(predmon_build_info))'
awk -v expr="$MARKER" '
  /^  - name: / { if (in_quality) print "      - record: e2e:scraped_at:last\n        expr: " expr; in_quality = ($0 == "  - name: predmon-quality") }
  { print }
  in_quality && $0 == "    rules:" { print "      - record: e2e:scraped_at:first\n        expr: " expr }
' "$RULES" >"$RULES.marked" && mv "$RULES.marked" "$RULES"
if [[ $(grep -c 'record: e2e:scraped_at:' "$RULES") -eq 2 ]] && promtool check rules "$RULES" >"$TMP/rules.check" 2>&1; then
  pass "rules: e2e:scraped_at:first and :last bracket the predmon-quality group, promtool check rules"
else
  fail "rules: e2e:scraped_at:first and :last bracket the predmon-quality group, promtool check rules" "$TMP/rules.check"
  finish
fi

cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $RULES
scrape_configs:
  # the job name the rules and dashboards expect
  - job_name: predmon
    static_configs:
      - targets: ["127.0.0.1:$PREDMON_PORT"]
EOF
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/prometheus-data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
if wait_http "http://127.0.0.1:$PROM_PORT/-/ready" 30 "$PROM_PID"; then
  pass "prometheus $(prometheus --version 2>&1 | awk 'NR==1 {print $3}') ready on 127.0.0.1:$PROM_PORT"
else
  fail "prometheus ready on 127.0.0.1:$PROM_PORT" "$TMP/prometheus.log"
  finish
fi

# --- the checks through Prometheus's HTTP API ----------------------------------------------------------
"$PY" scripts/e2e_prometheus.py --prometheus "http://127.0.0.1:$PROM_PORT" --rules "$RULES" \
  --timeout 60 >"$TMP/checks.out" 2>&1
grep -v '^e2e_prometheus.py: ' "$TMP/checks.out"
p=$(grep -c '^PASS ' "$TMP/checks.out")
f=$(grep -c '^FAIL ' "$TMP/checks.out")
PASSED=$((PASSED + p))
FAILED=$((FAILED + f))
if ! grep -q '^e2e_prometheus.py: ' "$TMP/checks.out"; then
  fail "scripts/e2e_prometheus.py ran to the end" "$TMP/checks.out"
fi

# --- README's Metrics table against this predmon's /metrics ------------------------------------------
if curl -fsS -o "$TMP/metrics.txt" "http://127.0.0.1:$PREDMON_PORT/metrics" &&
  "$PY" scripts/metrics_table.py --metrics-file "$TMP/metrics.txt" >"$TMP/table.out" 2>&1; then
  pass "README Metrics table matches /metrics: $(tail -1 "$TMP/table.out")"
else
  fail "README Metrics table matches /metrics" "$TMP/table.out" 40
fi

# --- the Dockerfile's HEALTHCHECK, as the image runs it ---------------------------------------------------
# Its command with the image's ENV defaults (overridable, as with `docker run -e`) and
# the port moved to this test's: healthcheck PORT [NAME=VALUE...].
if ! "$PY" - docker/Dockerfile >"$TMP/healthcheck.sh" 2>"$TMP/hc.err" <<'EOF'
import json, re, shlex, sys
text = re.sub(r"\\\n", " ", open(sys.argv[1]).read())
final = text.split("\nFROM ")[-1]
for m in re.finditer(r"^ENV\s+(.*)$", final, re.M):
    for item in shlex.split(m.group(1)):
        k, _, v = item.partition("=")
        if k.startswith("PREDMON_HEALTHCHECK"):
            print(f': "${{{k}={shlex.quote(v)}}}"')
hc = re.search(r"^HEALTHCHECK\s.*?\bCMD\s+(.*)$", final, re.M).group(1)
if hc.lstrip().startswith("["):
    hc = " ".join(shlex.quote(a) for a in json.loads(hc))
print(hc.replace(":19835/", ':"$HC_PORT"/'))
EOF
then
  fail "docker/Dockerfile: HEALTHCHECK command extracted" "$TMP/hc.err"
fi
healthcheck() {
  local port=$1
  shift
  env HC_PORT="$port" "$@" sh "$TMP/healthcheck.sh" >"$TMP/hc.out" 2>&1
}
if healthcheck "$PREDMON_PORT"; then
  pass "docker/Dockerfile HEALTHCHECK (image defaults: plain HTTP) succeeds against predmon"
else
  fail "docker/Dockerfile HEALTHCHECK (image defaults: plain HTTP) succeeds against predmon" "$TMP/hc.out"
fi

# Behind --web.config.file with TLS, required client certificates and basic auth: the
# defaults must fail, the settings README.md documents must pass. A throwaway CA, server
# and client certificate; the bcrypt hash (cost 4) is of the password "e2e-probe".
tls_healthcheck() {
  local d="$TMP/tls" port out
  mkdir -p "$d"
  (
    cd "$d" || exit 1
    ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "$@"; }
    ec -x509 -keyout ca.key -out ca.crt -days 2 -subj /CN=e2e-ca &&
      ec -keyout server.key -out server.csr -subj /CN=predmon &&
      ec -keyout probe.key -out probe.csr -subj /CN=probe &&
      openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile <(printf 'subjectAltName=DNS:localhost,DNS:predmon.example') -out server.crt &&
      openssl x509 -req -in probe.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile <(printf 'extendedKeyUsage=clientAuth') -out probe.crt
  ) >"$TMP/openssl.log" 2>&1 || { fail "healthcheck behind TLS: openssl made test certificates" "$TMP/openssl.log"; return; }
  cat >"$d/web-config.yml" <<'EOF'
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
basic_auth_users:
  probe: $2b$04$TQHE5zybYjwk9ZV25lrTBubVKlVakinaj4pwJ3mt941rJ1JeYEGia
EOF
  cat >"$d/healthcheck.curlrc" <<EOF
cacert = "$d/ca.crt"
cert = "$d/probe.crt"
key = "$d/probe.key"
user = "probe:e2e-probe"
EOF
  port=$(free_port)
  sed -e "s/127.0.0.1:$PREDMON_PORT/127.0.0.1:$port/" -e '/^\[state\]/,/^interval/d' \
    "$TMP/predmon.toml" >"$d/predmon.toml"
  PREDMON_LOG=warn "$BIN" run --config "$d/predmon.toml" --web.config.file "$d/web-config.yml" \
    >"$TMP/predmon-tls.log" 2>&1 &
  TLS_PID=$!
  if ! curl_wait "$port" "$d/healthcheck.curlrc"; then
    fail "healthcheck behind TLS: predmon with --web.config.file started" "$TMP/predmon-tls.log"
    return
  fi
  if healthcheck "$port"; then
    fail "docker/Dockerfile HEALTHCHECK defaults fail against TLS + client certificates + basic auth" "$TMP/hc.out"
  else
    pass "docker/Dockerfile HEALTHCHECK defaults fail against TLS + client certificates + basic auth ($(tail -1 "$TMP/hc.out"))"
  fi
  if healthcheck "$port" PREDMON_HEALTHCHECK_SCHEME=https PREDMON_HEALTHCHECK_HOST=localhost \
    PREDMON_HEALTHCHECK_CURL_ARGS="--config $d/healthcheck.curlrc"; then
    pass "docker/Dockerfile HEALTHCHECK with PREDMON_HEALTHCHECK_SCHEME=https, _HOST=localhost, _CURL_ARGS=--config <curlrc> succeeds"
  else
    fail "docker/Dockerfile HEALTHCHECK with PREDMON_HEALTHCHECK_SCHEME=https, _HOST=localhost, _CURL_ARGS=--config <curlrc> succeeds" "$TMP/hc.out"
  fi
  if healthcheck "$port" PREDMON_HEALTHCHECK_SCHEME=https PREDMON_HEALTHCHECK_HOST=predmon.example \
    PREDMON_HEALTHCHECK_CURL_ARGS="--config $d/healthcheck.curlrc --resolve predmon.example:$port:127.0.0.1"; then
    pass "docker/Dockerfile HEALTHCHECK with _HOST=predmon.example and --resolve predmon.example:<port>:127.0.0.1 succeeds"
  else
    fail "docker/Dockerfile HEALTHCHECK with _HOST=predmon.example and --resolve predmon.example:<port>:127.0.0.1 succeeds" "$TMP/hc.out"
  fi
}
# curl_wait PORT CURLRC: until the TLS predmon answers its /healthz (10 s).
curl_wait() {
  local deadline=$((SECONDS + 10))
  while ((SECONDS < deadline)); do
    curl -fsS -o /dev/null --max-time 2 --config "$2" "https://localhost:$1/healthz" 2>/dev/null && return 0
    kill -0 "$TLS_PID" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}
if command -v openssl >/dev/null || apt_install openssl; then
  tls_healthcheck
elif [[ $IN_CI == 1 ]]; then
  fail "healthcheck behind TLS: openssl installed (apt-get install openssl)"
else
  echo "SKIP  healthcheck behind TLS: no openssl"
fi

# --- both processes still alive, and predmon logged no error ----------------------------------------------
if kill -0 "$PREDMON_PID" 2>/dev/null && kill -0 "$PROM_PID" 2>/dev/null; then
  pass "predmon and prometheus still running"
else
  fail "predmon and prometheus still running" "$TMP/predmon.log"
fi
if ! grep -qE '\bERROR\b|panicked' "$TMP/predmon.log"; then
  pass "predmon logged no error or panic"
else
  fail "predmon logged no error or panic" "$TMP/predmon.log"
fi

finish
