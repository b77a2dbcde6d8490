#!/usr/bin/env python3
"""Times `predmon run` ingesting a known number of events, for scripts/bench.sh.

Starts the daemon with a generated configuration (one file or Kafka source), scrapes
/metrics every --every seconds (the scrapes are part of the measured run, as in
production), and stops once predmon's own `predmon_events_total` equals --lines.
Prints one JSON object:

  seconds       from process start to the first scrape that saw every line
  first_seconds, first_events  the first scrape that saw any: (lines - first_events) /
                (seconds - first_seconds) is the rate without startup and connection
  hwm_kib       peak RSS (VmHWM) at that moment; rss_kib: VmRSS after --settle seconds
  scrape_ms     time of each /metrics request made while ingesting (client side)
  idle_scrape_ms  the same, after ingestion finished (render time without contention)
  exposition_bytes  size of the last exposition
  cpu_us        CPU time (user + system) per event between those two scrapes, by
                thread name (predmon-engine, kafka-src, rdk:broker..., predmon for the
                HTTP runtime) and in "total": which thread a rate is spent in

With --state DIR the daemon snapshots its state to DIR/state.json every
--state-interval; --hold S then keeps it running S seconds after ingestion, requesting
--probe (/metrics by default, which takes the engine lock) every 5 ms, and adds:

  probe_ms      time of each of those requests: the longest is the longest a reader
                waited behind a snapshot
  snapshots     what predmon logged of each snapshot written meanwhile (total_ms,
                held_ms, longest_hold_ms, holds, bytes), when it logs them
  hwm_kib_end   VmHWM at the end: the peak with the snapshots

Standard library only.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def thread_cpu_seconds(pid):
    """CPU seconds (user + system) of each of pid's threads, summed by thread name."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--predmon", required=True)
    ap.add_argument("--lines", type=int, required=True)
    ap.add_argument("--file")
    ap.add_argument("--brokers")
    ap.add_argument("--topic")
    ap.add_argument("--group", default="bench")
    ap.add_argument("--every", type=float, default=0.025)
    ap.add_argument("--settle", type=float, default=0.0)
    ap.add_argument("--idle-scrapes", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--extra-config", help="TOML appended to the generated configuration")
    ap.add_argument("--state", help="directory for [state] snapshots")
    ap.add_argument("--state-interval", default="2s")
    ap.add_argument("--hold", type=float, default=0.0)
    ap.add_argument("--probe", default="/metrics")
    a = ap.parse_args()

    port = free_port()
    if a.file:
        source = f'[[sources]]\ntype = "file"\nname = "src"\npaths = ["{a.file}"]\nstart_at = "beginning"\n'
    else:
        source = (
            f'[[sources]]\ntype = "kafka"\nname = "src"\nbrokers = "{a.brokers}"\n'
            f'topics = ["{a.topic}"]\ngroup_id = "{a.group}"\nmode = "assign"\n'
        )
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(source + f'[server]\nlisten_address = "127.0.0.1:{port}"\n')
    if a.state:
        cfg.write(f'[state]\npath = "{a.state}/state.json"\ninterval = "{a.state_interval}"\n')
    if a.extra_config:
        with open(a.extra_config) as extra:
            cfg.write(extra.read())
    cfg.close()
    url = f"http://127.0.0.1:{port}/metrics"
    pattern = re.compile(rb'^predmon_events_total\{source="src"\} (\S+)$', re.M)

    log = tempfile.TemporaryFile()
    started = time.perf_counter()
    env = dict(os.environ, PREDMON_LOG="info,predmon::app=debug")
    proc = subprocess.Popen([a.predmon, "run", "--config", cfg.name], stdout=log, stderr=log, env=env)
    out = {"scrape_ms": [], "idle_scrape_ms": []}
    seen = 0
    body = b""
    try:
        while True:
            now = time.perf_counter()
            if now - started > a.timeout or proc.poll() is not None:
                log.seek(0)
                sys.stderr.write(log.read().decode(errors="replace")[-2000:])
                raise SystemExit(
                    f"bench_daemon: {seen} of {a.lines} events after {now - started:.1f} s"
                    + (f"; predmon exited with {proc.returncode}" if proc.returncode is not None else "")
                )
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    body = r.read()
            except OSError:
                time.sleep(0.005)  # not listening yet
                continue
            took = time.perf_counter() - t
            m = pattern.search(body)
            seen = int(float(m.group(1))) if m else 0
            if seen > 0 and "first_seconds" not in out:
                out["first_seconds"] = time.perf_counter() - started
                out["first_events"] = seen
                first_cpu = thread_cpu_seconds(proc.pid)
            if seen >= a.lines:
                out["seconds"] = time.perf_counter() - started
                out["hwm_kib"] = proc_kib(proc.pid, "VmHWM")
                if seen > out["first_events"]:
                    n = seen - out["first_events"]
                    cpu = {
                        name: (t - first_cpu.get(name, 0.0)) * 1e6 / n
                        for name, t in thread_cpu_seconds(proc.pid).items()
                    }
                    out["cpu_us"] = {k: round(v, 3) for k, v in cpu.items() if v > 0}
                    out["cpu_us"]["total"] = round(sum(cpu.values()), 3)
                break
            out["scrape_ms"].append(took * 1e3)
            time.sleep(max(0.0, a.every - took))
        time.sleep(a.settle)
        if a.hold > 0:
            out["probe_ms"] = []
            probe = f"http://127.0.0.1:{port}{a.probe}"
            end = time.perf_counter() + a.hold
            while time.perf_counter() < end:
                t = time.perf_counter()
                with urllib.request.urlopen(probe, timeout=10) as r:
                    r.read()
                out["probe_ms"].append((time.perf_counter() - t) * 1e3)
                time.sleep(0.005)
        for _ in range(a.idle_scrapes):
            t = time.perf_counter()
            with urllib.request.urlopen(url, timeout=10) as r:
                body = r.read()
            out["idle_scrape_ms"].append((time.perf_counter() - t) * 1e3)
        out["rss_kib"] = proc_kib(proc.pid, "VmRSS")
        out["hwm_kib_end"] = proc_kib(proc.pid, "VmHWM")
        out["exposition_bytes"] = len(body)
        out["events"] = seen
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.unlink(cfg.name)
    log.seek(0)
    snapshots = []
    for line in log.read().decode(errors="replace").splitlines():
        if "state snapshot written" in line:
            snapshots.append({k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)\b", line)})
    if a.state:
        out["snapshots"] = snapshots
    print(json.dumps(out))


if __name__ == "__main__":
    main()
