"""A fake Kubernetes API server on loopback for the controller's Kubernetes source: the
documented wire format of the parts the client calls, nothing more.

- GET /api/v1/services and /apis/discovery.k8s.io/v1/endpointslices: a List object
  (kind ...List, metadata.resourceVersion, items), paged with limit and continue;
- the same with watch=1&resourceVersion=RV: 200 with Transfer-Encoding: chunked, one JSON
  event a line ({"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}), every line
  sent in two chunks split in its middle (a short pause between them), a BOOKMARK every
  bookmark_s; a resourceVersion older than the history kept answers one ERROR event with a
  Status of code 410 (Expired), as the API does;
- GET /api/v1/namespaces/NS/secrets/NAME: the Secret (data base64);
- Leases (coordination.k8s.io/v1) and ConfigMaps (v1) of a namespace, for --store
  kubernetes: GET .../namespaces/NS/leases/NAME (404 NotFound with a Status when there is
  none), POST .../namespaces/NS/leases (201 Created; 409 AlreadyExists), PUT
  .../namespaces/NS/leases/NAME (200; 409 Conflict when metadata.resourceVersion is not the
  stored one, 404 when there is none, 400 when the body's name is not the URL's, 422 Invalid
  for a field of the wrong type), the same for configmaps (data values must be strings, keys
  [-._a-zA-Z0-9]); every write gets a new resourceVersion from the one counter;
- the ConfigMaps and Leases of a namespace as collections (peak dns --store kubernetes
  follows the ConfigMap; the controller lists the nodes' Leases): GET
  /api/v1/namespaces/NS/configmaps?fieldSelector=metadata.name=NAME lists those of that
  name (a ConfigMapList), labelSelector=KEY=VALUE those with that label (equality only),
  and with watch=1&resourceVersion=RV streams their ADDED and
  MODIFIED events (written through PUT/POST or nsobj_set), bookmarks, RAW lines, a BREAK
  and 410 as for services; a field selector other than metadata.name=... is refused with
  400, as the API refuses a field it does not index for ConfigMaps;
- every request needs "Authorization: Bearer TOKEN"; a wrong one gets 401 with a Status.
The server records every request line (self.requests) so tests can check what the client
asked for (verbs and resources, for the RBAC check too)."""
import base64
import copy
import http.server
import json
import socket
import socketserver
import threading
import time
import urllib.parse

RES = {"/api/v1/services": "services",
       "/apis/discovery.k8s.io/v1/endpointslices": "endpointslices"}
KIND = {"services": "ServiceList", "endpointslices": "EndpointSliceList",
        "configmaps": "ConfigMapList", "leases": "LeaseList"}


def service(name, ns="demo", annotations=None, port=8080):
    return {"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations or {}},
            "spec": {"ports": [{"port": port, "protocol": "TCP"}]}}


def endpoint(pod, addr, node="node1", ready=True, serving=None, terminating=False):
    cond = {"ready": ready, "terminating": terminating}
    cond["serving"] = ready if serving is None else serving
    return {"addresses": [addr], "conditions": cond, "nodeName": node,
            "targetRef": {"kind": "Pod", "name": pod, "namespace": "demo"}}


def endpointslice(name, svc, endpoints, ns="demo", family="IPv6"):
    return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": family, "endpoints": endpoints,
            "ports": [{"port": 8080, "protocol": "TCP"}]}


# The two-node cluster the agent and peak dns source tests run: one Service, api, in
# namespace demo, annotated for SVC; BASE the file's part (zone and nodes, no services).
SVC = "api.svc.example."
ANN = {"peak.dev/prefixes": "fd00:a::/64", "peak.dev/slice": "72", "peak.dev/name": SVC,
       "peak.dev/port": "8080"}
BASE = """
zone:
  name: svc.example.
  ns:
    - {name: ns1.svc.example., address: "2001:db8:53::1"}
nodes: [{name: node1}, {name: node2}]
services: []
"""


def pods(*spec):
    """Endpoints pod-K at fd00:1::aK on the node given for K: pods((0, "node1"), ...)."""
    return [endpoint(f"pod-{k}", f"fd00:1::a{k}", node=n) for k, n in spec]


class Api:
    def __init__(self, token="t0", bookmark_s=0.5, page=2):
        self.lock = threading.Condition()
        self.rv = 100
        self.objs = {"services": {}, "endpointslices": {}}
        self.history = []  # (rv, resource, type, object)
        self.oldest = 0  # a watch from before this is 410 Gone
        self.secrets = {}
        self.nsobjs = {}  # (resource, namespace, name) -> a Lease or ConfigMap
        self.token = token
        self.page = page
        self.snapshots = {}  # a paged list's continue token -> (items, rv) at its first page
        self.bookmark_s = bookmark_s
        self.requests = []
        self.open = {}  # resource -> watches streaming (an EXPIRE from now on ends them)
        self.stop = False
        api = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                api.handle(self)

            def do_PUT(self):
                api.write(self, "PUT")

            def do_POST(self):
                api.write(self, "POST")

        class S(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that went away (the controller stopped, a broken watch)

            def server_bind(self):
                # HTTPServer's own server_bind asks socket.getfqdn() for the server's name:
                # a reverse DNS lookup, which in a test namespace with no resolver took 6 s
                # per server (tests/regress/test_kubeapi_starts_without_dns.py)
                socketserver.TCPServer.server_bind(self)
                self.server_name, self.server_port = "localhost", self.server_address[1]

        self.srv = S(("::1", 0), H)
        self.port = self.srv.server_address[1]
        self.url = f"http://[::1]:{self.port}"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        with self.lock:
            self.stop = True
            self.lock.notify_all()
        self.srv.shutdown()
        self.srv.server_close()

    # ---- changes ----

    def put(self, res, obj, typ=None):
        key = f'{obj["metadata"]["namespace"]}/{obj["metadata"]["name"]}'
        with self.lock:
            self.rv += 1
            o = copy.deepcopy(obj)
            o["metadata"]["resourceVersion"] = str(self.rv)
            t = typ or ("MODIFIED" if key in self.objs[res] else "ADDED")
            self.objs[res][key] = o
            self.history.append((self.rv, res, t, o))
            self.lock.notify_all()

    def delete(self, res, ns, name):
        with self.lock:
            o = self.objs[res].pop(f"{ns}/{name}")
            self.rv += 1
            o = copy.deepcopy(o)
            o["metadata"]["resourceVersion"] = str(self.rv)
            self.history.append((self.rv, res, "DELETED", o))
            self.lock.notify_all()

    def raw(self, res, line):
        """Sends line (bytes, no newline) as it is on every open watch of res."""
        with self.lock:
            self.rv += 1
            self.history.append((self.rv, res, "RAW", line))
            self.lock.notify_all()

    def break_next(self, res):
        """Open watches of res send the first half of their next event's line, then the
        connection drops (no last chunk): the client must resume from the version before."""
        with self.lock:
            self.history.append((self.rv, res, "BREAK", None))
            self.lock.notify_all()

    def watching(self, *resources):
        """Whether a watch of each resource is streaming: an expire() from now on ends it
        (one that starts after the expire, from the newest resourceVersion, never sees it)."""
        with self.lock:
            return all(self.open.get(r, 0) > 0 for r in resources)

    def expire(self):
        """Compacts the history: open watches get ERROR 410 and end; watches from an older
        resourceVersion are refused with it."""
        with self.lock:
            self.oldest = self.rv
            self.history.append((self.rv, "*", "EXPIRE", None))
            self.lock.notify_all()

    def secret(self, ns, name, data):
        self.secrets[f"{ns}/{name}"] = {
            k: base64.b64encode(v.encode()).decode() for k, v in data.items()}

    # ---- serving ----

    def status(self, h, code, reason, msg):
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "message": msg, "reason": reason, "code": code}).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def handle(self, h):
        u = urllib.parse.urlsplit(h.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        watch = q.get("watch") in ("1", "true")
        self.requests.append(("watch" if watch else "get", u.path, q))
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return self.status(h, 401, "Unauthorized", "Unauthorized")
        if self.nsobj_path(u.path) and self.nsobj_path(u.path)[2] == "":
            res, ns, _ = self.nsobj_path(u.path)
            sel = q.get("fieldSelector")
            if sel is not None and not sel.startswith("metadata.name="):
                return self.status(h, 400, "BadRequest",
                                   f'field label not supported: {sel.split("=")[0]}')
            name = sel.partition("=")[2] if sel else None
            lsel = q.get("labelSelector")  # equality-based only: KEY=VALUE
            if lsel is not None and (lsel.count("=") != 1 or "," in lsel):
                return self.status(h, 400, "BadRequest", "unable to parse requirement")
            lk, _, lv = (lsel or "").partition("=")

            def match(o):
                md = o.get("metadata", {}) if isinstance(o, dict) else {}
                return md.get("namespace") == ns and name in (None, md.get("name")) and \
                    (not lsel or (md.get("labels") or {}).get(lk) == lv)
            if watch:
                return self.watch(h, res, int(q.get("resourceVersion") or 0),
                                  q.get("allowWatchBookmarks") == "true", match)
            with self.lock:
                items = [copy.deepcopy(o) for (r, _, _), o in sorted(self.nsobjs.items())
                         if r == res and match(o)]
                rv = self.rv
            return self.reply(h, 200, {"kind": self.NSRES[res][1] + "List",
                                       "apiVersion": self.NSRES[res][0],
                                       "metadata": {"resourceVersion": str(rv)},
                                       "items": items})
        if self.nsobj_path(u.path):
            res, ns, name = self.nsobj_path(u.path)
            with self.lock:
                o = self.nsobjs.get((res, ns, name))
                o = copy.deepcopy(o) if o and name else None
            if o is None:
                return self.status(h, 404, "NotFound", f'{res} "{name}" not found')
            return self.reply(h, 200, o)
        if u.path.startswith("/api/v1/namespaces/") and "/secrets/" in u.path:
            parts = u.path.split("/")
            s = self.secrets.get(f"{parts[4]}/{parts[6]}")
            if s is None:
                return self.status(h, 404, "NotFound", "secrets not found")
            body = json.dumps({"kind": "Secret", "apiVersion": "v1",
                               "metadata": {"name": parts[6], "namespace": parts[4]},
                               "data": s}).encode()
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        res = RES.get(u.path)
        if not res:
            return self.status(h, 404, "NotFound", "the server could not find the resource")
        if watch:
            return self.watch(h, res, int(q.get("resourceVersion") or 0),
                              q.get("allowWatchBookmarks") == "true")
        # a paged list is one snapshot, as the API's continue tokens are: every page shows
        # the objects and resourceVersion of the first, whatever changed in between
        tok = q.get("continue") or ""
        with self.lock:
            if tok:
                sid, _, at = tok.partition(":")
                items, rv = self.snapshots[sid]
                start = int(at)
            else:
                items, rv, start = sorted(self.objs[res].items()), self.rv, 0
                sid = str(len(self.snapshots))
                self.snapshots[sid] = (items, rv)
        limit = int(q.get("limit") or 0) or len(items) or 1
        limit = min(limit, self.page)
        page = [copy.deepcopy(o) for _, o in items[start:start + limit]]
        md = {"resourceVersion": str(rv)}
        if start + limit < len(items):
            md["continue"] = f"{sid}:{start + limit}"
        body = json.dumps({"kind": KIND[res], "apiVersion": "v1", "metadata": md,
                           "items": page}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    # ---- Leases and ConfigMaps ----

    NSRES = {"leases": ("coordination.k8s.io/v1", "Lease"), "configmaps": ("v1", "ConfigMap")}

    def nsobj_path(self, path):
        """(resource, namespace, name or "") of a Lease or ConfigMap path, or None."""
        p = path.split("/")
        if p[1:3] == ["apis", "coordination.k8s.io"] and p[3:5] == ["v1", "namespaces"] \
                and len(p) in (7, 8) and p[6] == "leases":
            return "leases", p[5], p[7] if len(p) == 8 else ""
        if p[1:4] == ["api", "v1", "namespaces"] and len(p) in (6, 7) and p[5] == "configmaps":
            return "configmaps", p[4], p[6] if len(p) == 7 else ""
        return None

    def reply(self, h, code, obj):
        body = json.dumps(obj).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def nsobj(self, res, ns, name):
        """A copy of the stored Lease or ConfigMap, or None."""
        with self.lock:
            o = self.nsobjs.get((res, ns, name))
            return copy.deepcopy(o)

    def nsobj_set(self, res, ns, name, obj):
        """Stores obj as another writer would (a new resourceVersion); returns it."""
        with self.lock:
            self.rv += 1
            o = copy.deepcopy(obj)
            o.setdefault("metadata", {}).update(name=name, namespace=ns,
                                                resourceVersion=str(self.rv))
            o["apiVersion"], o["kind"] = self.NSRES[res]
            self.nsobj_store(res, ns, name, o)
            return copy.deepcopy(o)

    def nsobj_store(self, res, ns, name, o):
        """Keeps o (under the lock); a ConfigMap's change is an event of its collection."""
        t = "MODIFIED" if (res, ns, name) in self.nsobjs else "ADDED"
        self.nsobjs[(res, ns, name)] = o
        if res in KIND:
            self.history.append((self.rv, res, t, copy.deepcopy(o)))
            self.lock.notify_all()

    def invalid(self, res, o):
        """Why o is not a valid object of res (422), or None."""
        if res == "leases":
            sp = o.get("spec", {})
            if not isinstance(sp, dict):
                return "spec: not an object"
            for k, t in (("holderIdentity", (str, type(None))),
                         ("leaseDurationSeconds", int), ("leaseTransitions", int),
                         ("acquireTime", (str, type(None))), ("renewTime", (str, type(None)))):
                if k in sp and not isinstance(sp[k], t):
                    return f"spec.{k}: wrong type"
            return None
        data = o.get("data", {})
        if not isinstance(data, dict):
            return "data: not an object"
        for k, v in data.items():
            if not isinstance(v, str) or not k or \
                    any(not (c.isascii() and (c.isalnum() or c in "-._")) for c in k):
                return f"data[{k}]: invalid"
        return None

    def write(self, h, method):
        u = urllib.parse.urlsplit(h.path)
        n = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(n) if n else b""
        self.requests.append((method.lower(), u.path, {}))
        if h.headers.get("Authorization") != f"Bearer {self.token}":
            return self.status(h, 401, "Unauthorized", "Unauthorized")
        where = self.nsobj_path(u.path)
        if not where or (method == "POST") != (where[2] == ""):
            return self.status(h, 405, "MethodNotAllowed", "method not allowed")
        res, ns, name = where
        try:
            o = json.loads(raw)
            assert isinstance(o, dict) and isinstance(o.get("metadata"), dict)
        except (ValueError, AssertionError):
            return self.status(h, 400, "BadRequest", "not a JSON object with metadata")
        md = o["metadata"]
        if method == "POST":
            name = md.get("name")
        if md.get("name") != name or md.get("namespace", ns) != ns or not name:
            return self.status(h, 400, "BadRequest", "the name does not match the URL")
        why = self.invalid(res, o)
        if why:
            return self.status(h, 422, "Invalid", why)
        with self.lock:
            cur = self.nsobjs.get((res, ns, name))
            if method == "POST" and cur is not None:
                return self.status(h, 409, "AlreadyExists", f'{res} "{name}" already exists')
            if method == "PUT" and cur is None:
                return self.status(h, 404, "NotFound", f'{res} "{name}" not found')
            if method == "PUT" and md.get("resourceVersion") and \
                    md["resourceVersion"] != cur["metadata"]["resourceVersion"]:
                return self.status(h, 409, "Conflict",
                                   f'Operation cannot be fulfilled on {res} "{name}": the '
                                   "object has been modified; please apply your changes to "
                                   "the latest version and try again")
            self.rv += 1
            md.update(namespace=ns, resourceVersion=str(self.rv))
            o["apiVersion"], o["kind"] = self.NSRES[res]
            self.nsobj_store(res, ns, name, o)
            out = copy.deepcopy(o)
        return self.reply(h, 201 if method == "POST" else 200, out)

    def chunk(self, h, data):
        h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        h.wfile.flush()

    def line(self, h, data):
        """One event line in two chunks split in its middle, a pause between them."""
        data += b"\n"
        mid = len(data) // 2
        self.chunk(h, data[:mid])
        time.sleep(0.01)
        self.chunk(h, data[mid:])

    def watch(self, h, res, since, bookmarks, match=lambda o: True):
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        gone = {"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                                            "status": "Failure", "reason": "Expired",
                                            "message": "too old resource version",
                                            "code": 410}}
        opened = False
        try:
            with self.lock:
                if since < self.oldest:
                    self.line(h, json.dumps(gone).encode())
                    self.chunk(h, b"")
                    return
                at = next((i for i, e in enumerate(self.history) if e[0] > since),
                          len(self.history))
                self.open[res] = self.open.get(res, 0) + 1
                opened = True
                last_bm = time.monotonic()
                while not self.stop:
                    while at < len(self.history):
                        rv, r, t, o = self.history[at]
                        at += 1
                        if t == "EXPIRE":
                            self.line(h, json.dumps(gone).encode())
                            self.chunk(h, b"")
                            return
                        if r != res or t == "DONE" or (t not in ("RAW", "BREAK") and
                                                       not match(o)):
                            continue
                        if t == "BREAK":  # once
                            self.history[at - 1] = (rv, r, "DONE", None)
                            nxt = next((e for e in self.history[at:] if e[1] == res), None)
                            while nxt is None and not self.stop:
                                self.lock.wait(0.1)
                                nxt = next((e for e in self.history[at:] if e[1] == res),
                                           None)
                            if nxt is None:
                                return
                            data = json.dumps({"type": nxt[2], "object": nxt[3]}).encode()
                            self.chunk(h, data[:len(data) // 2])
                            h.close_connection = True
                            h.connection.shutdown(socket.SHUT_RDWR)
                            return
                        if t == "RAW":
                            self.line(h, o)
                        else:
                            self.line(h, json.dumps({"type": t, "object": o}).encode())
                    if bookmarks and time.monotonic() - last_bm >= self.bookmark_s:
                        bm = {"type": "BOOKMARK", "object": {
                            "kind": KIND[res][:-4], "apiVersion": "v1",
                            "metadata": {"resourceVersion": str(self.rv)}}}
                        self.line(h, json.dumps(bm).encode())
                        last_bm = time.monotonic()
                    self.lock.wait(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            if opened:
                with self.lock:
                    self.open[res] -= 1
