"""Per-stream stalls after each packet the lossy path dropped: what head-of-line blocking costs
the streams that did not lose anything.

The issue's claim is that over HTTP/2 one lost TCP segment stalls every stream of the
connection until it is repaired, while over QUIC only the stream whose data was lost waits.
Completion times cannot show it: the client sends the bodies round robin, so the audio
streams of one upload finish together on every system and their p99 follows the slowest
upload. This module measures it on the client's leg (client to ingress, or to the pod for
PEAK-direct), from the sender's own records:

- pieces: every body piece the client sent (a QUIC STREAM frame's first transmission; an
  HTTP/2 DATA frame cut in 1400-byte pieces of the TCP byte stream), with the time it left
  and the time the peer had acknowledged it *in order on its stream* (QUIC: the stream's
  acknowledged prefix covers it; TCP: the cumulative acknowledgement does, which is when
  the receiver can read it). Its delay is the difference.
- drops: the relay's log of the packets it dropped (bench/h3/lossy.py --drops), those the
  client sent with data in them (>= 1000 bytes).
- for each drop at time td with no other drop in the two windows before it nor in the
  window after (isolated: so that the stream that lost is the only one with a loss of its
  own around it), each stream with
  pieces sent in [td - 1 ms, td + window] (the window: the path's round trip, what a repair
  takes at least): its stall is the largest delay of those pieces beyond the upload's median
  delay. The stream stalled longest is taken for the one that lost the packet (its stall is
  the price of any loss); the stalls of the others are head-of-line blocking, which QUIC
  should not have.
- control points: the same judged at times with no drop near (no packet to or from the
  client dropped, acknowledgements included), which gives the path's own jitter (the
  relay, the peers' scheduling on a shared machine, the acknowledgement pace).

Inputs: the QUIC client's qlog (peak h3 upload --qlog DIR: ngtcp2's packet_sent and ACK
frames, our http:request_headers for each stream's content-type and peak:clock for the
monotonic time of the qlog's zero), or the HTTP/2 client's progress file (PEAK_H3_PROGRESS=FILE:
'D T_NS STREAM END LEN' per DATA frame, 'T T_NS WRITTEN SENT ACKED' samples of the TCP
counters every millisecond). All times are CLOCK_MONOTONIC nanoseconds, the relay's clock."""
import bisect
import json
import os
import statistics

PIECE = 1400  # bytes: about one packet's payload on the 1500-byte MTU path


def read_drops(path):
    """The relay's drop log: [(t_ns, src, dst, proto, length, dport)] (proto and dport
    strings, '-' when unknown)."""
    out = []
    if not path or not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            w = line.split()
            if len(w) == 6:
                out.append((int(w[0]), w[1], w[2], w[3], int(w[4]), w[5]))
    return out


def client_drops(drops, client, dsts, proto, port, t0, t1, min_len=1000):
    """The drop times (ns) of data packets (>= min_len bytes) the client sent between t0 and
    t1 over proto ("6" TCP, "17" UDP) to port on an address starting with one of dsts."""
    return sorted(t for t, src, dst, pr, n, dp in drops if src == client and pr == proto
                  and dp == str(port) and n >= min_len and t0 <= t <= t1
                  and dst.startswith(tuple(dsts)))


def qlog_records(path):
    """The JSON records of a JSON-SEQ qlog file (RS-separated, one a line)."""
    with open(path, "rb") as f:
        data = f.read()
    for chunk in data.replace(b"\x1e", b"\n").split(b"\n"):
        chunk = chunk.strip()
        if chunk:
            try:
                yield json.loads(chunk)
            except ValueError:
                continue  # a record cut short (the process ended mid-write)


def ack_ranges(frame):
    """The packet numbers an ACK frame's acked_ranges cover, as (low, high) pairs."""
    for r in frame.get("acked_ranges", ()):
        if len(r) == 1:
            yield r[0], r[0]
        elif len(r) >= 2:
            yield r[0], r[1]


class Prefix:
    """A stream's acknowledged bytes: the in-order prefix and the ranges past a gap."""

    def __init__(self):
        self.end, self.past = 0, {}

    def add(self, off, n):
        """Notes [off, off+n) acknowledged; returns True if the prefix grew."""
        if off > self.end:
            self.past[off] = max(self.past.get(off, 0), off + n)
            return False
        before = self.end
        self.end = max(self.end, off + n)
        while True:
            grown = [o for o in self.past if o <= self.end]
            if not grown:
                break
            for o in grown:
                self.end = max(self.end, self.past.pop(o))
        return self.end > before


def quic_pieces(path, key=""):
    """From one QUIC connection's client qlog: (pieces, types). pieces: [(stream, t_sent,
    t_acked)] for each STREAM frame's new data (a retransmission is not a new piece; t_acked
    None if never covered); types: {stream: content-type}. stream is key + ':' + the stream
    ID."""
    start, types = None, {}
    sent = {}  # packet number -> [(sid, off, len)]
    new = {}  # sid -> [[t_sent, end, t_acked]] in the order sent: ends increase
    top, nacked, prefix = {}, {}, {}  # sid -> highest end sent; pieces acked; Prefix
    for r in qlog_records(path):
        name, d = r.get("name"), r.get("data", {})
        t = r.get("time")
        if name == "peak:clock":
            start = d.get("start_monotonic_ns")
            continue
        if name == "http:request_headers":
            types[d.get("stream_id")] = d.get("content_type")
            continue
        if t is None:
            continue
        t_ns = int(t * 1e6)  # relative milliseconds
        if name == "transport:packet_sent":
            pn = d.get("header", {}).get("packet_number")
            fr = [(f["stream_id"], f.get("offset", 0), f.get("length", 0))
                  for f in d.get("frames", ()) if f.get("frame_type") == "stream"]
            if not fr or pn is None:
                continue
            sent[pn] = fr
            for sid, off, n in fr:
                if off + n > top.get(sid, 0):  # new bytes on this stream
                    top[sid] = off + n
                    new.setdefault(sid, []).append([t_ns, off + n, None])
        elif name == "transport:packet_received":
            if d.get("header", {}).get("packet_type") not in ("1RTT", "0RTT"):
                continue
            for f in d.get("frames", ()):
                if f.get("frame_type") != "ack":
                    continue
                for lo, hi in ack_ranges(f):
                    for pn in range(lo, hi + 1):
                        for sid, off, n in sent.pop(pn, ()):
                            p = prefix.setdefault(sid, Prefix())
                            if not p.add(off, n):
                                continue
                            ps, k = new.get(sid, []), nacked.get(sid, 0)
                            while k < len(ps) and ps[k][1] <= p.end:
                                ps[k][2] = t_ns
                                k += 1
                            nacked[sid] = k
    if start is None:
        raise ValueError(f"{path}: no peak:clock record (a client without it)")
    pieces = [(f"{key}:{sid}", start + s, start + a if a is not None else None)
              for sid, ps in new.items() if sid in types for s, _, a in ps]
    return pieces, {f"{key}:{sid}": ty for sid, ty in types.items()}


def tcp_pieces(path, types, key="h2"):
    """From the HTTP/2 client's progress file: [(stream, t_sent, t_acked)] for each PIECE
    bytes of every DATA frame (t_sent: the first sample at which TCP had sent it, t_acked:
    the first at which the cumulative acknowledgement covered it; None if neither came).
    types: {stream ID: content-type} (from the client's stream lines)."""
    frames, ts, sent, acked = [], [], [], []
    with open(path) as f:
        for line in f:
            w = line.split()
            if w[:1] == ["D"] and len(w) == 5:
                frames.append((int(w[2]), int(w[3]), int(w[4])))
            elif w[:1] == ["T"] and len(w) == 5:
                ts.append(int(w[1]))
                sent.append(int(w[3]))
                acked.append(int(w[4]))

    def first_at(series, v):
        k = bisect.bisect_left(series, v)  # the counters never go down
        return ts[k] if k < len(ts) else None

    pieces = []
    for sid, end, n in frames:
        if sid not in types:
            continue
        for e in range(end, end - n, -PIECE):
            pieces.append((f"{key}:{sid}", first_at(sent, e), first_at(acked, e)))
    return [p for p in pieces if p[1] is not None], {f"{key}:{s}": t for s, t in types.items()}


def touching(drops, client, proto, t0, t1):
    """The drop times (ns) of every packet to or from the client over proto between t0 and
    t1, acknowledgements included: what the control points keep away from."""
    return sorted(t for t, src, dst, pr, _, _ in drops if client in (src, dst) and pr == proto
                  and t0 <= t <= t1)


def control_points(pieces, avoid_ns, window_ns, step_ns=None):
    """Times to judge like drops where nothing was dropped: a grid (every window/2) over the
    span the pieces were sent in, keeping out of [a - window, a + 3 window] around every
    avoided time a. The stalls there are the path's own jitter (the relay, the peers'
    scheduling, the acknowledgement pace): a drop's stalls count only beyond them."""
    sent = sorted(s for _, s, a in pieces if a is not None)
    if not sent:
        return []
    step = step_ns or max(window_ns // 2, 1)
    avoid = sorted(avoid_ns)
    out, t = [], sent[0] + window_ns
    while t < sent[-1] - window_ns:
        k = bisect.bisect_left(avoid, t - 3 * window_ns)
        if k == len(avoid) or avoid[k] > t + window_ns:
            out.append(t)
        t += step
    return out


def isolated(drops_ns, window_ns):
    """The drops with no other in the two windows before (the repair of an earlier loss
    takes about that long, its stream stalled meanwhile) nor in the window after (a stream
    that loses a packet there stalls on its own): at 1% loss a window holds another drop
    about half the time, and a stream stalled by its own loss is no victim of the judged
    drop's head-of-line blocking."""
    d = sorted(drops_ns)
    return [t for i, t in enumerate(d)
            if (i == 0 or t - d[i - 1] > 2 * window_ns) and
            (i == len(d) - 1 or d[i + 1] - t > window_ns)]


def stalls(pieces, types, drops_ns, window_ns, lead_ns=1_000_000):
    """For each drop: {'t': td, 'victim': stream, 'victim_type', 'others': [[stream, type,
    stall_ms]]}, drops with pieces of fewer than two streams around them left out (nothing
    to compare). Stall: the largest delay of the stream's pieces sent in [td - lead, td +
    window] beyond the median delay of all pieces. Pass isolated drops (isolated())."""
    done = sorted((s, a - s, k) for k, s, a in pieces if a is not None)
    if not done:
        return []
    base = statistics.median(d for _, d, _ in done)
    times = [s for s, _, _ in done]
    out = []
    for td in drops_ns:
        lo = bisect.bisect_left(times, td - lead_ns)
        hi = bisect.bisect_right(times, td + window_ns)
        worst = {}
        for s, d, k in done[lo:hi]:
            worst[k] = max(worst.get(k, 0), max(d - base, 0))
        if len(worst) < 2:
            continue
        victim = max(worst, key=lambda k: (worst[k], k))
        out.append({"t": td, "victim": victim, "victim_type": types.get(victim),
                    "others": [[k, types.get(k), round(v / 1e6, 3)]
                               for k, v in sorted(worst.items()) if k != victim]})
    return out


def pct(v, p):
    """Nearest-rank percentile (None if empty)."""
    if not v:
        return None
    v = sorted(v)
    return v[max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))]


def summary(records, stalled_ms):
    """Over drop records (of one system, several uploads; or control points'): how many were
    judged, the other streams' stalls (all of them, and the audio ones) p50, p90, p99 and
    max in ms, and the share of (drop, other stream) pairs stalled longer than
    stalled_ms."""
    others = [s for r in records for _, _, s in r["others"]]
    audio = [s for r in records for _, t, s in r["others"] if (t or "").startswith("audio/")]
    return {"drops": len(records), "pairs": len(others),
            "others_p50_ms": pct(others, 50), "others_p90_ms": pct(others, 90),
            "others_p99_ms": pct(others, 99), "others_max_ms": max(others, default=None),
            "audio_pairs": len(audio), "audio_p50_ms": pct(audio, 50),
            "audio_p90_ms": pct(audio, 90), "audio_p99_ms": pct(audio, 99),
            "stalled_ms": stalled_ms,
            "stalled_share": (sum(s > stalled_ms for s in others) / len(others)
                              if others else None)}
