#!/usr/bin/python3
"""Writes the man pages of `peak` from the binary's own --help text, so they cannot drift
from the options: run at install time ('make install', 'make man').

usage: gen-man.py PEAK_BINARY OUTDIR

Writes OUTDIR/peak.1 (the command list) and OUTDIR/peak-CMD.1 for each command that
'peak --help' lists (and peak-CMD-SUB.1 for a command whose help says "Run 'peak CMD COMMAND
--help'"). The help text maps to the page this way: the 'usage:' lines are the SYNOPSIS;
a line indented by two that starts with an option, or with a word and then its text two
spaces further (a command list), opens a tagged paragraph, and the lines indented deeper
continue it; other indented lines are kept as they are (examples); the rest is running
text, a blank line between paragraphs.
"""
import os
import re
import subprocess
import sys

WORD_RE = r"[a-z][a-z0-9-]*"


def help_text(peak, *args):
    p = subprocess.run([peak, *args, "--help"], capture_output=True, text=True, timeout=10)
    return p.stdout + p.stderr


def esc(s):
    """Text made safe for roff: backslashes, hyphens of options kept as ASCII minus, any
    character outside ASCII as its glyph name."""
    s = s.replace("\\", "\\e").replace("-", "\\-")
    # groff reads bytes: other characters (the help says e.g. '§') as named glyphs
    s = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in s)
    if s.startswith((".", "'")):
        s = "\\&" + s
    return s


def listed(text):
    """[(name, what)] of the lines under a 'Commands:' heading."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("Commands:"):
            inside = True
            continue
        m = re.match(rf"^  ({WORD_RE})\s+(.*)$", line)
        if inside and m:
            out.append((m.group(1), m.group(2).strip()))
        elif inside and line and not line.startswith(" "):
            inside = False
    return out


def body(text):
    """The roff of a help text after its usage lines."""
    out, tagged, pre = [], None, False
    for line in text.splitlines():
        if not line.strip():
            if pre:
                out.append(".fi")
                pre = False
            out.append(".PP")
            tagged = None
            continue
        m = re.match(r"^  (\S.*?)(?:\s{2,}(\S.*))?$", line)
        indent = len(line) - len(line.lstrip(" "))
        if m and (line.lstrip().startswith("-") or (indent == 2 and m.group(2) and
                                                      re.match(rf"{WORD_RE}\b", m.group(1)))):
            if pre:
                out.append(".fi")
                pre = False
            out += [".TP", esc(m.group(1))]
            if m.group(2):
                out.append(esc(m.group(2)))
            tagged = indent
            continue
        if tagged is not None and indent > tagged:
            out.append(esc(line.strip()))
            continue
        was_tagged, tagged = tagged is not None, None
        if indent:
            if not pre:
                out += [".PP", ".nf"]
                pre = True
            out.append(esc(line))
            continue
        if pre or was_tagged:  # running text after a list or an example: a new paragraph
            if pre:
                out.append(".fi")
            out.append(".PP")
            pre = False
        out.append(esc(line))
    if pre:
        out.append(".fi")
    # no empty paragraphs
    lines = []
    for s in out:
        if s == ".PP" and (not lines or lines[-1] in (".PP", ".TP")):
            continue
        lines.append(s)
    while lines and lines[-1] == ".PP":
        lines.pop()
    return lines


def page(name, what, version, text, see_also):
    usage, rest, in_usage = [], [], True
    for line in text.splitlines():
        if in_usage and (line.startswith("usage: ") or (usage and line.startswith(" "))):
            # continuation lines align under 'usage: '; the page drops that prefix
            usage.append(line[7:] if line.startswith("usage: ") or line.startswith(" " * 7)
                         else line)
            continue
        in_usage = False
        rest.append(line)
    out = [
        f'.TH {name.upper()} 1 "" "peak {version}" "PEAK manual"',
        ".nh",
        ".ad l",
        ".SH NAME",
        f"{esc(name)} \\- {esc(what)}",
        ".SH SYNOPSIS",
        ".nf",
        *(esc(u) for u in usage),
        ".fi",
        ".SH DESCRIPTION",
        *body("\n".join(rest).strip("\n")),
    ]
    if see_also:
        out += [".SH SEE ALSO", ",\n".join(f".BR {s} (1)" for s in see_also)]
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: gen-man.py PEAK_BINARY OUTDIR\n")
        return 2
    peak, outdir = sys.argv[1], sys.argv[2]
    version = subprocess.run([peak, "--version"], capture_output=True, text=True,
                             check=True).stdout.split()[-1]
    top = help_text(peak)
    cmds = listed(top)
    if not cmds:
        sys.stderr.write("gen-man: no commands in 'peak --help'\n")
        return 1
    os.makedirs(outdir, exist_ok=True)
    pages = {"peak": page("peak", "reach IPv6 services with no ingress proxy on the path",
                          version, top, [f"peak-{c}" for c, _ in cmds])}
    for cmd, what in cmds:
        text = help_text(peak, cmd)
        subs = listed(text) if f"Run 'peak {cmd} COMMAND --help'" in text else []
        pages[f"peak-{cmd}"] = page(f"peak-{cmd}", what, version, text,
                                    ["peak"] + [f"peak-{cmd}-{s}" for s, _ in subs])
        for s, swhat in subs:
            pages[f"peak-{cmd}-{s}"] = page(f"peak-{cmd}-{s}", swhat, version,
                                            help_text(peak, cmd, s), ["peak", f"peak-{cmd}"])
    for name, text in pages.items():
        with open(os.path.join(outdir, name + ".1"), "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
