"""A pod for the client tests: listens on port PORT on [::] or on the given addresses, says
on each connection which destination and source it saw, then echoes what it receives."""
import socket
import sys
import threading

port = int(sys.argv[1])
addrs = sys.argv[2:] or ["::"]
socks = []
for a in addrs:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IP, 15, 1)  # IP_FREEBIND: addresses of the AnyIP route
    s.bind((a, port))
    s.listen(16)
    socks.append(s)


def serve(c):
    with c:
        c.sendall(f"dst={c.getsockname()[0]} src={c.getpeername()[0]}\n".encode())
        while True:
            d = c.recv(4096)
            if not d:
                break
            c.sendall(d)


def accept(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


for s in socks[1:]:
    threading.Thread(target=accept, args=(s,), daemon=True).start()
print("listening", flush=True)
accept(socks[0])
