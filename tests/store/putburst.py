"""Concurrent PUTs at one pod, for tests/store/test_group_commit.py. Run inside the client
namespace. Keys are PREFIX-I that the pod at ADDR takes (a HEAD answered other than 421);
each body is body(key): 1 KiB from the key's SHA-256.

  putburst.py ADDR PORT burst N PREFIX     N such keys, one connection each: every PUT is
                                           sent but its body's last byte, then the last
                                           bytes one after another; prints JSON
                                           {"keys": [...], "status": [...]}
  putburst.py ADDR PORT flood T N PREFIX   N such keys PUT by T threads, each over one kept
                                           connection, until a connection fails; prints
                                           "ack KEY" as each 201 arrives
"""
import hashlib
import json
import socket
import sys
import threading


def body(key):
    return (hashlib.sha256(key.encode()).digest() * 32)[:1024]


def reply(s, buf=b"", head=False):
    """Reads one reply (a HEAD's without its body); returns (status, bytes after it)."""
    while b"\r\n\r\n" not in buf:
        k = s.recv(65536)
        if not k:
            raise ConnectionError("closed")
        buf += k
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and not head:
            length = int(value)
    while len(rest) < length:
        k = s.recv(65536)
        if not k:
            raise ConnectionError("closed")
        rest += k
    return int(lines[0].split()[1]), rest[length:]


def put_request(key):
    b = body(key)
    return (f"PUT /o/{key} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(b)}\r\n\r\n"
            .encode() + b)


def keys_taken(addr, port, n, prefix):
    out, i = [], 0
    s, pending = socket.create_connection((addr, port), timeout=30), b""
    while len(out) < n:
        key = f"{prefix}-{i}"
        i += 1
        s.sendall(f"HEAD /o/{key} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, pending = reply(s, pending, head=True)
        if status == 421:  # a misdirected key: the pod closes the connection
            s.close()
            s, pending = socket.create_connection((addr, port), timeout=30), b""
        else:
            out.append(key)
        if i > 20 * n + 100:
            raise RuntimeError("too few keys taken")
    s.close()
    return out


def burst(addr, port, n, prefix):
    keys = keys_taken(addr, port, n, prefix)
    conns = [socket.create_connection((addr, port), timeout=30) for _ in keys]
    reqs = [put_request(k) for k in keys]
    for s, r in zip(conns, reqs):
        s.sendall(r[:-1])
    for s, r in zip(conns, reqs):
        s.sendall(r[-1:])
    status = []
    for s in conns:
        try:
            status.append(reply(s)[0])
        except OSError:
            status.append(0)
        s.close()
    print(json.dumps({"keys": keys, "status": status}))


def flood(addr, port, threads, n, prefix):
    keys = keys_taken(addr, port, n, prefix)
    lock = threading.Lock()

    def run(mine):
        try:
            with socket.create_connection((addr, port), timeout=30) as s:
                for key in mine:
                    s.sendall(put_request(key))
                    status, _ = reply(s)
                    if status == 201:
                        with lock:
                            print("ack", key, flush=True)
        except OSError:
            pass  # the pod was killed

    ts = [threading.Thread(target=run, args=(keys[t::threads],)) for t in range(threads)]
    print("ready", flush=True)
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def main():
    addr, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if mode == "burst":
        burst(addr, port, int(sys.argv[4]), sys.argv[5])
    else:
        flood(addr, port, int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])


if __name__ == "__main__":
    main()
