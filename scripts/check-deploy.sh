#!/usr/bin/env bash
# Checks predmon's deployment files: Prometheus rules and their unit tests,
# Prometheus configs, Grafana dashboards and provisioning, docker-compose,
# Dockerfile and the Kubernetes example.
#
#   scripts/check-deploy.sh [-v]
#
# -v prints every check's output, not only a failing one's. Needs promtool
# (Debian package `prometheus`, installed with apt-get when missing and running
# as root) and check-jsonschema (PyPI; installed into the venv at
# ${PREDMON_VENV:-target/test-venv}, or into target/deploy-venv when there is
# none). With CI=true a tool that cannot be had fails the run; otherwise the
# checks that need it are skipped. The shipped predmon configs are checked with
# `predmon check-config`: PREDMON_BIN, else target/release/predmon, brought up to
# date first with `cargo build --release --locked --bin predmon` when cargo exists.
#
# Ends with "check-deploy: N passed, M failed[, K skipped]"; exits 1 on a failure.

set -uo pipefail

VERBOSE=0
[[ "${1:-}" == "-v" ]] && VERBOSE=1

cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

PASSED=0
FAILED=0
SKIPPED=0
IN_CI=0
[[ "${CI:-}" == "true" ]] && IN_CI=1

# run_check NAME COMMAND...: one line per check; the output of a failing one.
run_check() {
  local name=$1
  shift
  if "$@" >"$TMP/out" 2>&1; then
    PASSED=$((PASSED + 1))
    printf 'PASS  %s\n' "$name"
    [[ $VERBOSE == 1 ]] && sed 's/^/      /' "$TMP/out"
  else
    FAILED=$((FAILED + 1))
    printf 'FAIL  %s\n' "$name"
    sed 's/^/      /' "$TMP/out"
  fi
  return 0
}

# missing_tool NAME REASON: a failure under CI, a skip elsewhere.
missing_tool() {
  if [[ $IN_CI == 1 ]]; then
    FAILED=$((FAILED + 1))
    printf 'FAIL  %s (%s)\n' "$1" "$2"
  else
    SKIPPED=$((SKIPPED + 1))
    printf 'SKIP  %s (%s)\n' "$1" "$2"
  fi
}

skip() {
  SKIPPED=$((SKIPPED + 1))
  printf 'SKIP  %s (%s)\n' "$1" "$2"
}

# --- tools --------------------------------------------------------------------------
ensure_promtool() {
  command -v promtool >/dev/null 2>&1 && return 0
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "....  installing promtool (apt-get install prometheus)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends prometheus >"$TMP/apt.log" 2>&1 ||
      { apt-get update -q >>"$TMP/apt.log" 2>&1 &&
        apt-get install -y -q --no-install-recommends prometheus >>"$TMP/apt.log" 2>&1; } ||
      tail -5 "$TMP/apt.log"
  fi
  command -v promtool >/dev/null 2>&1
}

PY=""
ensure_venv() {
  local venv="${PREDMON_VENV:-target/test-venv}"
  if [[ ! -x "$venv/bin/python" ]]; then
    venv=target/deploy-venv
    if [[ ! -x "$venv/bin/python" ]]; then
      echo "....  creating $venv"
      python3 -m venv "$venv" >"$TMP/venv.log" 2>&1 || { tail -5 "$TMP/venv.log"; return 1; }
    fi
  fi
  PY="$venv/bin/python"
  if ! "$PY" -c 'import check_jsonschema' >/dev/null 2>&1; then
    echo "....  installing check-jsonschema into $venv"
    "$PY" -m pip install -q check-jsonschema >"$TMP/pip.log" 2>&1 || { tail -5 "$TMP/pip.log"; return 1; }
  fi
  "$PY" -c 'import check_jsonschema' >/dev/null 2>&1
}

HAVE_PROMTOOL=0
ensure_promtool && HAVE_PROMTOOL=1
HAVE_VENV=0
ensure_venv && HAVE_VENV=1
# The helper scripts need only the standard library and a YAML parser.
[[ -z "$PY" || ! -x "$PY" ]] && PY=python3

promtool_check() { # NAME COMMAND...
  if [[ $HAVE_PROMTOOL == 1 ]]; then run_check "$@"; else missing_tool "$1" "promtool not available"; fi
}

# --- (a) Prometheus rules ---------------------------------------------------------------
promtool_check "rules: promtool check rules config/prometheus/predmon-rules.yml" \
  promtool check rules config/prometheus/predmon-rules.yml
promtool_check "rules: promtool test rules config/prometheus/predmon-rules.test.yml (every alert firing and not, recording rule values)" \
  promtool test rules config/prometheus/predmon-rules.test.yml
run_check "rules: every alert has for/severity/summary/description and is tested firing and not firing" \
  "$PY" scripts/check_manifests.py rules
promtool_check "prometheus: promtool check config config/prometheus/prometheus.yml" \
  promtool check config config/prometheus/prometheus.yml

# --- (b) docker-compose schema -------------------------------------------------------------
if [[ $HAVE_VENV == 1 ]]; then
  run_check "compose: check-jsonschema --builtin-schema vendor.compose-spec docker/docker-compose.yml" \
    "$PY" -m check_jsonschema --builtin-schema vendor.compose-spec docker/docker-compose.yml
else
  missing_tool "compose: check-jsonschema --builtin-schema vendor.compose-spec docker/docker-compose.yml" \
    "check-jsonschema not available"
fi

# --- (c) compose cross-checks: mounted paths exist, ports agree ------------------------------
run_check "compose: mounted host paths exist, service ports and references agree, Dockerfile port/healthcheck/user" \
  "$PY" scripts/check_compose.py --prometheus-config "$TMP/docker-prometheus.yml"
if [[ -s "$TMP/docker-prometheus.yml" ]]; then
  promtool_check "prometheus: promtool check config docker/prometheus.yml (rule paths mapped through the compose mounts)" \
    promtool check config "$TMP/docker-prometheus.yml"
fi

# --- (d) dashboards and Grafana provisioning ---------------------------------------------------
run_check "grafana: dashboards parse, every panel target has an expr, variables defined" \
  "$PY" scripts/check_manifests.py dashboards
run_check "grafana: provisioning (data source, dashboard provider, alert rule refs and links)" \
  "$PY" scripts/check_manifests.py grafana

# --- (e) Kubernetes example ----------------------------------------------------------------------
run_check "k8s: docker/k8s manifests parse and agree (labels, ports, volumes, ConfigMap, PodMonitor, log rotation)" \
  "$PY" scripts/check_manifests.py k8s "$TMP/k8s-scrape.yml"
if [[ -s "$TMP/k8s-scrape.yml" ]]; then
  promtool_check "k8s: promtool check config on the README's annotation-based scrape config" \
    promtool check config "$TMP/k8s-scrape.yml"
fi

# --- (f) every PromQL expression parses, and the dashboards' return data ---------------------------
if "$PY" scripts/dashboard_queries.py --format rules >"$TMP/queries.rules.yml" 2>"$TMP/q.err"; then
  n=$(grep -c '^      - record:' "$TMP/queries.rules.yml")
  promtool_check "promql: all $n expressions of dashboards, rules and Grafana alerts parse (promtool check rules)" \
    promtool check rules "$TMP/queries.rules.yml"
else
  FAILED=$((FAILED + 1))
  printf 'FAIL  promql: extract expressions (scripts/dashboard_queries.py)\n'
  sed 's/^/      /' "$TMP/q.err"
fi
if "$PY" scripts/dashboard_queries.py --format promtool-test >"$TMP/queries.test.yml" 2>"$TMP/q.err"; then
  n=$(grep -c '^      - expr:' "$TMP/queries.test.yml")
  promtool_check "promql: all $n dashboard/recording/Grafana-alert queries return data on a synthetic scrape of two instances" \
    promtool test rules "$TMP/queries.test.yml"
else
  FAILED=$((FAILED + 1))
  printf 'FAIL  promql: generate the synthetic-scrape test (scripts/dashboard_queries.py)\n'
  sed 's/^/      /' "$TMP/q.err"
fi

# --- the shipped predmon configs against predmon itself ----------------------------------------------------
# PREDMON_BIN, else target/release/predmon brought up to date with cargo (as e2e-prometheus.sh does);
# without cargo, the newest of target/{release,debug}/predmon that has check-config, as it is.
has_check_config() { [[ -x "$1" && "$("$1" --help 2>/dev/null)" == *check-config* ]]; }
PREDMON_BIN="${PREDMON_BIN:-}"
if [[ -z "$PREDMON_BIN" ]] && command -v cargo >/dev/null 2>&1; then
  run_check "predmon: cargo build --release --locked --bin predmon (so the checks below use the current source)" \
    cargo build --release --locked --quiet --bin predmon
  PREDMON_BIN=target/release/predmon
elif [[ -z "$PREDMON_BIN" ]]; then
  for b in $(ls -t target/release/predmon target/debug/predmon 2>/dev/null); do
    has_check_config "$b" && PREDMON_BIN=$b && break
  done
  [[ -n "$PREDMON_BIN" ]] && echo "....  no cargo: using the existing $PREDMON_BIN, not rebuilt"
fi
if [[ -n "$PREDMON_BIN" ]] && has_check_config "$PREDMON_BIN"; then
  "$PY" - "$TMP/k8s-predmon.toml" <<'EOF'
import sys
sys.path.insert(0, "scripts")
from deploylib import REPO, load_yaml
cm = load_yaml(REPO / "docker/k8s/configmap.yaml")
open(sys.argv[1], "w").write(cm["data"]["predmon.toml"])
EOF
  run_check "predmon: $PREDMON_BIN check-config --config docker/predmon.toml" \
    "$PREDMON_BIN" check-config --config docker/predmon.toml
  run_check "predmon: $PREDMON_BIN check-config --config <docker/k8s/configmap.yaml predmon.toml>" \
    "$PREDMON_BIN" check-config --config "$TMP/k8s-predmon.toml"
else
  skip "predmon: check-config on docker/predmon.toml and the k8s ConfigMap" \
    "no predmon with a check-config subcommand: the build failed, or no cargo and none built; set PREDMON_BIN"
fi

# --- summary ----------------------------------------------------------------------------------------------
summary="check-deploy: $PASSED passed, $FAILED failed"
[[ $SKIPPED -gt 0 ]] && summary="$summary, $SKIPPED skipped"
echo "$summary"
[[ $FAILED -eq 0 ]]
