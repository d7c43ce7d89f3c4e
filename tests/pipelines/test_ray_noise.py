"""Ray's noise never reaches an ``elmo`` user; everything else does, in order.

The filter is tested on real file descriptors in a separate interpreter (Python writes, raw fd
writes and a child process's writes all pass through it); the commands are tested end to end
in tests/pipelines/commands/test_cli_verbose_secrets.py (a successful embed prints only its result line).
"""

import subprocess
import sys
import textwrap

from pipelines.ray_noise import NOISE

NOISE_LINES = [
    "[2026-12-01 10:36:43,846 E 18643 18643] core_worker.cc:2465: Actor with class name: 'MapWorker(X)' and ID: "
    "'8299' has constructor arguments in the object store and max_restarts > 0. If the arguments …",
    "\x1b[36m(PlacementGroupCleaner pid=16393)\x1b[0m Failed to query Ray Train Controller actor state.",
    "\x1b[36m(PlacementGroupCleaner pid=7)\x1b[0m ConnectionError: Found multiple active Ray instances",
    "2026-12-01 10:36:17,657\tWARNING authentication_token_setup.py:85 -- Token authentication is enabled for "
    "this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.",
    "2026-12-01 10:36:43,853\tWARNING utils.py:33 -- Truncating long operator name to 100 characters.",
    "\x1b[36m(RayTrainWorker pid=17723)\x1b[0m Progress bars disabled. To enable, set `ray.data…`",
    "\x1b[36m(RayTrainWorker pid=17696)\x1b[0m ✔️  Dataset train_0357_0 execution finished in 6.50 seconds",
    "\x1b[36m(RayTrainWorker pid=27930)\x1b[0m ✔️  Dataset valid_0357_0 execution finished in 4.11 seconds "
    "\x1b[32m[repeated 2x across cluster] (Ray deduplicates logs by default. Set RAY_DEDUP_LOGS=0 …)\x1b[0m",
]
KEPT_LINES = [
    "elmo embed: error: s3://b/a.txt.gz: corrupt or truncated gzip data",
    "\x1b[36m(RayTrainWorker pid=17696)\x1b[0m step 60/60 loss 6.4772 ppl 650.1",
    "2026-12-01 10:36:58,556\tWARNING streaming_executor.py:99 -- Object store is full: spilling",
    "Traceback (most recent call last):",
    "[2026-12-01 10:36:43,846 E 18643 18643] core_worker.cc:900: Worker crashed unexpectedly",
]


def test_noise_pattern_matches_the_noise_and_nothing_else():
    assert all(NOISE.search(line.encode()) for line in NOISE_LINES)
    assert not any(NOISE.search(line.encode()) for line in KEPT_LINES)


def test_noise_filter_drops_noise_from_every_writer_and_keeps_the_rest_in_order():
    script = textwrap.dedent(f"""
        import os, subprocess, sys, time
        from pipelines.ray_noise import NoiseFilter
        noise, kept = {NOISE_LINES!r}, {KEPT_LINES!r}
        print("before", file=sys.stderr, flush=True)
        with NoiseFilter():
            for a, b in zip(noise, kept):
                print(a, file=sys.stderr, flush=True)         # Python
                os.write(2, (b + "\\n").encode())               # C-level, this process
            subprocess.run(["sh", "-c", 'printf "%s\\\\n%s\\\\n" "$0" "$1" >&2', noise[0], "from a child"], check=True)
            os.write(2, b"\\r 50%|##   |")                      # a progress bar: no newline
            time.sleep(0.6)
            os.write(2, b"\\r100%|#####|\\n")
            print("last", file=sys.stderr)                      # unflushed at close: still passed on
        os.write(2, b"after\\n")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr.decode() == "\n".join(
        ["before", *KEPT_LINES, "from a child", "\r 50%|##   |\r100%|#####|", "last", "after", ""])
