"""DNS control socket: its permissions followed the umask.

Seen: under umask 000 the control socket was created 0777, so any local user could mark
endpoints down or change weights. Now its mode is set explicitly, 0660 unless
--control-mode says otherwise, and --control-group sets its group; the umask plays no
part."""
import os
import stat
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from peaktest import Server  # noqa: E402


def start(tmp_path, *extra):
    old = os.umask(0)  # the server inherits it
    try:
        return Server(tmp_path, extra=extra)
    finally:
        os.umask(old)


def test_default_mode_is_0660_whatever_the_umask(tmp_path):
    s = start(tmp_path)
    try:
        st = os.stat(s.control)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
        assert s.ctl("status").returncode == 0
    finally:
        s.stop()
    assert s.proc.returncode == 0, s.logtext()


def test_mode_and_group_options(tmp_path):
    gid = 4242 if os.getgid() != 4242 else 4243
    s = start(tmp_path, "--control-mode", "0600", "--control-group", str(gid))
    try:
        st = os.stat(s.control)
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        assert st.st_gid == gid
        assert s.ctl("status").returncode == 0
    finally:
        s.stop()
    assert s.proc.returncode == 0, s.logtext()
