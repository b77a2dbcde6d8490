#!/usr/bin/env python3
"""Structural checks of predmon's deployment files.

  check_manifests.py dashboards  Grafana dashboards JSON: parses; uid/title/schemaVersion;
                                 unique panel ids and dashboard uids; every panel has a
                                 gridPos and targets, every target an expr and refId, a
                                 Prometheus datasource; every $variable is defined; every
                                 repeat is over a defined multi-value variable; a confusion
                                 matrix (predmon_confusion_total) is one model's: its panel
                                 or row repeats per model, or it groups by model.
  check_manifests.py grafana     dashboards/provisioning: data source, dashboard provider,
                                 alert rules (condition and expression refs, datasource uids,
                                 severity, annotations, dashboard/panel links).
  check_manifests.py rules       config/prometheus/predmon-rules.yml: each alert has `for`,
                                 labels.severity and summary + description annotations.
  check_manifests.py k8s FILE    docker/k8s/*.yaml: parse; apiVersion/kind/metadata.name;
                                 Deployment, Service, PodMonitor and ConfigMap agree (labels,
                                 named ports, volumes, config path, predmon.toml port); the
                                 shared log volume has a sizeLimit and the stand-in model
                                 server rotates its log by rename to a name predmon's file
                                 globs do not match.
                                 With FILE, writes the README's annotation scrape config
                                 there, for `promtool check config`.

Prints one line per check; exits 1 if any failed.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
import tomllib
from pathlib import Path, PurePosixPath

import deploylib
from deploylib import REPO, iter_panels, load_yaml, load_yaml_all, loads_yaml_all, rel, template_vars

failures = 0
passes = 0

GRAFANA_BUILTIN_VARS = {"__range", "__range_s", "__range_ms", "__rate_interval", "__interval", "__interval_ms",
                        "__from", "__to", "__dashboard", "__org", "__user", "__name", "__timeFilter"}
DATASOURCE_UIDS_OK = {"${datasource}", "$datasource", "prometheus"}


def check(ok: bool, what: str) -> bool:
    global failures, passes
    if ok:
        passes += 1
        print(f"  ok    {what}")
    else:
        failures += 1
        print(f"  FAIL  {what}")
    return ok


# --- dashboards ---------------------------------------------------------------------
def check_dashboards() -> None:
    uids = {}
    files = deploylib.dashboard_files()
    check(len(files) >= 2, f"dashboards/: {len(files)} dashboard files")
    for path in files:
        name = rel(path)
        try:
            board = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            check(False, f"{name}: parses as JSON ({e})")
            continue
        check(True, f"{name}: parses as JSON")
        uid = board.get("uid")
        check(bool(uid) and len(uid) <= 40 and uid not in uids, f"{name}: uid {uid!r} is set, unique, at most 40 chars")
        uids[uid] = name
        check(bool(board.get("title")), f"{name}: title {board.get('title')!r}")
        check(isinstance(board.get("schemaVersion"), int) and board["schemaVersion"] >= 36,
              f"{name}: schemaVersion {board.get('schemaVersion')} >= 36")
        check(board.get("id") is None, f"{name}: id is null (so provisioning assigns one)")

        variables = {v.get("name"): v for v in board.get("templating", {}).get("list", [])}
        dsv = variables.get("datasource")
        check(bool(dsv) and dsv.get("type") == "datasource" and dsv.get("query") == "prometheus",
              f"{name}: has a `datasource` variable of type prometheus")
        defined = set(variables) | GRAFANA_BUILTIN_VARS

        panels = list(iter_panels(board.get("panels", [])))
        ids = [p.get("id") for p in panels]
        check(len(ids) == len(set(ids)) and None not in ids, f"{name}: {len(ids)} panels with unique ids")
        bad, n_targets, undefined = [], 0, set()
        for p in panels:
            where = f"panel {p.get('id')} {p.get('title')!r}"
            gp = p.get("gridPos") or {}
            if not all(k in gp for k in ("h", "w", "x", "y")) or gp["x"] + gp["w"] > 24:
                bad.append(f"{where}: gridPos {gp}")
            if p.get("type") == "row":
                continue
            if not p.get("title"):
                bad.append(f"{where}: no title")
            if p.get("type") == "text":
                continue
            targets = p.get("targets") or []
            if not targets:
                bad.append(f"{where}: no targets")
            refids = [t.get("refId") for t in targets]
            if len(set(refids)) != len(refids) or None in refids:
                bad.append(f"{where}: refIds {refids} not unique")
            for t in targets:
                n_targets += 1
                expr = t.get("expr")
                if not isinstance(expr, str) or not expr.strip():
                    bad.append(f"{where} target {t.get('refId')}: no expr")
                    continue
                for ds in (p.get("datasource"), t.get("datasource")):
                    if ds is not None and not (ds.get("type") == "prometheus" and ds.get("uid") in DATASOURCE_UIDS_OK):
                        bad.append(f"{where}: datasource {ds} is not the Prometheus one")
                undefined |= set(template_vars(expr)) - defined
        for v in variables.values():
            e = deploylib.variable_expr(v)
            if e:
                undefined |= set(template_vars(e)) - defined
        # repeats: over a defined variable that can hold several values
        repeated = list(deploylib.iter_panels_repeated(board.get("panels", [])))
        bad_repeat = []
        for p, _ in repeated:
            r = p.get("repeat")
            if r and not (r in variables and (variables[r].get("multi") or variables[r].get("includeAll"))):
                bad_repeat.append(f"panel {p.get('id')} repeats over ${r}, not a defined multi-value variable")
        check(not bad_repeat, f"{name}: every repeat is over a defined multi-value variable"
                              + "".join(f"\n        {b}" for b in bad_repeat))
        # a confusion matrix adds up the cells of every model it selects: one model per panel
        merged = []
        for p, rep in repeated:
            for t in p.get("targets") or []:
                e = t.get("expr") or ""
                if "predmon_confusion_total" in e and rep != "model" and not re.search(r"\bby\s*\([^)]*\bmodel\b", e):
                    merged.append(f"panel {p.get('id')} {p.get('title')!r} target {t.get('refId')}")
        check(not merged, f"{name}: every confusion-matrix query is one model's (repeated per $model or grouped by model)"
                          + "".join(f"\n        {m} adds the matrices of all selected models" for m in merged))
        for b in bad:
            check(False, f"{name}: {b}")
        check(not bad, f"{name}: every panel has a gridPos, every target ({n_targets}) an expr, a refId and the Prometheus datasource")
        check(not undefined, f"{name}: every variable used is defined ({', '.join(sorted(undefined)) or 'none missing'})")


# --- grafana provisioning -------------------------------------------------------------
def check_grafana() -> None:
    base = REPO / "dashboards/provisioning"
    ds_file = base / "datasources/prometheus.yml"
    ds_doc = load_yaml(ds_file)
    check(ds_doc.get("apiVersion") == 1, f"{rel(ds_file)}: apiVersion 1")
    ds_uids = {d.get("uid") for d in ds_doc.get("datasources", [])}
    prom = [d for d in ds_doc.get("datasources", []) if d.get("type") == "prometheus"]
    check(any(d.get("uid") == "prometheus" for d in prom), f"{rel(ds_file)}: a prometheus data source with uid `prometheus`")

    prov_file = base / "dashboards/predmon.yml"
    prov = load_yaml(prov_file)
    check(prov.get("apiVersion") == 1, f"{rel(prov_file)}: apiVersion 1")
    for p in prov.get("providers", []):
        check(p.get("type") == "file" and (p.get("options") or {}).get("path") == "/var/lib/grafana/dashboards",
              f"{rel(prov_file)}: provider {p.get('name')} is a file provider on /var/lib/grafana/dashboards")

    boards = {}
    for path in deploylib.dashboard_files():
        b = json.loads(path.read_text())
        boards[b.get("uid")] = {p.get("id") for p in iter_panels(b.get("panels", []))}

    files = deploylib.grafana_alert_files()
    check(bool(files), f"dashboards/provisioning/alerting: {len(files)} alert rule files")
    for path in files:
        doc = load_yaml(path)
        name = rel(path)
        check(doc.get("apiVersion") == 1, f"{name}: apiVersion 1")
        for g in doc.get("groups", []):
            check(bool(g.get("name")) and bool(g.get("folder")) and bool(g.get("interval")),
                  f"{name}: group {g.get('name')} has name, folder, interval")
            for r in g.get("rules", []):
                rn = f"{name}: rule {r.get('uid')}"
                check(bool(r.get("uid")) and len(r["uid"]) <= 40 and bool(r.get("title")), f"{rn}: uid and title")
                data = r.get("data") or []
                refs = [d.get("refId") for d in data]
                check(bool(data) and len(set(refs)) == len(refs), f"{rn}: data queries {refs} with unique refIds")
                check(r.get("condition") in refs, f"{rn}: condition {r.get('condition')} is one of the queries")
                for d in data:
                    uid = d.get("datasourceUid")
                    model = d.get("model") or {}
                    check(uid == "__expr__" or uid in ds_uids, f"{rn} {d.get('refId')}: datasourceUid {uid} is provisioned")
                    check(model.get("refId") == d.get("refId"), f"{rn} {d.get('refId')}: model.refId matches")
                    if uid == "__expr__":
                        check(model.get("type") in ("reduce", "threshold", "math", "classic_conditions", "resample"),
                              f"{rn} {d.get('refId')}: expression type {model.get('type')}")
                        if "expression" in model and model.get("type") != "math":
                            check(model["expression"] in refs, f"{rn} {d.get('refId')}: reads {model['expression']}, a query of this rule")
                    else:
                        check(bool((model.get("expr") or "").strip()), f"{rn} {d.get('refId')}: has a PromQL expr")
                check(bool(r.get("for")), f"{rn}: for {r.get('for')}")
                check(bool((r.get("labels") or {}).get("severity")), f"{rn}: labels.severity")
                ann = r.get("annotations") or {}
                check(bool(ann.get("summary")) and bool(ann.get("description")), f"{rn}: summary and description")
                duid, pid = ann.get("__dashboardUid__"), ann.get("__panelId__")
                if duid or pid:
                    check(duid in boards and pid is not None and int(pid) in boards[duid],
                          f"{rn}: links dashboard {duid} panel {pid}, which exist")


# --- rules metadata --------------------------------------------------------------------
def check_rules() -> None:
    for path in deploylib.RULE_FILES:
        doc = load_yaml(path)
        names = []
        for g in doc.get("groups", []):
            for r in g.get("rules", []):
                if "alert" not in r:
                    continue
                names.append(r["alert"])
                ann = r.get("annotations") or {}
                ok = (bool(r.get("for")) and (r.get("labels") or {}).get("severity") in ("critical", "warning", "info")
                      and bool(ann.get("summary")) and bool(ann.get("description")))
                check(ok, f"{rel(path)}: {r['alert']} has for, severity, summary, description")
        required = {"PredmonRecallCollapse", "PredmonPredictionCollapse", "PredmonNearChance", "PredmonIngestionStalled",
                    "PredmonRejectionRateSpike", "PredmonPendingJoinsGrowing", "PredmonDown"}
        check(required <= set(names), f"{rel(path)}: defines {', '.join(sorted(required))}")
        check(len(names) == len(set(names)), f"{rel(path)}: alert names are unique")
        # every alert must be tested, firing and not firing
        test = path.with_name(path.stem + ".test.yml")
        tdoc = load_yaml(test)
        firing, quiet = set(), set()
        for t in tdoc.get("tests", []):
            for a in t.get("alert_rule_test", []) or []:
                (firing if a.get("exp_alerts") else quiet).add(a.get("alertname"))
        check(set(names) <= firing, f"{rel(test)}: every alert is tested firing (missing: {sorted(set(names) - firing) or 'none'})")
        check(set(names) <= quiet, f"{rel(test)}: every alert is tested not firing (missing: {sorted(set(names) - quiet) or 'none'})")
        records = {r["record"] for g in doc.get("groups", []) for r in g.get("rules", []) if "record" in r}
        tested = " ".join(str(e.get("expr")) for t in tdoc.get("tests", []) for e in t.get("promql_expr_test", []) or [])
        untested = sorted(r for r in records if r not in tested)
        check(not untested, f"{rel(test)}: every recording rule's value is tested (missing: {untested or 'none'})")


# --- kubernetes ----------------------------------------------------------------------------
def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_log_rotation(cfg: dict, containers: dict, volumes: dict, mounts: dict) -> None:
    """The file source's volume is capped (an emptyDir over its sizeLimit gets the pod
    evicted), so whatever writes there must rotate: `mv LIVE ROTATED` in its command,
    LIVE read by predmon's globs and ROTATED not (a rotated name that matches is read
    again as a new file once replaced)."""
    globs = [str(g) for src in cfg.get("sources", []) if src.get("type") == "file" for g in src.get("paths", [])]
    for g in globs:
        m = mounts.get(str(PurePosixPath(g).parent))
        v = volumes.get(m["name"]) if m else None
        if v is not None and "emptyDir" in v:
            check(bool((v["emptyDir"] or {}).get("sizeLimit")), f"volume {v['name']}: the emptyDir holding {g} has a sizeLimit")
    reads = lambda path: any(fnmatch.fnmatchcase(path, g) for g in globs)  # noqa: E731
    for name, c in containers.items():
        if name == "predmon" or not any(m.get("mountPath") in {str(PurePosixPath(g).parent) for g in globs}
                                        for m in c.get("volumeMounts", [])):
            continue
        script = " ".join(str(a) for a in c.get("command", []) + c.get("args", []))
        moves = [(a.strip("'\""), b.strip("'\"")) for a, b in re.findall(r"\bmv\s+(?:-\w+\s+)*(\S+)\s+(\S+)", script)]
        ok = [(a, b) for a, b in moves if reads(a) and not reads(b)]
        check(bool(ok), f"container {name}: rotates the log predmon reads by rename to a name its globs {globs} do not match "
                        f"({', '.join(f'{a} -> {b}' for a, b in ok) or 'no such mv in its command: ' + repr(moves)})")


def check_k8s(scrape_out: str | None) -> None:
    kdir = REPO / "docker/k8s"
    docs = []
    for path in sorted(list(kdir.glob("*.yaml")) + list(kdir.glob("*.yml"))):
        try:
            items = [d for d in load_yaml_all(path) if d is not None]
        except Exception as e:  # noqa: BLE001 - any parse error is the finding
            check(False, f"{rel(path)}: parses as YAML ({e})")
            continue
        check(bool(items), f"{rel(path)}: parses as YAML ({len(items)} documents)")
        for d in items:
            ok = isinstance(d, dict) and d.get("apiVersion") and d.get("kind") and (
                d.get("kind") == "Kustomization" or (d.get("metadata") or {}).get("name"))
            check(bool(ok), f"{rel(path)}: {d.get('kind')} {(d.get('metadata') or {}).get('name', '')} has apiVersion, kind, metadata.name")
            docs.append((path, d))
    by_kind: dict[str, list] = {}
    for path, d in docs:
        by_kind.setdefault(d["kind"], []).append(d)

    kust = (by_kind.get("Kustomization") or [None])[0]
    if kust:
        for r in kust.get("resources", []):
            check((kdir / r).is_file(), f"kustomization.yaml: resource {r} exists")

    configmaps = {c["metadata"]["name"]: c for c in by_kind.get("ConfigMap", [])}
    deps = by_kind.get("Deployment", [])
    check(len(deps) == 1, f"docker/k8s: one Deployment ({len(deps)})")
    if not deps:
        return
    dep = deps[0]
    tmpl = dep["spec"]["template"]
    pod_labels = tmpl["metadata"].get("labels", {})
    pod = tmpl["spec"]
    check(labels_match(dep["spec"]["selector"].get("matchLabels", {}), pod_labels),
          "Deployment: selector matches the pod template labels")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    containers = {c["name"]: c for c in pod.get("containers", [])}
    check("predmon" in containers and len(containers) >= 2, f"Deployment: a predmon sidecar beside {sorted(set(containers) - {'predmon'})}")
    named_ports = {}
    for c in containers.values():
        check(bool(c.get("image")), f"container {c['name']}: has an image")
        for p in c.get("ports", []):
            if p.get("name"):
                named_ports[p["name"]] = p["containerPort"]
        for m in c.get("volumeMounts", []):
            check(m["name"] in volumes, f"container {c['name']}: volumeMount {m['name']} is a pod volume")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
            if isinstance(port, str):
                check(port in {p.get("name") for p in c.get("ports", [])}, f"container {c['name']}: {probe} port {port} is a port of it")
    for v in volumes.values():
        if "configMap" in v:
            check(v["configMap"]["name"] in configmaps, f"volume {v['name']}: ConfigMap {v['configMap']['name']} is defined here")

    pm = containers.get("predmon")
    if pm:
        args = [str(a) for a in pm.get("args", []) + pm.get("command", [])]
        cfg_path = args[args.index("--config") + 1] if "--config" in args else None
        check(args[:1] == ["run"] and cfg_path is not None, f"predmon: runs `predmon run --config {cfg_path}`")
        cfg_text = None
        for m in pm.get("volumeMounts", []):
            v = volumes.get(m["name"], {})
            if cfg_path and "configMap" in v and PurePosixPath(cfg_path).parent == PurePosixPath(m["mountPath"]):
                cfg_text = (configmaps.get(v["configMap"]["name"], {}).get("data") or {}).get(PurePosixPath(cfg_path).name)
        check(cfg_text is not None, f"predmon: {cfg_path} comes from a key of a mounted ConfigMap")
        if cfg_text is not None:
            try:
                cfg = tomllib.loads(cfg_text)
                check(True, "ConfigMap predmon.toml: parses as TOML")
            except tomllib.TOMLDecodeError as e:
                check(False, f"ConfigMap predmon.toml: parses as TOML ({e})")
                cfg = {}
            port = int(str((cfg.get("server") or {}).get("listen_address", "0.0.0.0:19835")).rsplit(":", 1)[1])
            check(named_ports.get("metrics") == port, f"predmon: container port `metrics` {named_ports.get('metrics')} is listen_address's {port}")
            ann = tmpl["metadata"].get("annotations", {})
            if "prometheus.io/port" in ann:
                check(str(ann["prometheus.io/port"]) == str(port), f"pod annotation prometheus.io/port {ann['prometheus.io/port']} is {port}")
                check(ann.get("prometheus.io/path", "/metrics") == "/metrics", "pod annotation prometheus.io/path is /metrics")
            mounts = {m["mountPath"]: m for m in pm.get("volumeMounts", [])}
            for src in cfg.get("sources", []):
                if src.get("type") != "file":
                    continue
                for pth in src.get("paths", []):
                    d = str(PurePosixPath(pth).parent)
                    m = mounts.get(d)
                    shared = m and any(any(x["name"] == m["name"] for x in c.get("volumeMounts", []))
                                       for n, c in containers.items() if n != "predmon")
                    check(bool(shared), f"predmon: file source {pth} is on a volume shared with the model server")
            check_log_rotation(cfg, containers, volumes, mounts)
            sp = (cfg.get("state") or {}).get("path")
            if sp:
                m = mounts.get(str(PurePosixPath(sp).parent))
                check(bool(m) and not m.get("readOnly"), f"predmon: state directory of {sp} is a writable volume")
        sc = pm.get("securityContext") or {}
        check(sc.get("runAsUser") == 10001 and sc.get("runAsNonRoot", pod.get("securityContext", {}).get("runAsNonRoot")),
              "predmon: runs as non-root uid 10001")

    for svc in by_kind.get("Service", []):
        check(labels_match(svc["spec"].get("selector", {}), pod_labels), f"Service {svc['metadata']['name']}: selector matches the pods")
        for p in svc["spec"].get("ports", []):
            tp = p.get("targetPort")
            check(not isinstance(tp, str) or tp in named_ports, f"Service {svc['metadata']['name']}: targetPort {tp} is a named container port")
    pms = by_kind.get("PodMonitor", [])
    check(bool(pms), "docker/k8s: has a PodMonitor")
    for p in pms:
        check(p["apiVersion"] == "monitoring.coreos.com/v1", f"PodMonitor {p['metadata']['name']}: apiVersion monitoring.coreos.com/v1")
        check(labels_match(p["spec"]["selector"].get("matchLabels", {}), pod_labels), f"PodMonitor {p['metadata']['name']}: selector matches the pods")
        for ep in p["spec"].get("podMetricsEndpoints", []):
            check(ep.get("port") in named_ports, f"PodMonitor {p['metadata']['name']}: port {ep.get('port')} is a named container port")
            sets_job = any(r.get("targetLabel") == "job" and r.get("replacement") == "predmon" for r in ep.get("relabelings", []))
            check(sets_job, f"PodMonitor {p['metadata']['name']}: sets job=\"predmon\" for the rules")

    readme = kdir / "README.md"
    if scrape_out and readme.is_file():
        blocks = re.findall(r"```yaml\n(.*?)```", readme.read_text(), re.S)
        snippet = next((b for b in blocks if "scrape_configs" in b), None)
        check(snippet is not None, f"{rel(readme)}: has the annotation-based scrape config")
        if snippet:
            # Debian's promtool is built without Kubernetes service discovery:
            # swap it for a static target so the relabelling still gets checked.
            doc = loads_yaml_all(snippet)[0]
            for sc in doc.get("scrape_configs", []):
                if sc.pop("kubernetes_sd_configs", None) is not None:
                    sc["static_configs"] = [{"targets": ["localhost:19835"]}]
                check(sc.get("job_name") == "predmon", f"{rel(readme)}: scrape job is named predmon")
            Path(scrape_out).write_text(json.dumps(doc, indent=2))


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("dashboards", "grafana", "rules", "k8s"):
        print(__doc__, file=sys.stderr)
        return 2
    what = sys.argv[1]
    if what == "dashboards":
        check_dashboards()
    elif what == "grafana":
        check_grafana()
    elif what == "rules":
        check_rules()
    else:
        check_k8s(sys.argv[2] if len(sys.argv) > 2 else None)
    print(f"{what}: {passes} ok, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
