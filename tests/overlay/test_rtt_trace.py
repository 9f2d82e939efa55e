"""bench/overlay/rtt_trace.py's reading of a perf trace (no root): the events of one echo
request through the overlay, as `perf script -F comm,pid,cpu,time,event,trace` prints them
(taken from a run of the tool, other processes' events included), become round trips of the
ping and the two daemons only, and the table gives each step's least and median time."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench" / "overlay"))
import rtt_trace  # noqa: E402

# one round trip: ping 6308 in gA, daemons 6216 (gA) and 6232 (gB); 6406 is another daemon
# on the machine, clang and rcu_exp_gp_kthr other work
TRIP = """\
ping  6308 [000] 62544.054541:     syscalls:sys_enter_sendto: fd: 0x00000003
ping  6308 [000] 62544.054578:             net:net_dev_queue: dev=ov0 skbaddr=0xffff88811353fe00 len=104
ping  6308 [000] 62544.054587:            sched:sched_waking: comm=peak pid=6216 prio=120 target_cpu=001
ping  6308 [000] 62544.054610:      syscalls:sys_exit_sendto: 0x40
ping  6308 [000] 62544.054613:    syscalls:sys_enter_recvmsg: fd: 0x00000003
ping  6308 [000] 62544.054618:            sched:sched_switch: prev_comm=ping prev_pid=6308 prev_prio=120 prev_state=S ==> next_comm=clang next_pid=6283
peak  6406 [001] 62544.054623:            sched:sched_switch: prev_comm=peak prev_pid=6406 prev_prio=120 prev_state=R ==> next_comm=peak next_pid=6216
peak  6216 [001] 62544.054644:  syscalls:sys_exit_epoll_wait: 0x1
peak  6216 [001] 62544.054654:       syscalls:sys_enter_read: fd: 0x00000006
peak  6216 [001] 62544.054665:        syscalls:sys_exit_read: 0x72
peak  6216 [001] 62544.054668:       syscalls:sys_enter_read: fd: 0x00000006
peak  6216 [001] 62544.054669:        syscalls:sys_exit_read: 0xfffffffffffffff5
peak  6216 [001] 62544.054686:   syscalls:sys_enter_sendmmsg: fd: 0x00000008
peak  6216 [001] 62544.054713:             net:net_dev_queue: dev=wan skbaddr=0xffff888328f16800 len=190
peak  6216 [001] 62544.054717:         net:netif_receive_skb: dev=ra skbaddr=0xffff888328f16800 len=176
peak  6216 [001] 62544.054727:             net:net_dev_queue: dev=rb skbaddr=0xffff888328f16800 len=190
peak  6216 [001] 62544.054730:         net:netif_receive_skb: dev=wan skbaddr=0xffff888328f16800 len=176
peak  6216 [001] 62544.054743:            sched:sched_waking: comm=peak pid=6232 prio=120 target_cpu=001
peak  6216 [001] 62544.054750:    syscalls:sys_exit_sendmmsg: 0x1
peak  6216 [001] 62544.054755: syscalls:sys_enter_epoll_wait: epfd: 0x00000005, events: 0x7ffe2b7d9630, maxevents: 0x00000010, timeout: 0xffffffff
peak  6216 [001] 62544.054759:            sched:sched_switch: prev_comm=peak prev_pid=6216 prev_prio=120 prev_state=S ==> next_comm=peak next_pid=6232
peak  6232 [001] 62544.054767:  syscalls:sys_exit_epoll_wait: 0x1
peak  6232 [001] 62544.054777:   syscalls:sys_enter_recvmmsg: fd: 0x00000008
peak  6232 [001] 62544.054785:    syscalls:sys_exit_recvmmsg: 0x1
peak  6232 [001] 62544.054800:     syscalls:sys_enter_writev: fd: 0x00000006
peak  6232 [001] 62544.054810:         net:netif_receive_skb: dev=ov0 skbaddr=0xffff888328f16300 len=104
peak  6232 [001] 62544.054830:             net:net_dev_queue: dev=ov0 skbaddr=0xffff888328f16200 len=104
peak  6232 [001] 62544.054837:      syscalls:sys_exit_writev: 0x72
peak  6232 [001] 62544.054838: syscalls:sys_enter_epoll_wait: epfd: 0x00000005, events: 0x7ffe5f8a8810, maxevents: 0x00000010, timeout: 0xffffffff
peak  6232 [001] 62544.054841:  syscalls:sys_exit_epoll_wait: 0x1
peak  6232 [001] 62544.054842:       syscalls:sys_enter_read: fd: 0x00000006
peak  6232 [001] 62544.054844:        syscalls:sys_exit_read: 0x72
peak  6232 [001] 62544.054846:       syscalls:sys_enter_read: fd: 0x00000006
peak  6232 [001] 62544.054847:        syscalls:sys_exit_read: 0xfffffffffffffff5
peak  6232 [001] 62544.054851:   syscalls:sys_enter_sendmmsg: fd: 0x00000008
peak  6232 [001] 62544.054858:             net:net_dev_queue: dev=wan skbaddr=0xffff888328f16200 len=190
peak  6232 [001] 62544.054861:         net:netif_receive_skb: dev=rb skbaddr=0xffff888328f16200 len=176
peak  6232 [001] 62544.054865:             net:net_dev_queue: dev=ra skbaddr=0xffff888328f16200 len=190
peak  6232 [001] 62544.054867:         net:netif_receive_skb: dev=wan skbaddr=0xffff888328f16200 len=176
peak  6232 [001] 62544.054872:            sched:sched_waking: comm=peak pid=6216 prio=120 target_cpu=001
peak  6232 [001] 62544.054877:            sched:sched_switch: prev_comm=peak prev_pid=6232 prev_prio=120 prev_state=R+ ==> next_comm=peak next_pid=6216
peak  6216 [001] 62544.054880:  syscalls:sys_exit_epoll_wait: 0x1
peak  6216 [001] 62544.054883:   syscalls:sys_enter_recvmmsg: fd: 0x00000008
peak  6216 [001] 62544.054886:    syscalls:sys_exit_recvmmsg: 0x1
peak  6216 [001] 62544.054892:     syscalls:sys_enter_writev: fd: 0x00000006
peak  6216 [001] 62544.054895:         net:netif_receive_skb: dev=ov0 skbaddr=0xffff888328f16300 len=104
peak  6216 [001] 62544.054903:            sched:sched_waking: comm=ping pid=6308 prio=120 target_cpu=000
peak  6216 [001] 62544.054926:      syscalls:sys_exit_writev: 0x72
peak  6216 [001] 62544.054928: syscalls:sys_enter_epoll_wait: epfd: 0x00000005, events: 0x7ffe2b7d9630, maxevents: 0x00000010, timeout: 0xffffffff
peak  6216 [001] 62544.054932:            sched:sched_switch: prev_comm=peak prev_pid=6216 prev_prio=120 prev_state=S ==> next_comm=peak next_pid=6232
peak  6232 [001] 62544.054934:    syscalls:sys_exit_sendmmsg: 0x1
peak  6232 [001] 62544.054936: syscalls:sys_enter_epoll_wait: epfd: 0x00000005, events: 0x7ffe5f8a8810, maxevents: 0x00000010, timeout: 0xffffffff
clang  6283 [000] 62544.054939:            sched:sched_switch: prev_comm=clang prev_pid=6283 prev_prio=120 prev_state=R ==> next_comm=ping next_pid=6308
peak  6232 [001] 62544.054940:            sched:sched_switch: prev_comm=peak prev_pid=6232 prev_prio=120 prev_state=S ==> next_comm=rcu_exp_gp_kthr next_pid=17
rcu_exp_gp_kthr    17 [001] 62544.054957:            sched:sched_switch: prev_comm=rcu_exp_gp_kthr prev_pid=17 prev_prio=120 prev_state=D ==> next_comm=peak next_pid=6406
ping  6308 [000] 62544.054958:     syscalls:sys_exit_recvmsg: 0x40
"""
DAEMONS = {6216, 6232}


def shifted(text, us, slow_step=None, extra_us=0.0):
    """text with every time moved by us; from the line containing slow_step on, extra_us more."""
    out, late = [], 0.0
    for line in text.splitlines():
        if slow_step and slow_step in line:
            late = extra_us
        head, t, rest = line.partition(" [0")
        stamp, _, tail = rest.partition(":")
        cpu, _, ts = stamp.partition("] ")
        out.append(f"{head} [0{cpu}] {float(ts) + (us + late) / 1e6:.6f}:{tail}")
    return "\n".join(out)


def test_round_trips_keep_ping_and_daemons_only():
    trs = rtt_trace.trips(rtt_trace.events(TRIP), DAEMONS)
    assert len(trs) == 1
    t = trs[0]
    # a switch is the event of the process switched from (6406, clang): kept if to ours
    assert {e[2] for e in t if e[3] != "sched_switch"} == {6308, 6216, 6232}
    assert t[0][3] == "sys_enter_sendto" and t[-1][3] == "sys_exit_recvmsg"
    names = [rtt_trace.step(e) for e in t]
    assert "switch to peak/6216" in names and "switch to clang/6283" not in names
    assert "peak/6232 net_dev_queue ov0" in names  # the echo reply, made inside gB's writev
    assert "ping/6308 wakes peak/6216" in names


def test_table_least_and_median_per_step():
    # a second round trip 10 ms later whose sendmmsg in gA starts 30 us later
    text = TRIP + shifted(TRIP, 10000, "62544.054686", 30.0)
    rows, total, n, ntrips = rtt_trace.table(rtt_trace.trips(rtt_trace.events(text), DAEMONS))
    assert (n, ntrips) == (2, 2)
    assert rows[0][0] == "ping/6308 sys_enter_sendto"
    step = {name: (lo, med) for name, lo, med in rows if name.endswith("sys_enter_sendmmsg")}
    lo, med = step["peak/6216 sys_enter_sendmmsg"]
    assert round(lo) == 17 and round(med) == 47  # 54669 -> 54686 us, and 30 us more
    assert round(total[0]) == 417 and round(total[1]) == 447


def test_no_trips():
    assert rtt_trace.table([]) == ([], (0.0, 0.0), 0, 0)
