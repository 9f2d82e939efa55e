"""deploy/kubernetes checked against what the code calls and needs (python3-yaml):
the RBAC rules are exactly the API calls src/k8s makes (verbs and resources, no more),
granted to the service account of each command that runs with --source kubernetes (the
controller, the agent, peak dns: each opens that one client), and the namespaced Roles
exactly those of the controller's Kubernetes store (src/controller/store_kube.c) and of
peak dns following its ConfigMap (src/dns/follow.c); each service account holds nothing else;
every command's options exist in its --help; ports, the Services' targets, the agent's
host network, capabilities and bpffs mount, the config mount, the service account; the
Containerfile's run-time packages hold every library peak links. No cluster runs here:
these are static checks, not a deployment."""
import os
import re
import subprocess

import pytest

yaml = pytest.importorskip("yaml")

SRC = os.environ.get("PEAK_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")
PEAK = os.environ["PEAK_BIN"]
DEPLOY = os.path.join(SRC, "deploy", "kubernetes")


def docs():
    out = []
    for f in sorted(os.listdir(DEPLOY)):
        if f.endswith(".yaml"):
            with open(os.path.join(DEPLOY, f)) as fh:
                out += [d for d in yaml.safe_load_all(fh) if d]
    return out


def find(kind, name):
    m = [d for d in docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(m) == 1, (kind, name)
    return m[0]


def containers(kind, name):
    spec = find(kind, name)["spec"]["template"]["spec"]
    return spec, {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


def calls():
    """The (apiGroup, resource, verb) the client makes, read from src/k8s/kube.c."""
    src = open(os.path.join(SRC, "src", "k8s", "kube.c")).read()
    need = set()
    for path in re.findall(r'"(/api[^"]*)"', src):
        m = re.fullmatch(r"/api/v1/(\w+)", path) or re.fullmatch(
            r"/apis/([\w.]+)/v1/(\w+)", path)
        if m and "watch=1" in src and "limit=%d" in src:  # listed, then watched
            group, res = ("", m.group(1)) if len(m.groups()) == 1 else m.groups()
            need |= {(group, res, "list"), (group, res, "watch")}
        m = re.fullmatch(r"/api/v1/namespaces/%s/(\w+)/%s", path)
        if m:
            need.add(("", m.group(1), "get"))
    return need


# The workloads whose command runs with --source kubernetes, and the file where that command
# opens the source's client (kube_open: the one client, src/k8s/kube.c).
SOURCE_USERS = [("Deployment", "peak-controller", "controller", "src/controller/controller.c"),
                ("DaemonSet", "peak-agent", "agent", "src/agent/agent.c"),
                ("Deployment", "peak-dns", "dns", "src/dns/server.c")]


def command(kind, name, container):
    return containers(kind, name)[1][container]["command"]


def test_rbac_is_what_the_client_calls():
    need = calls()
    assert need == {("", "services", "list"), ("", "services", "watch"),
                    ("discovery.k8s.io", "endpointslices", "list"),
                    ("discovery.k8s.io", "endpointslices", "watch"),
                    ("", "secrets", "get")}, need
    role = find("ClusterRole", "peak-source")
    assert granted(role) == need
    b = find("ClusterRoleBinding", "peak-source")
    assert b["roleRef"]["name"] == "peak-source"
    subjects = {(s["name"], s["namespace"]) for s in b["subjects"]}
    for kind, name, container, src in SOURCE_USERS:
        # the command opens the source's client, and no API path of its own
        code = open(os.path.join(SRC, src)).read()
        assert "kube_open(" in code and not re.search(r'"/apis?/', code), src
        cmd = command(kind, name, container)
        assert cmd[cmd.index("--source") + 1] == "kubernetes", name
        spec = containers(kind, name)[0]
        sa = spec["serviceAccountName"]
        ns = find(kind, name)["metadata"]["namespace"]
        assert (sa, ns) in subjects, (name, sa)
        assert find("ServiceAccount", sa)["metadata"]["namespace"] == ns
        assert spec.get("automountServiceAccountToken", True) is True  # it calls the API
    assert len(subjects) == len(SOURCE_USERS)


def grants_of(sa):
    """Everything service account sa (of peak-system) is granted, by every binding."""
    out = set()
    for d in docs():
        if d["kind"] in ("ClusterRoleBinding", "RoleBinding") and any(
                s["name"] == sa and s["namespace"] == "peak-system" for s in d["subjects"]):
            out |= granted(find(d["roleRef"]["kind"], d["roleRef"]["name"]))
    return out


def test_each_service_account_holds_only_what_its_command_calls():
    assert grants_of("peak-agent") == calls()
    assert grants_of("peak-dns") == calls() | follow_calls()
    assert grants_of("peak-controller") == calls() | store_calls()


def store_calls():
    """The (apiGroup, resource, verb) of the controller's Kubernetes store, read from
    store_kube.c function by function (each touches one resource): GET of the nodes' Lease
    list is list, any other GET get, PUT update, POST create."""
    src = open(os.path.join(SRC, "src", "controller", "store_kube.c")).read()
    need = set()
    for f in re.split(r"\n(?=[a-z][^\n]*\)\n\{)", src):
        calls = re.findall(r'kube_call\(s->k, "(\w+)", ([\w>-]+)', f)
        if not calls:
            continue
        res = {r for key, r in (("lease", "leases"), ("nodes_path", "leases"),
                                ("cm_", "configmaps"), ("configmaps", "configmaps")) if key in f}
        assert len(res) == 1, (f.split("\n", 1)[0], res)  # one resource a function
        res = res.pop()
        group = "coordination.k8s.io" if res == "leases" else ""
        for method, path in calls:
            verb = {"PUT": "update", "POST": "create"}.get(method) or (
                "list" if path == "s->nodes_path" else "get")
            need.add((group, res, verb))
    return need


def follow_calls():
    """peak dns --store kubernetes: one collection listed, then watched (kube_open_one)."""
    src = open(os.path.join(SRC, "src", "dns", "follow.c")).read()
    paths = re.findall(r'"/api/v1/namespaces/%s/(\w+)"', src)
    assert "kube_open_one" in src and paths
    return {("", r, v) for r in paths for v in ("list", "watch")}


def granted(role):
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
            for r in rule["resources"] for v in rule["verbs"]}


@pytest.mark.parametrize("deploy,role,calls", [("peak-controller", "peak-controller-store",
                                                store_calls),
                                               ("peak-dns", "peak-dns", follow_calls)])
def test_store_roles_are_what_the_stores_call(deploy, role, calls):
    need = calls()
    if deploy == "peak-controller":
        assert need == {("coordination.k8s.io", "leases", v)
                        for v in ("get", "list", "create", "update")} | {
            ("", "configmaps", v) for v in ("get", "create", "update")}, need
    r = find("Role", role)
    assert r["metadata"]["namespace"] == "peak-system"
    assert granted(r) == need
    b = find("RoleBinding", role)
    assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": role}
    sa = b["subjects"][0]
    assert sa["namespace"] == "peak-system"
    find("ServiceAccount", sa["name"])
    spec, cs = containers("Deployment", deploy)
    assert spec["serviceAccountName"] == sa["name"]
    assert spec.get("automountServiceAccountToken", True) is True  # the token it calls with
    cmd = next(c["command"] for c in cs.values() if c["command"][0] == "peak")
    assert cmd[cmd.index("--store") + 1] == "kubernetes"


def opts(cmd):
    return [a for a in cmd if a.startswith("--")]


def helps(sub):
    return subprocess.run([PEAK, sub, "--help"], capture_output=True, text=True).stdout


@pytest.mark.parametrize("kind,name", [("DaemonSet", "peak-agent"),
                                       ("Deployment", "peak-controller"),
                                       ("Deployment", "peak-dns")])
def test_commands_use_options_that_exist(kind, name):
    _, cs = containers(kind, name)
    for c in cs.values():
        cmd = c["command"]
        if cmd[0] != "peak":
            continue
        h = helps(cmd[1])
        for o in opts(cmd):
            assert re.search(re.escape(o) + r"\b", h), (name, c["name"], o)
        # every file the command reads sits on a mounted volume
        mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
        for a in cmd:
            if a.startswith("/"):
                assert any(a.startswith(m + "/") or a == m for m in mounts), (name, a)


def test_agent_host_network_capabilities_bpffs():
    spec, cs = containers("DaemonSet", "peak-agent")
    assert spec["hostNetwork"] is True
    ag = cs["agent"]
    caps = set(ag["securityContext"]["capabilities"]["add"])
    # what the agent's systemd unit grants (deploy/systemd/peak-agent@.service)
    unit = open(os.path.join(SRC, "deploy", "systemd", "peak-agent@.service.in")).read()
    amb = re.search(r"^AmbientCapabilities=(.*)$", unit, re.M).group(1)
    assert caps == set(re.findall(r"CAP_(\w+)", amb)), (caps, amb)
    assert ag["securityContext"].get("privileged") is False
    bpf = [m for m in ag["volumeMounts"] if m["mountPath"] == "/sys/fs/bpf"]
    vols = {v["name"]: v for v in spec["volumes"]}
    assert bpf and vols[bpf[0]["name"]]["hostPath"]["path"] == "/sys/fs/bpf"
    # BIRD beside it, reading the configuration the agent's init container writes
    bird = cs["bird"]["command"]
    conf = bird[bird.index("-c") + 1]
    init = cs["bird-config"]["command"]
    assert init[init.index("--bird-config") + 1] == conf
    # the agents reach the controllers' Service on the port the controller listens on
    ctl = ag["command"][ag["command"].index("--controller") + 1]
    host, port = ctl.rsplit(":", 1)
    svc = find("Service", host.split(".")[0])
    _, ccs = containers("Deployment", "peak-controller")
    listen = ccs["controller"]["command"]
    lport = int(listen[listen.index("--listen") + 1].rsplit(":", 1)[1])
    assert [p["targetPort"] for p in svc["spec"]["ports"] if p["port"] == int(port)] == [lport]


def test_controller_and_dns_two_replicas_and_port_53():
    for name in ("peak-controller", "peak-dns"):
        assert find("Deployment", name)["spec"]["replicas"] == 2
    _, cs = containers("Deployment", "peak-controller")
    cmd = cs["controller"]["command"]
    assert cmd[cmd.index("--source") + 1] == "kubernetes"
    # two controllers need a store that elects one leader: the Lease, nothing to run beside
    assert cmd[cmd.index("--store") + 1] == "kubernetes"
    assert cs["controller"]["readinessProbe"]["tcpSocket"]["port"] == 4000
    _, ds = containers("Deployment", "peak-dns")
    dns = ds["dns"]
    lport = int(dns["command"][dns["command"].index("--listen") + 1].rsplit(":", 1)[1])
    assert {(p["containerPort"], p["protocol"]) for p in dns["ports"]} >= {
        (lport, "UDP"), (lport, "TCP")}
    if lport < 1024:
        assert "NET_BIND_SERVICE" in dns["securityContext"]["capabilities"]["add"]
    svc = find("Service", "peak-dns")
    assert {(p["port"], p["targetPort"], p["protocol"]) for p in svc["spec"]["ports"]} == {
        (53, lport, "UDP"), (53, lport, "TCP")}
    cm = find("ConfigMap", "peak-config")
    base = yaml.safe_load(cm["data"]["peak.yaml"])
    assert base["services"] == [] and base["zone"]["name"]
    # the controller takes the ConfigMap's base configuration
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"peak-cm-{os.getpid()}.yaml")
    try:
        with open(path, "w") as f:
            f.write(cm["data"]["peak.yaml"])
        r = subprocess.run([PEAK, "controller", "--config", path, "--check"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    finally:
        os.unlink(path)


def test_containerfile_packages_hold_every_library():
    text = open(os.path.join(DEPLOY, "Containerfile")).read()
    assert re.search(r"^FROM debian:bookworm\b", text, re.M)
    final = text[text.rindex("FROM "):]
    pkgs = set(re.findall(r"\b(lib[\w.+-]+|bird2)\b", final))
    assert "bird2" in pkgs
    out = subprocess.run(["readelf", "-d", PEAK], capture_output=True, text=True).stdout
    sos = [so for so in re.findall(r"NEEDED.*\[(.+)\]", out)
           if not so.startswith(("libc.so", "libasan", "libubsan", "libm.so", "libstdc++",
                                 "libgcc_s"))]
    r = subprocess.run(["dpkg", "-S", *[f"/usr/lib/*/{so}" for so in sos]],
                       capture_output=True, text=True)
    owners = {}
    for ln in r.stdout.splitlines():
        pkg, path = ln.split(": ", 1)
        owners.setdefault(os.path.basename(path), set()).add(pkg.split(":")[0])
    for so in sos:
        assert owners.get(so, set()) & pkgs, (so, owners.get(so))
