#!/usr/bin/env python3
"""Cross-check docker/docker-compose.yml against the files it uses.

- every host path the compose file mounts or builds from exists in the repo,
  every named volume is declared, every depends_on names a service;
- every "service:port" reference (Prometheus targets, Kafka brokers, the
  generator's output, Grafana's data source, health checks) names a compose
  service and a port that service listens on, and every published port is one
  the service listens on;
- the files mounted into containers line up with the paths the containers read
  (predmon's --config, Prometheus' rule_files, Grafana's provisioning and
  dashboards, the predmon state directory);
- docker/Dockerfile exposes and health-checks predmon's port, runs as uid
  10001, installs the health check's tool, and COPYs only existing paths.

With --prometheus-config OUT it also writes docker/prometheus.yml with the
container paths of rule_files mapped to host paths, for `promtool check config`.

Prints one line per check; exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import tomllib
from pathlib import Path, PurePosixPath

import deploylib
from deploylib import REPO, load_yaml, rel

DOCKER = REPO / "docker"
COMPOSE = DOCKER / "docker-compose.yml"

failures = 0
passes = 0


def check(ok: bool, what: str) -> bool:
    global failures, passes
    if ok:
        passes += 1
        print(f"  ok    {what}")
    else:
        failures += 1
        print(f"  FAIL  {what}")
    return ok


def parse_volume(v) -> tuple[str, str, bool]:
    """(source, target, read_only) of a short- or long-syntax volume."""
    if isinstance(v, dict):
        return str(v.get("source", "")), str(v["target"]), bool(v.get("read_only"))
    parts = str(v).split(":")
    if len(parts) == 1:
        return "", parts[0], False
    mode = parts[2] if len(parts) > 2 else ""
    return parts[0], parts[1], "ro" in mode.split(",")


def is_host_path(src: str) -> bool:
    return src.startswith((".", "/", "~"))


def host_path(src: str) -> Path:
    return (DOCKER / src).resolve()


def container_to_host(service: dict, container_path: str) -> Path | None:
    """Map a path inside a container to the host path of the bind mount holding it."""
    best = None
    cp = PurePosixPath(container_path)
    for v in service.get("volumes", []) or []:
        src, dst, _ = parse_volume(v)
        if not is_host_path(src):
            continue
        try:
            sub = cp.relative_to(PurePosixPath(dst))
        except ValueError:
            continue
        if best is None or len(dst) > len(best[0]):
            best = (dst, host_path(src) / sub)
    return best[1] if best else None


def mount_targets(service: dict) -> list[tuple[str, str, bool]]:
    return [parse_volume(v) for v in service.get("volumes", []) or []]


def command_list(service: dict) -> list[str]:
    c = service.get("command") or []
    return shlex.split(c) if isinstance(c, str) else [str(x) for x in c]


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prometheus-config", help="write docker/prometheus.yml with host rule paths here")
    args = ap.parse_args()

    compose = load_yaml(COMPOSE)
    services: dict[str, dict] = compose["services"]
    declared_volumes = set((compose.get("volumes") or {}).keys())
    print(f"{rel(COMPOSE)}: services {', '.join(services)}")

    # --- paths -----------------------------------------------------------------
    for name, svc in services.items():
        b = svc.get("build")
        if b:
            ctx = (DOCKER / (b["context"] if isinstance(b, dict) else b)).resolve()
            check(ctx.is_dir() and (ctx == REPO or REPO in ctx.parents), f"{name}: build context {rel(ctx)} is a repo directory")
            if isinstance(b, dict) and b.get("dockerfile"):
                df = ctx / b["dockerfile"]
                check(df.is_file(), f"{name}: dockerfile {rel(df)} exists")
        for src, dst, _ in mount_targets(svc):
            if is_host_path(src):
                hp = host_path(src)
                check(hp.exists() and (hp == REPO or REPO in hp.parents),
                      f"{name}: mount {src} -> {dst}: {rel(hp)} exists in the repo")
            elif src:
                check(src in declared_volumes, f"{name}: named volume {src} is declared")
        for dep in (svc.get("depends_on") or []):
            check(dep in services, f"{name}: depends_on {dep} is a service")
        for ef in ([svc["env_file"]] if isinstance(svc.get("env_file"), str) else svc.get("env_file") or []):
            p = DOCKER / (ef if isinstance(ef, str) else ef["path"])
            check(p.is_file(), f"{name}: env_file {rel(p)} exists")

    # --- what each service listens on -------------------------------------------
    predmon = services["predmon"]
    pm_cmd = command_list(predmon)
    cfg_in_container = pm_cmd[pm_cmd.index("--config") + 1] if "--config" in pm_cmd else "/etc/predmon/predmon.toml"
    cfg_host = container_to_host(predmon, cfg_in_container)
    check(cfg_host is not None and cfg_host.is_file(),
          f"predmon: --config {cfg_in_container} is mounted from the repo ({rel(cfg_host) if cfg_host else 'not mounted'})")
    cfg = tomllib.loads(cfg_host.read_text()) if cfg_host and cfg_host.is_file() else {}
    listen = (cfg.get("server") or {}).get("listen_address", "0.0.0.0:19835")
    predmon_port = port_of(listen)
    check(predmon_port == 19835, f"predmon.toml: listen_address {listen} uses the default port 19835")

    kafka_env = services["kafka"].get("environment") or {}
    kafka_ports = {port_of(l) for l in str(kafka_env.get("KAFKA_LISTENERS", "")).split(",") if ":" in l}
    adv = str(kafka_env.get("KAFKA_ADVERTISED_LISTENERS", ""))
    adv_hostports = [re.sub(r"^\w+://", "", a) for a in adv.split(",") if a]
    listening = {
        "predmon": {predmon_port},
        "kafka": kafka_ports,
        "prometheus": {9090},
        "grafana": {int((services["grafana"].get("environment") or {}).get("GF_SERVER_HTTP_PORT", 3000))},
    }
    prom_cmd = " ".join(command_list(services["prometheus"]))
    m = re.search(r"--web\.listen-address=\S*:(\d+)", prom_cmd)
    if m:
        listening["prometheus"] = {int(m.group(1))}

    for name, svc in services.items():
        for p in svc.get("ports", []) or []:
            container_port = int(str(p.get("target") if isinstance(p, dict) else p).split(":")[-1].split("/")[0])
            check(container_port in listening.get(name, set()),
                  f"{name}: published port {p} is one the service listens on {sorted(listening.get(name, []))}")

    def ref(where: str, hostport: str):
        host, _, port = hostport.rpartition(":")
        ok = host in services and int(port) in listening.get(host, set())
        check(ok, f"{where}: {hostport} is a service port ({host}: {sorted(listening.get(host, [])) or 'no such service'})")

    # predmon's Kafka source and the generator
    kafka_sources = [s for s in cfg.get("sources", []) if s.get("type") == "kafka"]
    check(bool(kafka_sources), "predmon.toml: has a kafka source")
    for s in kafka_sources:
        for b in str(s.get("brokers", "")).split(","):
            ref("predmon.toml brokers", b.strip())
        check(all(b.strip() in adv_hostports for b in str(s.get("brokers", "")).split(",")),
              f"predmon.toml: brokers {s.get('brokers')} are advertised by Kafka ({adv})")
    topics_in_cfg = {t for s in kafka_sources for t in s.get("topics", [])}
    init_cmd = command_list(services["kafka-init"])
    created = init_cmd[init_cmd.index("--topic") + 1] if "--topic" in init_cmd else None
    check(created in topics_in_cfg, f"kafka-init creates topic {created}, which predmon consumes {sorted(topics_in_cfg)}")
    if "--bootstrap-server" in init_cmd:
        ref("kafka-init --bootstrap-server", init_cmd[init_cmd.index("--bootstrap-server") + 1])
    gen_cmd = command_list(services["generator"])
    out = gen_cmd[gen_cmd.index("--output") + 1] if "--output" in gen_cmd else ""
    m = re.fullmatch(r"kafka://([^/]+)/(.+)", out)
    check(bool(m), f"generator: --output {out} is kafka://broker/topic")
    if m:
        ref("generator --output", m.group(1))
        check(m.group(2) == created, f"generator writes to {m.group(2)}, the topic kafka-init creates")
    check(gen_cmd[:1] == ["generate"], "generator: runs `predmon generate`")
    check((services["generator"].get("healthcheck") or {}).get("disable") is True,
          "generator: the image's /healthz check is disabled (it serves no HTTP)")
    hc = " ".join(map(str, (services["kafka"].get("healthcheck") or {}).get("test", [])))
    for hp in re.findall(r"--bootstrap-server\s+(\S+)", hc):
        ref("kafka healthcheck", hp)

    # state directory on a volume
    state_path = (cfg.get("state") or {}).get("path")
    if state_path:
        state_dir = str(PurePosixPath(state_path).parent)
        mounted = [(s, d, ro) for s, d, ro in mount_targets(predmon) if d == state_dir]
        check(bool(mounted) and not mounted[0][2], f"predmon: state directory {state_dir} is a writable volume")

    # --- Prometheus ---------------------------------------------------------------
    prom = services["prometheus"]
    m = re.search(r"--config\.file=(\S+)", prom_cmd)
    prom_cfg_c = m.group(1) if m else "/etc/prometheus/prometheus.yml"
    prom_cfg_h = container_to_host(prom, prom_cfg_c)
    check(prom_cfg_h is not None and prom_cfg_h.is_file(),
          f"prometheus: {prom_cfg_c} is mounted from the repo ({rel(prom_cfg_h) if prom_cfg_h else 'not mounted'})")
    if prom_cfg_h and prom_cfg_h.is_file():
        pc = load_yaml(prom_cfg_h)
        jobs = {j["job_name"]: j for j in pc.get("scrape_configs", [])}
        check("predmon" in jobs, f"{rel(prom_cfg_h)}: has the scrape job `predmon` the rules expect")
        for sc in (jobs.get("predmon") or {}).get("static_configs", []):
            for t in sc.get("targets", []):
                ref(f"{rel(prom_cfg_h)} job predmon target", t)
        host_rules = []
        for rf in pc.get("rule_files", []):
            hp = container_to_host(prom, rf)
            check(hp is not None and hp.is_file(), f"{rel(prom_cfg_h)}: rule file {rf} is mounted from {rel(hp) if hp else '?'}")
            host_rules.append(str(hp) if hp else rf)
        check(any(Path(r) == deploylib.RULE_FILES[0] for r in host_rules),
              f"{rel(prom_cfg_h)}: loads {rel(deploylib.RULE_FILES[0])}")
        if args.prometheus_config:
            pc["rule_files"] = host_rules
            import json
            Path(args.prometheus_config).write_text(json.dumps(pc, indent=2))  # JSON is YAML

    # --- Grafana ------------------------------------------------------------------
    graf = services["grafana"]
    prov = container_to_host(graf, "/etc/grafana/provisioning")
    check(prov is not None and prov == (REPO / "dashboards/provisioning"),
          "grafana: /etc/grafana/provisioning is dashboards/provisioning")
    ds_file = REPO / "dashboards/provisioning/datasources/prometheus.yml"
    for ds in load_yaml(ds_file).get("datasources", []):
        m = re.fullmatch(r"https?://([^/]+?)/?", ds.get("url", ""))
        check(bool(m), f"{rel(ds_file)}: {ds.get('name')} url {ds.get('url')} is http://service:port")
        if m:
            ref(f"{rel(ds_file)} {ds.get('name')}", m.group(1))
    prov_file = REPO / "dashboards/provisioning/dashboards/predmon.yml"
    for p in load_yaml(prov_file).get("providers", []):
        path = (p.get("options") or {}).get("path", "")
        hp = container_to_host(graf, path)
        jsons = sorted(x.name for x in hp.glob("*.json")) if hp and hp.is_dir() else []
        check(bool(jsons), f"{rel(prov_file)}: provider {p.get('name')} path {path} is mounted and holds {jsons}")
    home = (graf.get("environment") or {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        hp = container_to_host(graf, home)
        check(hp is not None and hp.is_file(), f"grafana: home dashboard {home} is mounted ({rel(hp) if hp else '?'})")

    # --- Dockerfile -----------------------------------------------------------------
    dockerfile = DOCKER / "Dockerfile"
    text = dockerfile.read_text()
    # join continuation lines
    lines = re.sub(r"\\\n", " ", text).splitlines()
    stages = []
    for line in lines:
        s = line.strip()
        if s.upper().startswith("FROM "):
            stages.append([])
        if stages is not None and stages:
            stages[-1].append(s)
    final = stages[-1] if stages else []
    expose = [int(p.split("/")[0]) for l in final if l.upper().startswith("EXPOSE ") for p in l.split()[1:]]
    check(expose == [predmon_port], f"{rel(dockerfile)}: EXPOSE {expose} is predmon's port {predmon_port}")
    hcl = [l for l in final if l.upper().startswith("HEALTHCHECK ")]
    check(len(hcl) == 1 and f":{predmon_port}/healthz" in hcl[0], f"{rel(dockerfile)}: HEALTHCHECK probes :{predmon_port}/healthz")
    if hcl:
        tool = re.search(r'CMD\s+\[\s*"([^"]+)"', hcl[0]) or re.search(r"CMD\s+(\S+)", hcl[0])
        tool_name = tool.group(1) if tool else ""
        installed = " ".join(l for l in final if "apt-get install" in l)
        check(tool_name in installed.split() or tool_name.startswith("/usr/local/bin/predmon"),
              f"{rel(dockerfile)}: the health check's tool `{tool_name}` is installed in the runtime image")
    check(any(re.fullmatch(r"USER\s+10001(:10001)?", l) for l in final), f"{rel(dockerfile)}: runs as uid 10001")
    check(any("useradd" in l and "--uid 10001" in l and "predmon" in l for l in final),
          f"{rel(dockerfile)}: creates user predmon with uid 10001")
    check(any("cargo build --release --locked" in l for l in lines), f"{rel(dockerfile)}: builds with cargo build --release --locked")
    ctx = REPO
    for l in lines:
        if l.strip().upper().startswith("COPY ") and "--from=" not in l:
            srcs = [a for a in l.split()[1:-1] if not a.startswith("--")]
            for s in srcs:
                check((ctx / s).exists(), f"{rel(dockerfile)}: COPY source {s} exists in the build context")
    ign = DOCKER / "Dockerfile.dockerignore"
    check(ign.is_file() and "target/" in ign.read_text().split(), f"{rel(ign)}: keeps target/ out of the build context")

    print(f"compose cross-checks: {passes} ok, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
