"""HTTP/1.1 pipelining at a pod (issue 20's small objects): a client that goes straight to
the pods can write many requests on each connection before reading, which a proxy in front
cannot (it works on a client connection's requests one at a time). A pod answers them in
order; the small PUTs pipelined behind another, whole in its input, join that PUT's commit
group (one flush of the small-object log for all, peak_store_pipelined_joined_total), and
the replies of pipelined GETs go out together (peak_store_pipelined_held_total).
And a small PUT's commit looks for neither a tombstone nor an object file of its name
while the pod has none (it called unlinkat and faccessat at every PUT, most often on
nothing). Topology in conftest.py."""
import json
import os
import signal
import subprocess
import time

from conftest import PORT, Pod

POD_A = "2001:db8:8::1"  # slice 0: s1's half

# Finds N keys s1 owns (HEAD answers 404, not 421) on one kept connection, then runs a
# pipeline: sends every request in one write, then reads the replies in order.
CLIENT = r"""
import json, socket, sys
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
prefix, mode = sys.argv[4], sys.argv[5]

def read_reply(s, buf, head_req=False):
    while b"\r\n\r\n" not in buf:
        k = s.recv(65536)
        if not k:
            return None, buf
        buf += k
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    h = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    blen = 0 if head_req else int(h.get("content-length", "0"))
    while len(rest) < blen:
        k = s.recv(65536)
        if not k:
            return None, buf
        rest += k
    return (int(lines[0].split()[1]), h, rest[:blen].decode("latin-1")), rest[blen:]

s = socket.create_connection((addr, port), timeout=20)
keys, buf, i = sys.argv[6].split(",") if len(sys.argv) > 6 else [], b"", 0
while len(keys) < n:
    key = f"{prefix}-{i}"
    i += 1
    s.sendall(f"HEAD /o/{key} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    r, buf = read_reply(s, buf, head_req=True)
    if r[0] == 404:
        keys.append(key)
    if i > 400:
        sys.exit("no keys of s1")
other = None
while other is None:  # a key s1 does not own
    key = f"{prefix}-o{i}"
    i += 1
    s.sendall(f"HEAD /o/{key} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    r, buf = read_reply(s, buf, head_req=True)
    if r[0] == 421:
        other = key
reqs = []
def put(k, body):
    reqs.append(f"PUT /o/{k} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n{body}")
def req(m, k):
    reqs.append(f"{m} /o/{k} HTTP/1.1\r\nHost: x\r\n\r\n")
if mode == "puts":
    for k in keys:
        put(k, "b-" + k * 4)
elif mode == "gets":
    for k in keys:
        req("GET", k)
else:  # mixed
    a, b, c = keys[0], keys[1], keys[2]
    put(a, "one"); put(b, "two"); put(c, "x"); put(c, "y"); req("GET", a); put(a, "three")
    req("GET", a); req("DELETE", b); req("GET", b); req("GET", c); put(other, "elsewhere")
print(json.dumps({"sent": len(reqs)}), flush=True)
input()  # the test reads the metrics before
s.sendall("".join(reqs).encode())
if mode == "gets":
    s.shutdown(socket.SHUT_WR)  # the replies must come whole all the same
out = []
while True:
    r, buf = read_reply(s, buf)
    if r is None:
        break
    out.append(r)
    if len(out) == len(reqs):
        break
rest = b""
try:
    rest = s.recv(65536)
except OSError:
    pass
print(json.dumps({"keys": keys, "replies": out, "closed": rest == b""}))
"""


def pipeline(net, mode, n, prefix, keys=()):
    """Runs CLIENT (on keys, else n keys of s1 it finds); returns (its result, s1's
    metrics before the pipeline, after)."""
    p = subprocess.Popen(["ip", "netns", "exec", net.cl, "/usr/bin/python3", "-c", CLIENT,
                          POD_A, str(PORT), str(n), prefix, mode, *([",".join(keys)] if keys
                                                                 else [])],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line, p.stderr.read()
        assert json.loads(line)["sent"] > 0
        m0 = net.pods["s1"].metrics()
        p.stdin.write("\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    return json.loads(out), m0, net.pods["s1"].metrics()


def delta(m0, m1, name):
    return m1.get(name, 0) - m0.get(name, 0)


def test_pipelined_small_puts_share_one_flush_and_gets_one_send(net):
    n = 16
    r, m0, m1 = pipeline(net, "puts", n, "pput")
    assert [x[0] for x in r["replies"]] == [201] * n, r
    assert all(x[1]["x-peak-pod"] == "s1" for x in r["replies"]), r
    syncs = delta(m0, m1, "peak_store_log_syncs_total")
    joined = delta(m0, m1, "peak_store_pipelined_joined_total")
    print(f"{n} pipelined PUTs: {syncs:.0f} log flush(es), {joined:.0f} joined a group")
    # one write of about 2 KB arrives in one read: one group (16 flushes without joining)
    assert delta(m0, m1, "peak_store_commits_total") == n
    assert 1 <= syncs <= 2 and joined >= n - 2, (syncs, joined)
    g, m0, m1 = pipeline(net, "gets", n, "pput", r["keys"])
    assert [x[0] for x in g["replies"]] == [200] * n, g
    assert [x[2] for x in g["replies"]] == ["b-" + k * 4 for k in r["keys"]], g
    held = delta(m0, m1, "peak_store_pipelined_held_total")
    print(f"{n} pipelined GETs: {held:.0f} replies held for the ones behind")
    assert held >= n // 2, held


def test_pipelined_mixed_requests_are_answered_in_order(net):
    r, m0, m1 = pipeline(net, "mixed", 3, "pmix")
    st = [x[0] for x in r["replies"]]
    # a key put twice in a row: created, then replaced (the second waits for its turn)
    assert st == [201, 201, 201, 204, 200, 204, 200, 204, 404, 200, 421], r
    assert [r["replies"][i][2] for i in (4, 6, 9)] == ["one", "three", "y"], r
    # at most "two" and "x" join "one"'s group: not the key again, nor past the GET
    assert delta(m0, m1, "peak_store_pipelined_joined_total") <= 2
    # the 421 to a PUT closes the connection: its body was not read
    assert r["replies"][10][1].get("connection") == "close" and r["closed"], r


RAW = r"""
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
out = []
for m, body in (("DELETE", None), ("PUT", b"again"), ("GET", None)):
    c.request(m, "/o/" + sys.argv[3], body=body)
    r = c.getresponse()
    out.append((r.status, r.read().decode()))
print(out)
"""


def test_puts_look_for_no_tombstone_or_file_until_there_are_some(net, tmp_path):
    """s1 again, on a fresh data directory (no tombstone, no object file), its small PUTs'
    system calls traced: no unlinkat or faccessat (one of each per PUT before); after a
    DELETE the key's PUT removes its tombstone."""
    old = net.pods["s1"]
    old.stop()
    pod = Pod(old.ns, "s1", old.config, tmp_path / "data", tmp_path / "s1.log",
              old.max_body, old.extra)
    trace, errs = tmp_path / "trace", tmp_path / "strace.err"
    st = None
    try:
        pod.start()
        with open(errs, "w") as ef:
            st = subprocess.Popen(["strace", "-f", "-qq", "-e",
                                   "trace=unlinkat,faccessat,faccessat2", "-o", str(trace),
                                   "-p", str(pod.proc.pid)], stderr=ef)
        # strace -p -f attaches every thread of the pod (the commit thread's calls count)
        tasks = f"/proc/{pod.proc.pid}/task"
        deadline = time.time() + 30
        while any("TracerPid:\t0\n" in open(f"{tasks}/{t}/status").read()
                  for t in os.listdir(tasks)):
            assert time.time() < deadline, errs.read_text()
            time.sleep(0.05)
        r, m0, m1 = pipeline(net, "puts", 8, "tput")
        assert [x[0] for x in r["replies"]] == [201] * 8, r
        st.send_signal(signal.SIGINT)
        st.wait(timeout=30)
        calls = [x for x in trace.read_text().splitlines() if "at(" in x or "at2(" in x]
        print(f"8 PUTs on a fresh pod: {len(calls)} unlinkat or faccessat call(s)")
        assert calls == [], calls
        key = r["keys"][0]
        out = net.py(RAW, POD_A, str(PORT), key)
        assert out.strip() == "[(204, ''), (201, 'Created\\n'), (200, 'again')]", out
        assert os.listdir(tmp_path / "data" / "tomb") == []  # the PUT removed it
    finally:
        if st and st.poll() is None:
            st.kill()
            st.wait()
        pod.stop()
        old.start()
