"""A PEAK cluster in network namespaces, IPv6 only, documentation prefixes:

                        [R] router: BIRD (BGP AS 65000), peak controller
          2001:db8:ff:i::/64 /      |2001:db8:ff:d::/64     \\ 2001:db8:ff:c::/64
   [Ni] node i: agent, BIRD         [D] peak dns             [C] clients: AnyIP 2001:db8:c0::/48,
   (AS 6500i), slice routes             2001:db8:ff:d::2         a /64 per emulated client
   in table 100
      | 2001:db8:10i:j::/64
   [Pij] pod j of node i: peak serve, AnyIP for the service prefix
   [I] ingress host (optional, for the benchmarks' proxies): 2001:db8:ff:e::2, routes to the
       pods' networks 2001:db8:10i::/48 through the router

The router also routes each node's pod networks (2001:db8:10i::/48), so pods are reachable
by their own addresses (the benchmarks' direct and proxied paths).

The controller and the agents share a key (ctl.key in the work directory, mode 0600, fresh
random bytes for each run): each agent and the controller authenticate each other on every
control link (README, "The key").

Every namespace name starts with the run's tag; down() removes them all, and stops every
process it started, by PID."""
import os
import signal
import subprocess
import time

SERVICE = "api.svc.example."
PREFIX = "2001:db8:5::/64"
KEY = "000102030405060708090a0b0c0d0e0f"
PORT = 8080
DNS_ADDR = "2001:db8:ff:d::2"


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True)



def alive(pid):
    """True while process pid exists and is not a zombie (a zombie holds no namespace)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Testbed:
    def __init__(self, tag, workdir, peak, nodes=2, pods=2, spare=None, ingress=False,
                 filter_obj=None, fanout=1, ctl_args=(), agent_args=(), serve_args=()):
        """spare: (node, pod) of a pod that exists but does not serve at first; ingress: add
        the ingress host; filter_obj: the agents attach this XDP filter to their uplinks;
        fanout: the service's fanout (addresses per client); ctl_args, agent_args,
        serve_args: more options for the controller, for every agent and for every pod's
        peak serve."""
        self.ctl_args, self.agent_args = list(ctl_args), list(agent_args)
        self.serve_args = list(serve_args)
        self.tag, self.dir, self.peak = tag, workdir, os.path.abspath(peak)
        self.nodes, self.pods, self.spare = nodes, pods, spare
        self.ingress, self.fanout = ingress, fanout
        self.filter_obj = os.path.abspath(filter_obj) if filter_obj else None
        self.procs = []
        self.ns = []
        self.serving = {}

    # names
    def r(self):
        return f"{self.tag}-r"

    def node(self, i):
        return f"{self.tag}-n{i}"

    def pod(self, i, j):
        return f"{self.tag}-p{i}{j}"

    def ing(self):
        return f"{self.tag}-i"

    def pod_id(self, i, j):
        return f"n{i}p{j}"

    def pod_addr(self, i, j):
        return f"2001:db8:10{i}:{j}::a"

    def all_pods(self):
        extra = [self.spare] if self.spare else []
        return [(i, j) for i in range(1, self.nodes + 1) for j in range(1, self.pods + 1)] + extra

    def config(self):
        eps = "".join(
            f'      - {{id: {self.pod_id(i, j)}, address: "{self.pod_addr(i, j)}", '
            f'node: node{i}, netns: {self.pod(i, j)}}}\n' for i, j in self.all_pods())
        fdev = ", filter-dev: uplink" if self.filter_obj else ""
        nodes = ", ".join(f"{{name: node{i}{fdev}}}" for i in range(1, self.nodes + 1))
        return f"""zone:
  name: svc.example.
  ns: [{{name: ns1.svc.example., address: "{DNS_ADDR}"}}]
  ttl: {{aaaa: 5}}
nodes: [{nodes}]
services:
  - name: {SERVICE}
    prefixes: [{PREFIX}]
    slice: 78
    select: src
    host: src
    fanout: {self.fanout}
    key: {KEY}
    port: {PORT}
    endpoints:
{eps}"""

    def addns(self, name):
        sh("ip", "netns", "add", name)
        self.ns.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def link(self, ns1, dev1, addr1, ns2, dev2, addr2):
        sh("ip", "-n", ns1, "link", "add", dev1, "type", "veth", "peer", "name", dev2, "netns", ns2)
        for ns, dev, addr in ((ns1, dev1, addr1), (ns2, dev2, addr2)):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")

    def key_file(self):
        """Writes the control link's shared key: 32 random bytes as hex, created 0600 (the
        daemons refuse a key file others may read). Returns its path."""
        path = os.path.join(self.dir, "ctl.key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        return path

    def run(self, ns, *cmd, log=None):
        out = open(os.path.join(self.dir, log), "w") if log else subprocess.DEVNULL
        p = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def up(self):
        r = self.r()
        for name in [r, f"{self.tag}-d", f"{self.tag}-c"] + \
                [self.node(i) for i in range(1, self.nodes + 1)] + \
                [self.pod(i, j) for i, j in self.all_pods()] + ([self.ing()] if self.ingress else []):
            self.addns(name)
        self.link(r, "to-dns", "2001:db8:ff:d::1/64", f"{self.tag}-d", "eth0", DNS_ADDR + "/64")
        self.link(r, "to-clients", "2001:db8:ff:c::1/64", f"{self.tag}-c", "eth0", "2001:db8:ff:c::2/64")
        sh("ip", "-n", f"{self.tag}-d", "-6", "route", "add", "default", "via", "2001:db8:ff:d::1")
        sh("ip", "-n", f"{self.tag}-c", "-6", "route", "add", "default", "via", "2001:db8:ff:c::1")
        sh("ip", "-n", f"{self.tag}-c", "-6", "route", "add", "local", "2001:db8:c0::/48", "dev", "lo")
        sh("ip", "-n", r, "-6", "route", "add", "2001:db8:c0::/48", "via", "2001:db8:ff:c::2")
        sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        # many short connections from few hosts (load generators, proxies)
        for ns in [f"{self.tag}-c"] + ([self.ing()] if self.ingress else []):
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1",
               "net.ipv4.ip_local_port_range=1024 65000")
        if self.ingress:
            self.link(r, "to-ingress", "2001:db8:ff:e::1/64", self.ing(), "eth0",
                      "2001:db8:ff:e::2/64")
            sh("ip", "-n", self.ing(), "-6", "route", "add", "default", "via", "2001:db8:ff:e::1")
        for i in range(1, self.nodes + 1):
            n = self.node(i)
            self.link(r, f"to-node{i}", f"2001:db8:ff:{i}::1/64", n, "uplink", f"2001:db8:ff:{i}::2/64")
            sh("ip", "-n", n, "-6", "route", "add", "default", "via", f"2001:db8:ff:{i}::1")
            sh("ip", "-n", r, "-6", "route", "add", f"2001:db8:10{i}::/48", "via",
               f"2001:db8:ff:{i}::2")
            sh("ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
            sh("ip", "-n", n, "-6", "rule", "add", "lookup", "100", "pref", "100")
        for i, j in self.all_pods():
            self.link(self.node(i), f"to-pod{j}", f"2001:db8:10{i}:{j}::1/64", self.pod(i, j), "eth0",
                      self.pod_addr(i, j) + "/64")
            sh("ip", "-n", self.pod(i, j), "-6", "route", "add", "default", "via",
               f"2001:db8:10{i}:{j}::1")
        cfg = os.path.join(self.dir, "peak.yaml")
        with open(cfg, "w") as f:
            f.write(self.config())
        self.cfg = cfg
        # BIRD: the router learns every slice from the nodes
        rconf = os.path.join(self.dir, "bird-r.conf")
        with open(rconf, "w") as f:
            f.write("router id 10.255.0.254;\nprotocol device {}\n"
                    "protocol kernel { ipv6 { import none; export all; }; }\n")
            for i in range(1, self.nodes + 1):
                f.write(f"protocol bgp node{i} {{ local as 65000; neighbor 2001:db8:ff:{i}::2 "
                        f"as {65000 + i}; connect delay time 1; connect retry time 2; "
                        "hold time 9; keepalive time 3; "
                        "ipv6 { import all; export none; }; }\n")
        self.run(r, "bird", "-f", "-c", rconf, "-s", os.path.join(self.dir, "bird-r.ctl"),
                 "-P", os.path.join(self.dir, "bird-r.pid"), log="bird-r.log")
        self.dns_ctl = os.path.join(self.dir, "dns.ctl")
        self.run(f"{self.tag}-d", self.peak, "dns", "--config", cfg, "--listen",
                 f"[{DNS_ADDR}]:53", "--threads", "1", "--control", self.dns_ctl, log="dns.log")
        self.key = self.key_file()
        self.start_controller(log="controller.log")
        for i in range(1, self.nodes + 1):
            n = self.node(i)
            bconf = os.path.join(self.dir, f"bird-n{i}.conf")
            sh(self.peak, "agent", "--node", f"node{i}", "--table", "100", "--bird-config", bconf,
               "--bgp-neighbor", f"2001:db8:ff:{i}::1", "--local-as", str(65000 + i),
               "--peer-as", "65000", "--router-id", f"10.255.0.{i}")
            self.run(n, "bird", "-f", "-c", bconf, "-s", os.path.join(self.dir, f"bird-n{i}.ctl"),
                     "-P", os.path.join(self.dir, f"bird-n{i}.pid"), log=f"bird-n{i}.log")
            fobj = ["--filter-object", self.filter_obj] if self.filter_obj else []
            self.run(n, self.peak, "agent", "--config", cfg, "--node", f"node{i}", "--table",
                     "100", "--controller", f"[2001:db8:ff:{i}::1]:4000",
                     "--key-file", self.key, *fobj, *self.agent_args, log=f"agent-n{i}.log")
        for i, j in self.all_pods():
            if (i, j) != self.spare:
                self.serve(i, j)

    def start_controller(self, extra=(), log="controller.log"):
        self.ctl_proc = self.run(self.r(), self.peak, "controller", "--config", self.cfg,
                                 "--listen", "[::]:4000", "--dns-control", self.dns_ctl,
                                 "--key-file", self.key, *self.ctl_args, *extra, log=log)

    def stop_controller(self):
        os.killpg(self.ctl_proc.pid, signal.SIGTERM)
        self.ctl_proc.wait(timeout=10)

    def serve(self, i, j):
        self.serving[(i, j)] = self.run(self.pod(i, j), self.peak, "serve", "--port", str(PORT),
                                        "--id", self.pod_id(i, j), *self.serve_args,
                                        log=f"serve-{i}{j}.log")

    def kill_pod(self, i, j):
        p = self.serving.pop((i, j))
        p.kill()
        p.wait()

    def router_routes(self):
        import json
        out = sh("ip", "-j", "-n", self.r(), "-6", "route", "show", "proto", "bird").stdout
        return [(x["dst"], x.get("gateway")) for x in json.loads(out) if x["dst"] != "default"]

    def converged(self):
        """The router routes the whole service prefix, through the nodes."""
        import ipaddress
        total = sum(ipaddress.ip_network(d).num_addresses for d, _ in self.router_routes()
                    if ipaddress.ip_network(d).subnet_of(ipaddress.ip_network(PREFIX)))
        return total == ipaddress.ip_network(PREFIX).num_addresses

    def node_routes(self, i):
        """The slice routes node i's agent installed (table 100): their destinations."""
        import json
        out = sh("ip", "-j", "-n", self.node(i), "-6", "route", "show", "table", "100").stdout
        return {x["dst"] for x in json.loads(out) if x["dst"] != "default"}

    def carried(self):
        """The router routes exactly what the nodes' agents installed, each through its node:
        BGP carried the agents' last change. (converged() holds before a move reaches the
        router too: the old routes also cover the whole prefix.)"""
        want = {(d, f"2001:db8:ff:{i}::2") for i in range(1, self.nodes + 1)
                for d in self.node_routes(i)}
        return bool(want) and set(self.router_routes()) == want

    @staticmethod
    def until(cond, timeout):
        """Until cond() holds (polled every 100 ms); False on timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return True
            time.sleep(0.1)
        return False

    def wait_carried(self, timeout=20):
        return self.until(self.carried, timeout)

    def wait_converged(self, timeout=20):
        return self.until(self.converged, timeout)

    def log_size(self, log):
        """How much a daemon's log holds now (0 before it exists): a since for wait_log."""
        try:
            return os.path.getsize(os.path.join(self.dir, log))
        except OSError:
            return 0

    def wait_log(self, log, text, timeout, since=0):
        """Until a daemon's log (in the work directory) holds text, written past byte since
        (log_size before an action: a line an earlier change wrote does not count); False
        on timeout."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with open(os.path.join(self.dir, log), "rb") as f:
                    f.seek(since)
                    if text.encode() in f.read():
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def down(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        # a process the bed started that it does not know (one whose start an interrupt,
        # the demo's Ctrl-C, cut between its fork and its entry in self.procs) would outlive
        # the bed and keep a namespace in use (an interrupted demo left its DNS namespace):
        # whatever still runs in the bed's namespaces ends first (by its PID, found in the
        # namespace), then the namespaces go
        left = []
        for name in self.ns:
            left += subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                   text=True).stdout.split()
        for pid in left:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in left) and time.monotonic() < deadline:
            time.sleep(0.02)
        for name in reversed(self.ns):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.ns = []
