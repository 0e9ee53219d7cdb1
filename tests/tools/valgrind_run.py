#!/usr/bin/env python3
"""Runs the five baton processes under valgrind (memcheck) through a load of N
webhooks with one escalation, stops them with SIGTERM and prints each
process's heap summary. Run it at two loads to see that nothing grows:

    python3 tests/tools/valgrind_run.py 30
    python3 tests/tools/valgrind_run.py 120
"""

import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from baton_harness import PROCS, ROOT, Pipeline, wait_for  # noqa: E402


def wrappers(real_bin, logdir):
    """A bin directory whose baton-* run under valgrind, logging to logdir."""
    d = tempfile.mkdtemp(prefix="baton-vgbin-")
    for exe in list(PROCS.values()) + ["batonctl"]:
        path = os.path.join(d, exe)
        with open(path, "w") as f:
            f.write("#!/bin/sh\nexec valgrind --leak-check=full --log-file=%s/%s-%%p.log %s \"$@\"\n"
                    % (logdir, exe, os.path.join(real_bin, exe)))
        os.chmod(path, 0o755)
    return d


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    logdir = tempfile.mkdtemp(prefix="baton-vglogs-")
    p = Pipeline(bindir=wrappers(os.path.join(ROOT, "build", "bin"), logdir))
    try:
        p.start_all()
        texts = ["Where is the clinic?", "What are your opening hours?", "Do you see children?"]
        for i in range(n):
            body = "humano" if i == 7 else texts[i % 3]
            st = p.send("whatsapp:+55119%08d" % (i % 25), body)[0]
            assert st == 200, st
        wait_for(lambda: len(p.sent_messages()) >= n * 0.8, 300, interval=1, what="replies")
        time.sleep(3)
    finally:
        p.close()
    bad = 0
    for f in sorted(os.listdir(logdir)):
        text = open(os.path.join(logdir, f)).read()
        use = re.search(r"in use at exit: ([\d,]+) bytes", text)
        errs = re.search(r"ERROR SUMMARY: (\d+) errors", text)
        name = re.sub(r"-\d+\.log$", "", f)
        print("%-18s in use at exit: %s bytes, errors: %s" % (name, use.group(1) if use else "?",
                                                             errs.group(1) if errs else "?"))
        if not use or use.group(1) != "0" or not errs or errs.group(1) != "0":
            bad += 1
    print("valgrind: %d messages, %s" % (n, "clean" if not bad else "%d processes not clean" % bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
