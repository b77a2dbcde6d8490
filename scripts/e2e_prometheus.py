#!/usr/bin/env python3
"""The Prometheus side of scripts/e2e-prometheus.sh: checks against a live Prometheus
that scrapes a live predmon running the built-in `generate` source.

  e2e_prometheus.py --prometheus http://127.0.0.1:PORT --rules RULES.yml [--timeout 60]

RULES.yml is the rules file Prometheus loaded (the test copy with short `for:`); the
expressions evaluated are those of scripts/dashboard_queries.py, i.e. of the shipped
files. Prints one line per check (`PASS  ...` / `FAIL  ...`, details indented below a
failure); the caller counts them. Exits 0 (the caller decides from the lines).

The scenario (src/source/generate.rs): fraud-v3 predicts `legit` ~97% of the time, so
its recall of `fraud` collapses, its predictions collapse onto `legit` and its accuracy
is at the majority baseline; churn-v2 and intent-router are healthy (~85% accurate,
true classes at most 4:1 apart). One predmon, one `generate` source, no Kafka.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import deploylib

COLLAPSED = "fraud-v3"
HEALTHY = ("churn-v2", "intent-router")

# Expressions that are expected to return nothing in this scenario, with the reason.
# Matched on the raw expression. Keep this list short: every entry is a query the e2e
# cannot prove returns data.
EXPECTED_EMPTY = [
    ("predmon_kafka_consumer_lag",
     "no Kafka source in this scenario: predmon_kafka_consumer_lag exists only for the "
     "partitions a kafka source is assigned"),
]

# Every alert of the rules file, and what it must do here. "firing": its expression
# returns the listed labels and the alert reaches `firing`; "inactive": its expression
# returns nothing and the alert is neither pending nor firing (no false positive);
# "any": only that the expression parses (the reason says why no more).
ALERTS = {
    "PredmonRecallCollapse": ("firing", {"model": COLLAPSED, "class": "fraud"},
                              "fraud-v3 finds ~3% of its frauds"),
    "PredmonPredictionCollapse": ("firing", {"model": COLLAPSED, "class": "legit"},
                                  "fraud-v3 predicts legit ~97% of the time, ~67% are legit"),
    "PredmonNearChance": ("firing", {"model": COLLAPSED},
                          "fraud-v3's accuracy is its majority baseline"),
    "PredmonLabelImbalance": ("inactive", None,
                              "the generator's Zipf(1) classes are at most 4:1 apart (threshold 10)"),
    "PredmonDistributionShift": ("inactive", None,
                                 "the generator's class mix does not change, so no model's "
                                 "predictions drift from its 10 s reference period"),
    "PredmonDown": ("inactive", None, "the predmon target is up"),
    "PredmonIngestionStalled": ("inactive", None, "2000 events/s are read"),
    "PredmonSourceDown": ("inactive", None, "the generate source is up"),
    "PredmonRejectionRateSpike": ("inactive", None, "the generator writes no invalid event"),
    "PredmonPendingJoinsGrowing": ("any", None,
                                   "pending predictions hover around rate x label_delay; the "
                                   "sign of their deriv is noise, which the test copy's `for: 5s` "
                                   "lets flap (30m in the shipped rules)"),
}

# Recording rules (Prometheus, from the summed per-class counts) against predmon's own
# gauges: with one instance they must agree (contract Section 2; the rules file says
# "to the last digit"). (record, predmon gauge, extra matchers).
RECORD_VS_GAUGE = [
    ("predmon:window_samples:sum", "predmon_window_samples", ""),
    ("predmon:class_precision:sum", "predmon_class_precision", ""),
    ("predmon:class_recall:sum", "predmon_class_recall", ""),
    ("predmon:class_f1:sum", "predmon_class_f1", ""),
    ("predmon:accuracy:sum", "predmon_accuracy", ""),
    ("predmon:balanced_accuracy:sum", "predmon_balanced_accuracy", ""),
    ("predmon:majority_baseline_accuracy:sum", "predmon_majority_baseline_accuracy", ""),
    ("predmon:imbalance_ratio:sum", "predmon_imbalance_ratio", ""),
    ("predmon:prediction_psi:sum", "predmon_prediction_psi", ""),
] + [
    (f"predmon:{m}:sum", f"predmon_{m}", f'average="{a}"')
    for m in ("precision", "recall", "f1")
    for a in ("micro", "macro", "weighted")
]
TOLERANCE = 1e-9


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, ok: bool, name: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"PASS  {name}")
        else:
            self.failed += 1
            print(f"FAIL  {name}")
            for line in detail.splitlines():
                print(f"      {line}")
        sys.stdout.flush()
        return ok


class Prometheus:
    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def get(self, path: str, **params) -> dict:
        url = f"{self.base}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:  # 400 and 422 carry the PromQL error as JSON
            try:
                return json.load(e)
            except ValueError:
                return {"status": "error", "error": f"HTTP {e.code}"}

    def query(self, expr: str, at: float | None = None) -> dict:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.get("/api/v1/query", **params)

    def vector(self, expr: str) -> list[dict]:
        d = self.query(expr)
        if d.get("status") != "success":
            raise RuntimeError(f"{expr}: {d.get('errorType')}: {d.get('error')}")
        return d["data"]["result"]

    def active_alerts(self) -> list[dict]:
        d = self.get("/api/v1/alerts")
        return d["data"]["alerts"] if d.get("status") == "success" else []


def labels_match(labels: dict, want: dict) -> bool:
    return all(labels.get(k) == v for k, v in want.items())


def fmt_labels(labels: dict) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__") + "}"


def quality_alert_names(rules_path: str) -> set[str]:
    doc = deploylib.load_yaml(rules_path)
    return {r["alert"] for g in doc["groups"] if g["name"] == "predmon-quality"
            for r in g["rules"] if "alert" in r}


def wait_for_scrapes(c: Checks, prom: Prometheus, deadline: float, n: int = 5) -> bool:
    expr = f'count_over_time(up{{job="predmon"}}[1m]) >= {n} and up{{job="predmon"}} == 1'
    last = None
    started = time.time()
    while time.time() < deadline:
        try:
            if prom.vector(expr):
                return c.check(True, f"Prometheus scraped predmon at least {n} times, target up "
                                     f"(after {time.time() - started:.1f} s)")
        except (RuntimeError, OSError) as e:
            last = e
        time.sleep(0.5)
    targets = prom.get("/api/v1/targets")
    return c.check(False, f"Prometheus scraped predmon at least {n} times, target up",
                   f"last error: {last}\ntargets: {json.dumps(targets)[:2000]}")


def wait_for_alerts(c: Checks, prom: Prometheus, deadline: float, quality: set[str]) -> list[dict]:
    """Polls /api/v1/alerts until every expected alert fires (or the deadline); meanwhile
    records any quality alert of a healthy model, pending or firing."""
    want = {name: lab for name, (state, lab, _) in ALERTS.items() if state == "firing"}
    healthy_seen: dict[tuple, dict] = {}
    started = time.time()
    alerts: list[dict] = []
    fired_at: dict[str, float] = {}
    while True:
        alerts = prom.active_alerts()
        for a in alerts:
            lab = a["labels"]
            if lab.get("alertname") in quality and lab.get("model") in HEALTHY:
                healthy_seen[tuple(sorted(lab.items()))] = a
        for name, lab in want.items():
            if name not in fired_at and any(
                    a["labels"].get("alertname") == name and labels_match(a["labels"], lab)
                    and a["state"] == "firing" for a in alerts):
                fired_at[name] = time.time() - started
        if len(fired_at) == len(want) or time.time() >= deadline:
            break
        time.sleep(0.5)
    for name, lab in want.items():
        c.check(name in fired_at,
                f"alert {name}{fmt_labels(lab)} reaches firing"
                + (f" (after {fired_at[name]:.1f} s of polling)" if name in fired_at else ""),
                "active alerts:\n" + "\n".join(
                    f"{a['labels'].get('alertname')}{fmt_labels(a['labels'])} {a['state']}" for a in alerts))
    for model in HEALTHY:
        seen = [a for k, a in healthy_seen.items() if dict(k).get("model") == model]
        c.check(not seen, f"healthy model {model}: no quality alert ({', '.join(sorted(quality))}) "
                          "pending or firing at any poll",
                "\n".join(f"{a['labels'].get('alertname')}{fmt_labels(a['labels'])} {a['state']}" for a in seen))
    return alerts


def check_queries(c: Checks, prom: Prometheus, queries: list[dict], alerts: list[dict]) -> None:
    seen_alerts = set()
    for q in queries:
        where = f"{q['source']}: {q['where']}"
        d = prom.query(q["expr"])
        if d.get("status") != "success":
            c.check(False, f"query {where}", f"{d.get('errorType')}: {d.get('error')}\nexpr: {q['expr']}")
            continue
        data = d["data"]
        result = data["result"]
        if data["resultType"] == "vector":
            values = [float(s["value"][1]) for s in result]
        elif data["resultType"] == "scalar":
            values = [float(result[1])]
        else:
            values = [float(v[1]) for s in result for v in s.get("values", [])]
        nonfinite = [s for s in result if data["resultType"] == "vector" and not math.isfinite(float(s["value"][1]))]
        detail = f"expr: {q['expr']}\nresult: {json.dumps(result)[:1500]}"

        if q["kind"] == "alert":
            name = q["where"].rsplit(" ", 1)[-1]
            seen_alerts.add(name)
            if name not in ALERTS:
                c.check(False, f"alert {name}: expression parses; expected state known",
                        "a new alert in the rules file: give it an expectation in ALERTS of "
                        "scripts/e2e_prometheus.py")
                continue
            state, lab, reason = ALERTS[name]
            active = [a for a in alerts if a["labels"].get("alertname") == name]
            if state == "firing":
                ok = any(labels_match(s["metric"], lab) for s in result)
                c.check(ok, f"alert {name}: expression returns {fmt_labels(lab)} ({reason})", detail)
            elif state == "inactive":
                ok = not result and not active
                c.check(ok, f"alert {name}: expression returns nothing, alert inactive ({reason})",
                        detail + "\nactive: " + json.dumps(active)[:1000])
            else:
                c.check(True, f"alert {name}: expression parses ({len(result)} series now; "
                              f"not asserted: {reason})")
            continue

        empty_reason = next((r for pat, r in EXPECTED_EMPTY if pat in q["raw"]), None)
        if empty_reason:
            c.check(not result, f"query {where}: parses, empty as expected ({empty_reason})", detail)
            continue
        ok = bool(values) and not nonfinite
        c.check(ok, f"query {where}: {len(result) if data['resultType'] != 'scalar' else 1} series"
                    + ("" if not nonfinite else f", {len(nonfinite)} not finite"), detail)

    for name in ALERTS:
        if name not in seen_alerts:
            c.check(False, f"alert {name}: in the rules file",
                    "ALERTS in scripts/e2e_prometheus.py names an alert the rules file no longer has")


def samples_by_series(result: list[dict]) -> dict[tuple, list[tuple[float, float]]]:
    out = {}
    for s in result:
        key = tuple(sorted((k, v) for k, v in s["metric"].items() if k != "__name__"))
        out[key] = [(float(t), float(v)) for t, v in s["values"]]
    return out


def scrapes_read(prom: Prometheus, at: float) -> dict[float, tuple[float, float]]:
    """Evaluation time -> (timestamp of the scrape the first rule of predmon-quality read,
    that of the scrape its last rule read): e2e:scraped_at:first/last, the two rules
    scripts/e2e-prometheus.sh adds around the group."""
    marks = {}
    for end in ("first", "last"):
        r = prom.query(f"e2e:scraped_at:{end}[15s]", at)
        for s in r.get("data", {}).get("result", []):
            for t, v in s["values"]:
                marks.setdefault(round(float(t), 3), {})[end] = round(float(v), 3)
    return {t: (m["first"], m["last"]) for t, m in marks.items() if len(m) == 2}


def check_record_values(c: Checks, prom: Prometheus) -> None:
    """Each recorded sample must equal predmon's gauge from exactly the scrape its
    evaluation read. An evaluation torn across two scrapes (one committed while the group
    ran; see scripts/e2e-prometheus.sh) is not compared, and is counted."""
    at = time.time() - 1.0
    read = scrapes_read(prom, at)
    torn = sorted(t for t, (first, last) in read.items() if first != last)
    c.check(len(read) - len(torn) >= 3,
            f"values: {len(read)} evaluations of predmon-quality in 15 s, {len(torn)} torn "
            "across two scrapes (at least 3 whole ones to compare)",
            f"torn at {torn}")
    for record, gauge, extra in RECORD_VS_GAUGE:
        sel = f"{{{extra}}}" if extra else ""
        name = f"values: {record}{sel} == {gauge}{sel} (Prometheus's recomputation equals predmon's own)"
        rec = prom.query(f"{record}{sel}[15s]", at)
        raw = prom.query(f"{gauge}{sel}[30s]", at)
        if rec.get("status") != "success" or raw.get("status") != "success":
            c.check(False, name, f"{rec.get('error')} {raw.get('error')}")
            continue
        rec_s = samples_by_series(rec["data"]["result"])
        raw_s = samples_by_series(raw["data"]["result"])
        problems, compared = [], 0
        for key, samples in rec_s.items():
            want = dict(key)
            matches = [v for k, v in raw_s.items() if labels_match(dict(k), want)]
            if len(matches) != 1:
                problems.append(f"{fmt_labels(want)}: {len(matches)} matching {gauge} series")
                continue
            scraped = {round(s, 3): w for s, w in matches[0]}
            for t, v in samples:
                first, last = read.get(round(t, 3), (None, None))
                if first is None:
                    problems.append(f"{fmt_labels(want)} at {t}: no e2e:scraped_at sample")
                    continue
                if first != last:
                    continue
                if first not in scraped:
                    problems.append(f"{fmt_labels(want)} at {t}: read the scrape at {first}, "
                                    f"which has no {gauge} sample")
                    continue
                compared += 1
                w = scraped[first]
                if abs(v - w) > TOLERANCE * max(1.0, abs(w)):
                    problems.append(f"{fmt_labels(want)} at {t}: record {v!r}, "
                                    f"predmon {w!r} in the scrape at {first}")
        if not rec_s:
            problems.append("no recorded series")
        if compared == 0:
            problems.append("nothing compared")
        c.check(not problems, f"{name}: {len(rec_s)} series, {compared} evaluations",
                "\n".join(problems[:20]))


def check_predmon_verdicts(c: Checks, prom: Prometheus) -> None:
    """predmon's own alerts (predmon_alert) agree with the scenario."""
    for alert, cls in (("recall_collapse", "fraud"), ("prediction_collapse", "legit"), ("near_chance", "")):
        expr = f'predmon_alert{{model="{COLLAPSED}",window="5m",alert="{alert}",class="{cls}"}}'
        r = prom.vector(expr)
        c.check(len(r) == 1 and float(r[0]["value"][1]) == 1,
                f"predmon's own verdict {expr} == 1", json.dumps(r))
    models = "|".join(HEALTHY)
    r = prom.vector(f'predmon_alert{{model=~"{models}"}} == 1')
    c.check(not r, f"predmon's own verdicts: no predmon_alert firing for {', '.join(HEALTHY)}",
            "\n".join(fmt_labels(s["metric"]) for s in r))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--rules", required=True, help="the rules file Prometheus loaded")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for scrapes and alerts")
    args = ap.parse_args()

    c = Checks()
    prom = Prometheus(args.prometheus)
    deadline = time.time() + args.timeout
    queries = list(deploylib.iter_queries())
    c.check(len(queries) > 0, f"scripts/dashboard_queries.py lists {len(queries)} expressions")

    if wait_for_scrapes(c, prom, deadline):
        alerts = wait_for_alerts(c, prom, deadline, quality_alert_names(args.rules))
        t0 = time.time()
        check_queries(c, prom, queries, prom.active_alerts() or alerts)
        check_record_values(c, prom)
        check_predmon_verdicts(c, prom)
        # Not a check: where the time went, should a run be slow.
        print(f"INFO  queries, recorded values and verdicts checked in {time.time() - t0:.1f} s")
    print(f"e2e_prometheus.py: {c.passed} passed, {c.failed} failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
