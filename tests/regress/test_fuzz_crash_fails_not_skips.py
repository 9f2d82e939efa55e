"""A libFuzzer target that crashed was counted as a skipped test, not a failure: libFuzzer
exits 77 on a crash unless -error_exitcode says otherwise, and meson reads 77 as 'skipped'.
So fuzz-desc's crash (a descriptor compared with memcmp over undefined padding) showed as
SKIP in a green run. tests/fuzz/run_fuzz.sh must make libFuzzer exit with a failure code.
The target here is a stand-in that behaves as libFuzzer documents: 77 on a crash, or the
value of -error_exitcode when given."""
import os
import subprocess
import textwrap

SRC = os.environ.get("PEAK_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))


def test_a_crash_is_a_failure_to_meson(tmp_path):
    fake = tmp_path / "fuzz_fake"
    fake.write_text(textwrap.dedent("""\
        #!/bin/sh
        code=77
        for a in "$@"; do
        	case "$a" in -error_exitcode=*) code=${a#-error_exitcode=} ;; esac
        done
        echo "==1== ERROR: libFuzzer: deadly signal" >&2
        exit "$code"
        """))
    fake.chmod(0o755)
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    p = subprocess.run(["sh", os.path.join(SRC, "tests/fuzz/run_fuzz.sh"), str(fake),
                        str(seeds), str(tmp_path / "work"), "1"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode not in (0, 77), p.returncode  # 77 is meson's 'skipped'
