"""Every '$ peak ...' example in the README runs and prints what the README shows."""
import os
import re
import shlex
import subprocess

import pytest

PEAK = os.environ.get("PEAK_BIN", "build/peak")
SRC = os.environ.get("PEAK_SRC", ".")


def examples():
    text = open(os.path.join(SRC, "README.md")).read()
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ peak "):
                i += 1
                continue
            cmd = lines[i][2:]
            while cmd.endswith("\\"):
                i += 1
                cmd = cmd[:-1] + " " + lines[i].strip()
            i += 1
            want = []
            while i < len(lines) and not lines[i].startswith("$ "):
                want.append(lines[i])
                i += 1
            out.append((cmd, "\n".join(want).strip()))
    return out


def test_readme_has_examples():
    assert len(examples()) >= 6


@pytest.mark.parametrize("cmd,want", examples())
def test_readme_example(cmd, want):
    argv = shlex.split(cmd)
    argv[0] = PEAK
    p = subprocess.run(argv, capture_output=True, text=True, cwd=SRC, timeout=60)
    assert p.stdout.strip() == want, (cmd, p.stdout, p.stderr)
