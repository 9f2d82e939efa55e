#!/usr/bin/python3
"""Sums test results over meson test logs (meson-logs/testlog.json of each build given) and
prints one line per suite and a last line 'N passed, N failed'. Counts cmocka cases (TAP
'ok'/'not ok' lines) and pytest cases (its closing line), not just executables; a test
whose executable failed without reporting a failed case counts one failure. Exits 1 if
anything failed or nothing ran."""
import json
import re
import sys
from collections import defaultdict


def count(entry):
    out = entry.get("stdout") or ""
    ok = entry.get("result") in ("OK", "EXPECTEDFAIL", "SKIP")
    tap_ok = len(re.findall(r"^ok \d+", out, re.M))
    tap_bad = len(re.findall(r"^not ok \d+", out, re.M))
    if tap_ok or tap_bad:
        passed, failed = tap_ok, tap_bad
    else:
        m = re.search(r"^=*\s*(.*\d+ (?:passed|failed|error).*?)\s*=*$", out, re.M)
        if m and re.search(r"\bin [\d.]+s\b", m.group(1)):
            line = m.group(1)
            passed = sum(int(x) for x in re.findall(r"(\d+) passed", line))
            failed = sum(int(x) for x in re.findall(r"(\d+) (?:failed|errors?)\b", line))
        else:
            passed, failed = (1, 0) if ok else (0, 1)
    if not ok and failed == 0:
        failed = 1
    return passed, failed


def main(paths):
    per = defaultdict(lambda: [0, 0])
    for path in paths:
        label = path.split("/meson-logs")[0]
        try:
            lines = open(path).read().splitlines()
        except OSError:
            per[f"{label}: no test log"][1] += 1
            continue
        for line in lines:
            e = json.loads(line)
            name = e["name"]
            suite = (name.split(":", 1)[1].split(" / ")[0].strip() if ":" in name
                     else name.split("-")[0])
            p, f = count(e)
            per[f"{label} {suite}"][0] += p
            per[f"{label} {suite}"][1] += f
    total_p = sum(v[0] for v in per.values())
    total_f = sum(v[1] for v in per.values())
    for k in sorted(per):
        print(f"  {k:32} {per[k][0]:5} passed, {per[k][1]} failed")
    print(f"{total_p} passed, {total_f} failed")
    return 1 if total_f or not total_p else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
