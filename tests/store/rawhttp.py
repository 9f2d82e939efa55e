"""Sends raw bytes to ADDR PORT and prints what comes back, as JSON: the status, the
headers and the seconds until the reply (or the close). Run inside the client namespace.

  rawhttp.py ADDR PORT HEX [--close]   send HEX (then shut down writing with --close)
  rawhttp.py ADDR PORT HEX --hold      send HEX, print "sent", wait for the peer to close
  --pad N                               send N bytes "p" after HEX
"""
import json
import socket
import sys
import time

addr, port, data = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
s = socket.create_connection((addr, port), timeout=30)
t0 = time.time()
s.sendall(data)
if "--pad" in sys.argv:
    s.sendall(b"p" * int(sys.argv[sys.argv.index("--pad") + 1]))
if "--hold" in sys.argv:
    print("sent", flush=True)
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass
    sys.exit(0)
if "--close" in sys.argv:
    s.shutdown(socket.SHUT_WR)
buf = b""
while b"\r\n\r\n" not in buf:
    try:
        k = s.recv(65536)
    except OSError:
        break
    if not k:
        break
    buf += k
head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
status = int(head[0].split()[1]) if head[0].startswith("HTTP/1.1 ") else 0
headers = {}
for line in head[1:]:
    if ":" in line:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
print(json.dumps({"status": status, "headers": headers, "seconds": time.time() - t0}))
