"""The agent took blocks with a sign, and the rest of a line with a bad block.

Seen: the agent parsed each block of a controller's `ep` line with sscanf("%u/%u"), which
accepts "-1" (as 4294967295) and "+64", and it skipped a block it could not use but kept the
others of the same line, so a garbled line half-applied.

Now each line goes through the control-line grammar (include/peak/ctlproto.h: decimal digits
only, blocks aligned), then the agent checks that every block lies in the service's space; a
line with any bad block is refused whole (logged, rate-limited)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cluster"))
from agentns import agent_ns, wait_until  # noqa: E402


def test_a_bad_block_refuses_the_whole_line(tmp_path):
    with agent_ns(tmp_path, "rgep") as ns:
        agent = ns.start_agent()
        c = ns.accept()
        c.send("map b.svc.example.",
               "ep b1 -1/7 0/7",       # a sign: refused, 0/7 with it
               "ep b2 128/7",          # good
               "ep b3 +64/6",          # a sign
               "ep b4 192/6 0192/6",   # a leading zero
               "ep b4 192/6 193/0x",   # not a number
               "ep b4 192/6  64/6",    # two spaces: an empty token
               "ep b4 256/6",          # past the service's 256 slices
               "ep b4 65/6",           # not aligned to its block
               "ep b1 0/7\x00 64/6",   # a NUL byte in the line
               "end")
        want = {("fd00:b:0:0:8000::/65", "fd00:1::b2")}

        def b_routes():
            return {r for r in ns.routes() if r[0].startswith("fd00:b:")}
        assert wait_until(lambda: b_routes() == want or agent.poll() is not None)
        assert b_routes() == want
        assert agent.poll() is None
        # the first refusal is logged (the rest of that second are counted), with why
        assert "controller line refused (not a control line): 'ep b1 -1/7 0/7'" in \
            ns.log.read_text()
        assert agent.poll() is None
        # the link still works: a good map after the refused lines
        c.send("map b.svc.example.", "ep b1 0/7", "ep b2 128/7", "end")
        want = {("fd00:b::/65", "fd00:1::b1"), ("fd00:b:0:0:8000::/65", "fd00:1::b2")}
        assert wait_until(lambda: b_routes() == want)
        c.close()
