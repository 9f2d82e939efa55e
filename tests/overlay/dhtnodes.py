"""Independent OpenDHT nodes for the overlay's beds: Debian's `dhtnode`, one process each in a
namespace, driven through its command line on stdin (`x` quits it)."""
import subprocess

from ovbed import nsx, wait_for


def start(ns, port, network, bootstrap=None, wait=True):
    """Starts a dhtnode on UDP port in namespace ns (bootstrapping through "ADDR:PORT" if
    given); wait: until its port is bound. Returns its Popen ('ip netns exec' execs, so the
    pid is dhtnode's)."""
    args = ["ip", "netns", "exec", ns, "dhtnode", "-n", str(network), "-p", str(port)]
    if bootstrap:
        args += ["-b", bootstrap]
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, text=True)
    if wait:
        wait_bound(ns, [port])
    return p


def wait_bound(ns, ports, timeout=60.0):
    """Waits until every UDP port in ports is bound in namespace ns."""
    want = [f":{p} " for p in ports]
    wait_for(f"dhtnode on {list(ports)} bound",
             lambda: all(w in nsx(ns, "ss", "-uln").stdout for w in want), timeout=timeout)


def stop(p):
    """Asks a dhtnode to quit; kills it if it does not within 5 s."""
    try:
        p.communicate("x\n", timeout=5)
    except (subprocess.TimeoutExpired, BrokenPipeError, ValueError):
        p.kill()
        p.wait()
