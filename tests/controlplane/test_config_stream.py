"""The configuration read as libyaml events (issue 18, control-plane scale): each top-level
entry and each service is built and checked on its own, so loading 10,000 services x 100
endpoints no longer holds the whole document's tree (1.2 GB). What the tree-based reading
said must stay: the first error in document order as FILE:LINE: reason, a YAML syntax error
anywhere in the document winning over an earlier error of the schema, an empty file, a top
level that is not a mapping, aliases inside a service. New: an alias to an anchor of another
entry is refused with a line that says so. Checked through `peak controller --check`."""
import os
import subprocess

from ctlpeer import PEAK

HEAD = """zone:
  name: svc.example.
  ns:
    - {name: ns1.svc.example., address: "2001:db8:53::1"}
services:
"""


def svc(k, neps=2, extra=""):
    eps = "".join(f'      - {{id: e{i}, address: "fd00:{k:x}::{i + 1:x}"}}\n'
                  for i in range(neps))
    return (f"  - name: s{k}.svc.example.\n    prefixes: [2001:db8:{k:x}::/64]\n"
            f"    slice: 72\n{extra}    endpoints:\n{eps}")


def check(tmp_path, text):
    p = os.path.join(tmp_path, "peak.yaml")
    with open(p, "w") as f:
        f.write(text)
    r = subprocess.run([PEAK, "controller", "--check", "--config", p], capture_output=True,
                       text=True, timeout=60)
    return r.returncode, r.stderr.replace(p, "F")


def test_many_services(tmp_path):
    rc, err = check(tmp_path, HEAD + "".join(svc(k) for k in range(1, 1500)))
    assert rc == 0, err


def test_first_error_in_document_order(tmp_path):
    body = svc(1) + svc(2).replace("slice: 72", "slice: 300") + svc(3).replace(
        "e1", "e0")
    rc, err = check(tmp_path, HEAD + body)
    assert rc == 2 and "F:14:" in err and "slice" in err, err


def test_syntax_error_wins(tmp_path):
    # a schema error on line 2, a YAML error at the end of the file
    text = HEAD.replace("name: svc.example.", "name: svc.example.\n  bogus: 1") + svc(1)
    text += "  - name: [oops\n"
    rc, err = check(tmp_path, text)
    assert rc == 2 and ": YAML: " in err, err
    assert "bogus" not in err, err


def test_schema_errors(tmp_path):
    rc, err = check(tmp_path, "")
    assert rc == 2 and "F:1: the file is empty" in err, err
    rc, err = check(tmp_path, "- a\n- b\n")
    assert rc == 2 and "F:1: the top level must be a mapping" in err, err
    rc, err = check(tmp_path, HEAD.replace("services:\n", "services: 3\n"))
    assert rc == 2 and "F:5: 'services' must be a list" in err, err
    rc, err = check(tmp_path, HEAD + svc(1) + "extra: 1\n")
    assert rc == 2 and "unknown key 'extra'" in err, err
    rc, err = check(tmp_path, HEAD + svc(1) + "services: []\n")
    assert rc == 2 and "key 'services' given twice" in err, err
    rc, err = check(tmp_path, "services:\n" + svc(1))
    assert rc == 2 and "missing required key 'zone'" in err, err
    rc, err = check(tmp_path, HEAD + svc(1) + svc(2).replace("2001:db8:2::", "2001:db8:1::"))
    assert rc == 2 and "services overlap" in err and "line 6" in err, err
    rc, err = check(tmp_path, HEAD + svc(1) + svc(1).replace("2001:db8:1::", "2001:db8:9::"))
    assert rc == 2 and "repeated (first on line 6)" in err, err


def test_aliases(tmp_path):
    inside = svc(1).replace('{id: e0, address: "fd00:1::1"}',
                            '{id: e0, address: "fd00:1::1", weight: &w 3}').replace(
        '{id: e1, address: "fd00:1::2"}', '{id: e1, address: "fd00:1::2", weight: *w}')
    assert "*w" in inside
    rc, err = check(tmp_path, HEAD + inside)
    assert rc == 0, err
    across = HEAD.replace("name: svc.example.", "name: &z svc.example.") + svc(1).replace(
        "name: s1.svc.example.", "name: *z")
    rc, err = check(tmp_path, across)
    assert rc == 2 and "YAML: found undefined alias (an alias must be in" in err, err
    rc, err = check(tmp_path, HEAD + svc(1).replace("slice: 72", "slice: *nowhere"))
    assert rc == 2 and err.strip().endswith("YAML: found undefined alias"), err
