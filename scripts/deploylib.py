"""Helpers shared by the deployment checks (scripts/check-deploy.sh).

Finds every PromQL expression the project ships - Grafana dashboard targets and
variable queries, Prometheus rules, Grafana-managed alert rules - and
substitutes Grafana's template variables so the result is plain PromQL that
promtool or a live Prometheus can evaluate.

Standard library only, plus a YAML parser: PyYAML if importable, else
ruamel.yaml (which check-jsonschema brings).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parent.parent

DASHBOARD_DIR = REPO / "dashboards"
RULE_FILES = [REPO / "config/prometheus/predmon-rules.yml"]
GRAFANA_ALERTING_DIR = REPO / "dashboards/provisioning/alerting"

# Values for Grafana's variables when a query runs outside Grafana. Multi-value
# variables used with =~ get ".*"; $window a real window label value.
DEFAULT_VARS = {
    "model": ".*",
    "class": ".*",
    "segment": ".*",
    "window": "5m",
    "job": "predmon",
    "instance": ".*",
    "datasource": "prometheus",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__rate_interval": "1m",
    "__interval": "30s",
    "__interval_ms": "30000",
}

# A panel repeated over a variable (its own `repeat`, or its row's) sees one value of
# it at a time, so its queries run with one concrete value instead of ".*": a model
# that predmon's generate scenario and the synthetic scrape of dashboard_queries.py
# both have.
REPEAT_VARS = {
    "model": "fraud-v3",
}

_VAR_RE = re.compile(
    r"\$\{(?P<braced>\w+)(?::[^}]*)?\}"  # ${var} and ${var:format}
    r"|\[\[(?P<old>\w+)(?::[^\]]*)?\]\]"  # [[var]] (deprecated syntax)
    r"|\$(?P<plain>\w+)"  # $var
)


def loads_yaml_all(text: str) -> list[Any]:
    """Every document of a YAML text, as plain Python data."""
    try:
        import yaml  # type: ignore

        return list(yaml.safe_load_all(text))
    except ImportError:
        from ruamel.yaml import YAML  # type: ignore

        return list(YAML(typ="safe", pure=True).load_all(text))


def load_yaml_all(path: Path) -> list[Any]:
    """Every document of a YAML file."""
    return loads_yaml_all(Path(path).read_text(encoding="utf-8"))


def load_yaml(path: Path) -> Any:
    docs = load_yaml_all(path)
    if len(docs) != 1:
        raise ValueError(f"{path}: expected one YAML document, found {len(docs)}")
    return docs[0]


def template_vars(expr: str) -> list[str]:
    """Names of the Grafana variables an expression uses."""
    return [m.group("braced") or m.group("old") or m.group("plain") for m in _VAR_RE.finditer(expr)]


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace Grafana variables; an unknown variable is an error."""

    def repl(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("old") or m.group("plain")
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} (pass --var {name}=VALUE)")
        return values[name]

    return _VAR_RE.sub(repl, expr)


def rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    """Every panel, including those nested in (collapsed) rows."""
    for p in panels or []:
        yield p
        yield from iter_panels(p.get("panels") or [])


def iter_panels_repeated(panels: list[dict]) -> Iterator[tuple[dict, str | None]]:
    """Every panel with the variable Grafana repeats it over: its own `repeat`, else
    its row's (the panels nested in a collapsed row, or those that follow an expanded
    row up to the next row), else None."""
    row_repeat = None
    for p in panels or []:
        if p.get("type") == "row":
            row_repeat = p.get("repeat") or None
            yield p, row_repeat
            for q in iter_panels(p.get("panels") or []):
                yield q, q.get("repeat") or row_repeat
        else:
            yield p, p.get("repeat") or row_repeat


_LABEL_VALUES_RE = re.compile(r"^\s*label_values\(\s*(?P<sel>.+?)\s*,\s*(?P<label>\w+)\s*\)\s*$", re.S)
_QUERY_RESULT_RE = re.compile(r"^\s*query_result\(\s*(?P<expr>.+)\s*\)\s*$", re.S)


def variable_expr(var: dict) -> str | None:
    """The PromQL inside a query variable (label_values(sel, l) -> sel), if any."""
    if var.get("type") != "query":
        return None
    q = var.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    q = q or var.get("definition") or ""
    m = _LABEL_VALUES_RE.match(q)
    if m:
        return m.group("sel")
    m = _QUERY_RESULT_RE.match(q)
    if m:
        return m.group("expr")
    return None


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARD_DIR.glob("*.json"))


def grafana_alert_files() -> list[Path]:
    return sorted(list(GRAFANA_ALERTING_DIR.glob("*.yml")) + list(GRAFANA_ALERTING_DIR.glob("*.yaml")))


def iter_queries(values: dict[str, str] | None = None) -> Iterator[dict]:
    """Every PromQL expression shipped, as dicts with keys
    source (file), where (panel/target or rule), kind, raw (as written) and
    expr (with the Grafana variables substituted)."""
    values = dict(DEFAULT_VARS, **(values or {}))

    for path in dashboard_files():
        board = json.loads(path.read_text(encoding="utf-8"))
        for var in board.get("templating", {}).get("list", []):
            e = variable_expr(var)
            if e is not None:
                yield {"source": rel(path), "where": f"variable {var.get('name')}", "kind": "dashboard-variable",
                       "raw": e, "expr": substitute(e, values)}
        for panel, repeat in iter_panels_repeated(board.get("panels", [])):
            vals, note = values, ""
            if repeat and values.get(repeat) == DEFAULT_VARS.get(repeat) and repeat in REPEAT_VARS:
                vals = dict(values, **{repeat: REPEAT_VARS[repeat]})
                note = f" (repeated per {repeat}: {repeat}={REPEAT_VARS[repeat]})"
            for t in panel.get("targets") or []:
                if "expr" not in t:
                    continue
                yield {"source": rel(path),
                       "where": f"panel {panel.get('id')} {panel.get('title')!r} target {t.get('refId')}{note}",
                       "kind": "dashboard-instant" if t.get("instant") and not t.get("range") else "dashboard",
                       "raw": t["expr"], "expr": substitute(t["expr"], vals)}

    for path in RULE_FILES:
        doc = load_yaml(path)
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                name = rule.get("record") or rule.get("alert")
                kind = "record" if "record" in rule else "alert"
                yield {"source": rel(path), "where": f"group {group.get('name')} {kind} {name}", "kind": kind,
                       "raw": rule["expr"], "expr": rule["expr"].strip()}

    for path in grafana_alert_files():
        doc = load_yaml(path)
        for group in doc.get("groups", []) or []:
            for rule in group.get("rules", []) or []:
                for q in rule.get("data", []) or []:
                    if q.get("datasourceUid") == "__expr__":
                        continue
                    e = (q.get("model") or {}).get("expr")
                    if e is None:
                        continue
                    yield {"source": rel(path), "where": f"rule {rule.get('uid')} query {q.get('refId')}",
                           "kind": "grafana-alert", "raw": e, "expr": substitute(e, values).strip()}
