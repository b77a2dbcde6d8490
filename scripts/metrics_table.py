#!/usr/bin/env python3
"""Checks README.md's "Metrics" table against what predmon really exports.

  metrics_table.py --metrics-file scrape.txt     # a saved /metrics body
  metrics_table.py --url http://127.0.0.1:19835/metrics
  metrics_table.py --print --metrics-file scrape.txt   # print the rows the scrape implies

Every family in the scrape must have a row with the same type and label names, and
every row must be in the scrape. A row whose meaning says "(only with ...)" or
"(only after ...)" describes a family that exists only in some setups (a Kafka source,
a [state] table): it is checked like the others when the scrape has it; when it does
not, it is reported as skipped, and its name must still occur as a string in src/ (so
a rename cannot go unnoticed). Names and inline label sets in the contract's Section 6
(../shared/spec/CONTRACT.md beside the checkout, when present) must agree with the table.

Ends with "metrics-table: N passed, M failed[, K skipped]"; exits 1 on a failure.
Standard library only.
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
CONTRACT = REPO.parent / "shared" / "spec" / "CONTRACT.md"

SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
CONDITIONAL = re.compile(r"\(only (with|after|when)\b[^)]*\)", re.I)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+")


def parse_exposition(text: str) -> dict[str, dict]:
    """family name -> {"type": ..., "labels": set of label names, "variants": label sets}."""
    families: dict[str, dict] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            types[name] = kind.strip()
            families.setdefault(name, {"type": kind.strip(), "variants": set()})
            continue
        if not line.strip() or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError(f"unparsable exposition line: {line!r}")
        name, labels = m.group(1), frozenset(k for k, _ in _LABEL.findall(m.group(3) or ""))
        family = name
        if name not in types:
            for fam, kind in types.items():
                if any(name == fam + s for s in SUFFIXES.get(kind, ())):
                    family = fam
                    break
        if name.endswith("_bucket") and family != name:
            labels = labels - {"le"}
        fam = families.setdefault(family, {"type": types.get(family, "untyped"), "variants": set()})
        fam["variants"].add(labels)
    for fam in families.values():
        fam["labels"] = set().union(*fam["variants"]) if fam["variants"] else set()
    return families


def readme_table(path: Path = README) -> list[dict]:
    """The rows of the table in README's "## Metrics" section."""
    text = path.read_text(encoding="utf-8")
    m = re.search(r"^## Metrics\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    if not m:
        raise ValueError(f"{path}: no '## Metrics' section")
    rows = []
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)`", cells[0])
        labels = set(re.findall(r"`(\w+)`", cells[2]))
        for name in names:
            rows.append({"name": name, "type": cells[1].lower(), "labels": labels, "meaning": cells[3],
                         "conditional": bool(CONDITIONAL.search(cells[3]))})
    if not rows:
        raise ValueError(f"{path}: the Metrics section has no table rows")
    return rows


def contract_metrics(path: Path = CONTRACT) -> dict[str, set | None]:
    """Metric names in the contract's Section 6, with their inline label sets if given."""
    text = path.read_text(encoding="utf-8")
    m = re.search(r"^## 6\..*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    out: dict[str, set | None] = {}
    for name, _, labels in re.findall(r"(predmon_\w+)(\{([^}]*)\})?", m.group(1) if m else ""):
        out[name] = {x.strip() for x in labels.split(",") if x.strip()} if labels else out.get(name)
    return out


def in_source(name: str) -> bool:
    return any(f'"{name}"' in p.read_text(encoding="utf-8", errors="replace")
               for p in (REPO / "src").rglob("*.rs"))


def fmt(labels) -> str:
    return ", ".join(sorted(labels)) or "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--metrics-file", type=Path)
    src.add_argument("--url")
    ap.add_argument("--readme", type=Path, default=README)
    ap.add_argument("--print", action="store_true", help="print the table rows the scrape implies and exit")
    args = ap.parse_args()

    if args.url:
        with urllib.request.urlopen(args.url, timeout=10) as r:
            text = r.read().decode("utf-8")
    else:
        text = args.metrics_file.read_text(encoding="utf-8")
    scraped = parse_exposition(text)

    if args.print:
        for name, fam in sorted(scraped.items()):
            labels = ", ".join(f"`{x}`" for x in sorted(fam["labels"])) or "-"
            print(f"| `{name}` | {fam['type']} | {labels} | |")
        return 0

    passed = failed = skipped = 0

    def result(ok: bool | None, what: str, detail: str = "") -> None:
        nonlocal passed, failed, skipped
        if ok is None:
            skipped += 1
            print(f"SKIP  {what}")
        elif ok:
            passed += 1
            print(f"PASS  {what}")
        else:
            failed += 1
            print(f"FAIL  {what}")
            if detail:
                print(f"      {detail}")

    rows = readme_table(args.readme)
    by_name: dict[str, dict] = {}
    for row in rows:
        if row["name"] in by_name:
            result(False, f"README: {row['name']} has one row", "listed twice")
        by_name[row["name"]] = row

    for name, row in by_name.items():
        fam = scraped.get(name)
        if fam is None:
            if row["conditional"]:
                ok = in_source(name)
                result(None if ok else False,
                       f"{name}: not in this scrape, as its row allows: "
                       f"{CONDITIONAL.search(row['meaning']).group(0)}"
                       + ("; the name is in src/" if ok else ""),
                       "" if ok else "and no string literal in src/ has this name (renamed?)")
            else:
                result(False, f"{name}: in the README table and in the scrape", "not exported")
            continue
        problems = []
        if fam["type"] != row["type"]:
            problems.append(f"type: README {row['type']}, exported {fam['type']}")
        if fam["labels"] != row["labels"]:
            problems.append(f"labels: README {{{fmt(row['labels'])}}}, exported {{{fmt(fam['labels'])}}}")
        if len(fam["variants"]) > 1:
            problems.append("samples with different label sets: "
                            + "; ".join("{" + fmt(v) + "}" for v in fam["variants"]))
        result(not problems, f"{name}: {row['type']} {{{fmt(row['labels'])}}}", "; ".join(problems))

    for name, fam in sorted(scraped.items()):
        if name not in by_name:
            result(False, f"{name}: exported, and has a row in README's Metrics table",
                   f"add: | `{name}` | {fam['type']} | {fmt(fam['labels'])} | ... |")

    if CONTRACT.is_file():
        for name, labels in sorted(contract_metrics().items()):
            row = by_name.get(name)
            if row is None:
                result(False, f"contract Section 6: {name} has a README row")
            elif labels is None:
                result(True, f"contract Section 6: {name} has a README row")
            else:
                result(labels == row["labels"], f"contract Section 6: {name}{{{fmt(labels)}}} matches the README row",
                       f"README has {{{fmt(row['labels'])}}}")
    else:
        result(None, f"contract Section 6: {CONTRACT} not found, names not compared")

    summary = f"metrics-table: {passed} passed, {failed} failed"
    if skipped:
        summary += f", {skipped} skipped"
    print(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
