#!/usr/bin/python3
"""make demo: PEAK on a small cluster in network namespaces (see testbed.py): 2 nodes with
2 pods each, one service, peak dns, the controller, agents, BIRD, and 200 emulated clients
(each its own /64) that resolve and connect through the client library.
  1. which pod each share of clients reached;
  2. a pod is killed: how long its clients failed, and that they kept their addresses;
  3. a pod is added: how many slices moved and how many open connections broke.
Everything is torn down at the end, also on Ctrl-C. Needs root."""
import concurrent.futures as cf
import ctypes
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402

PEAK = os.environ.get("PEAK_BIN", os.path.join(os.path.dirname(__file__), "../../build/peak"))
CLIENTS = 200


LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
CLONE_NEWNET = 0x40000000


def setns(fd):
    if LIBC.setns(fd, CLONE_NEWNET):
        raise OSError(ctypes.get_errno(), "setns")


def in_ns(name):
    """Moves the calling thread into a network namespace (sockets it opens live there)."""
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    setns(fd)
    os.close(fd)


def source(k):
    return f"2001:db8:c0:{k + 1:x}::1"


def resolve(tb, k):
    r = testbed.sh("ip", "netns", "exec", f"{tb.tag}-c", PEAK, "resolve", testbed.SERVICE,
                   "--server", f"[{testbed.DNS_ADDR}]:53", "--source", source(k), check=False)
    return r.stdout.split()[0] if r.returncode == 0 else None


def connect(tb, k):
    """The whole client path: the library resolves, computes, connects; HTTP over it."""
    req = "GET / HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n"
    p = subprocess.run(["ip", "netns", "exec", f"{tb.tag}-c", PEAK, "connect", testbed.SERVICE,
                        str(testbed.PORT), "--server", f"[{testbed.DNS_ADDR}]:53", "--source",
                        source(k)], input=req, capture_output=True, text=True, timeout=30)
    m = re.search(r"X-Peak-Endpoint: (\S+)", p.stdout)
    d = re.search(r"X-Peak-Destination: (\S+)", p.stdout)
    if m and d:
        return m.group(1), d.group(1)
    why = p.stderr.strip().splitlines()[-1:] or [f"exit {p.returncode}, no answer"]
    return None, why[0]


def get(src, dst, timeout=0.2):
    """One request on a fresh connection from src to dst; the endpoint that answered."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.IPPROTO_IPV6, 75, 1)  # IPV6_FREEBIND: AnyIP sources
        s.settimeout(timeout)
        s.bind((src, 0))
        s.connect((dst, testbed.PORT))
        s.sendall(b"GET / HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            b = s.recv(4096)
            if not b:
                break
            data += b
    m = re.search(rb"X-Peak-Endpoint: (\S+)", data)
    return m.group(1).decode() if m else None


def table(rows, head):
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head] + rows:
        print("  " + "  ".join(str(x).ljust(n) for x, n in zip(row, w)))


def main():
    if os.geteuid() != 0:
        sys.exit("make demo needs root (network namespaces)")
    t_start = time.time()
    work = tempfile.mkdtemp(prefix="peak-demo-")
    tb = testbed.Testbed(f"pkd{os.getpid() % 10000}", work, PEAK, nodes=2, pods=2, spare=(2, 3))
    try:
        print(f"PEAK demo: 2 nodes x 2 pods (+1 pod to add later), {CLIENTS} clients; "
              f"logs in {work}")
        tb.up()
        # the spare pod is found down and loses its slices, then BGP carries the move
        if not tb.wait_log("controller.log", f"{tb.pod_id(*tb.spare)} down", 10):
            sys.exit("the controller did not see the spare pod down (see controller.log)")
        time.sleep(0.5)
        if not tb.wait_converged():
            sys.exit("the router did not learn the service's slices (see bird-*.log)")
        print(f"cluster up, router learned {len(tb.router_routes())} slice routes by BGP "
              f"({time.time() - t_start:.1f} s)")
        # the control links: each agent and the controller proved the shared key to each other
        proven = [i for i in range(1, tb.nodes + 1)
                  if tb.wait_log(f"agent-n{i}.log", "the controller proved the key", 10)]
        if len(proven) != tb.nodes:
            sys.exit("an agent's control link is not authenticated both ways "
                     "(see agent-n*.log, controller.log)")
        print(f"control links: {len(proven)} agents and the controller authenticated each "
              f"other with the shared key (ctl.key, mode 0600)\n")

        # 1. every client resolves and connects through the library
        with cf.ThreadPoolExecutor(16) as ex:
            res = list(ex.map(lambda k: connect(tb, k), range(CLIENTS)))
        ok = [(k, ep, dst) for k, (ep, dst) in enumerate(res) if ep]
        addr = {k: dst for k, _, dst in ok}
        print(f"1. {len(ok)} of {CLIENTS} clients reached a pod, each at its own computed "
              f"address ({len(set(addr.values()))} distinct), no proxy on the path:")
        whys = {}
        for ep, why in res:
            if not ep:
                whys[why] = whys.get(why, 0) + 1
        for why, n in sorted(whys.items(), key=lambda x: -x[1]):
            print(f"  {n} failed: {why}")
        counts = {}
        for _, ep, _ in ok:
            counts[ep] = counts.get(ep, 0) + 1
        table([[ep, n, f"{100 * n / len(ok):.1f}%"] for ep, n in sorted(counts.items())],
              ["pod", "clients", "share"])

        # 2. kill a pod; its clients retry every 10 ms at the same address
        victim = max(counts, key=counts.get)
        i, j = int(victim[1]), int(victim[3])
        affected = [k for k, ep, _ in ok if ep == victim]
        t0 = time.time()
        tb.kill_pod(i, j)

        def recover(k):
            in_ns(f"{tb.tag}-c")
            while time.time() - t0 < 10:
                try:
                    ep = get(source(k), addr[k])
                    if ep and ep != victim:
                        return time.time() - t0, ep
                except OSError:
                    pass
                time.sleep(0.01)
            return None, None

        with cf.ThreadPoolExecutor(32) as ex:
            rec = list(ex.map(recover, affected))
        outage = [s for s, _ in rec if s is not None]
        same = sum(1 for k in affected if resolve(tb, k) == addr[k])
        print(f"\n2. killed pod {victim}: its {len(affected)} clients were served again "
              f"after {statistics.median(outage):.2f} s (median), {max(outage):.2f} s (max);"
              f" {len(outage)} of {len(affected)} recovered; {same} of {len(affected)} kept "
              f"their address")

        # 3. add a pod; open connections first
        conns = {}
        in_ns_main = os.open("/proc/self/ns/net", os.O_RDONLY)
        in_ns(f"{tb.tag}-c")
        for k, ep, _ in ok:
            if ep == victim:
                continue
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_IPV6, 75, 1)
            s.settimeout(5)  # (ms here; a loaded machine must not drop clients from step 3)
            try:
                s.bind((source(k), 0))
                s.connect((addr[k], testbed.PORT))
                conns[k] = s
            except OSError:
                s.close()
        setns(in_ns_main)
        os.close(in_ns_main)
        before = len(tb.router_routes())
        ctl_log = os.path.join(work, "controller.log")
        tb.serve(*tb.spare)
        new = tb.pod_id(*tb.spare)
        deadline = time.time() + 10
        moved = None
        while time.time() < deadline and moved is None:
            m = re.search(rf"{new} up: (\d+) slices moved", open(ctl_log).read())
            moved = int(m.group(1)) if m else None
            time.sleep(0.05)
        time.sleep(0.5)  # the agents and BGP carry the move
        tb.wait_converged(5)
        live = len(tb.serving)
        broken = 0
        for k, s in conns.items():
            try:
                s.sendall(b"GET / HTTP/1.1\r\nHost: api\r\n\r\n")
                if b"200 OK" not in s.recv(4096):
                    broken += 1
            except OSError:
                broken += 1
            s.close()
        print(f"\n3. added pod {new}: {moved} of 16384 slices moved "
              f"({100 * (moved or 0) / 16384:.1f}%: its share among {live} live pods, the least "
              f"any scheme must move is 1/{live} = {100 / live:.1f}%); {broken} of {len(conns)} "
              f"open connections broke (those on moved slices); router routes {before} -> "
              f"{len(tb.router_routes())}")
        print(f"\ndone in {time.time() - t_start:.1f} s")
    except KeyboardInterrupt:
        print("\ninterrupted")
    finally:
        tb.down()


if __name__ == "__main__":
    main()
