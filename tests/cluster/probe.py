"""Client probe (run in the client namespace): from SOURCE, GET http://[DEST]:PORT/ every
10 ms until an answer comes from an endpoint in WANT (comma-separated) or DEADLINE (unix
time) passes; prints 'ENDPOINT SECONDS_SINCE_T0'."""
import socket
import sys
import time

src, dst, port, want, t0, deadline = sys.argv[1:7]
want, t0, deadline = set(want.split(",")), float(t0), float(deadline)
while time.time() < deadline:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.settimeout(0.1)
            s.bind((src, 0))
            s.connect((dst, int(port)))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                data += b
        ep = data.split(b"X-Peak-Endpoint: ")[1].split(b"\r\n")[0].decode()
        if ep in want:
            print(ep, round(time.time() - t0, 3))
            sys.exit(0)
    except (OSError, IndexError):
        pass
    time.sleep(0.01)
print("none", round(time.time() - t0, 3))
sys.exit(1)
