#!/usr/bin/env python3
"""baton's test runner: unit binaries (cmocka, TAP output) then integration tests.

Prints one line per test and ends with exactly one summary line,
"N passed, N failed", as CI expects. Exit status 0 only when nothing failed.

    tests/run.py --build build build/tests/test_envelope ...
    tests/run.py --build build --only http     # integration tests matching "http"
"""

import argparse
import os
import re
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# A unit binary that hangs is a failure, not a stuck CI.
UNIT_TIMEOUT_S = 120


def run_unit(path):
    name = os.path.basename(path)
    env = dict(os.environ, CMOCKA_MESSAGE_OUTPUT="TAP")
    try:
        p = subprocess.run([path], env=env, capture_output=True, text=True, timeout=UNIT_TIMEOUT_S)
        out, code = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out, code = (e.stdout or "") if isinstance(e.stdout, str) else "", -1
        out += "\n(timed out)"
    passed = failed = 0
    for line in out.splitlines():
        m = re.match(r"^(not ok|ok) \d+ - (.*)$", line)
        if not m:
            continue
        if m.group(1) == "ok":
            passed += 1
            print("PASS unit %s: %s" % (name, m.group(2)))
        else:
            failed += 1
            print("FAIL unit %s: %s" % (name, m.group(2)))
    if code != 0 and failed == 0:
        # Crashed or aborted outside a test: count it, show why.
        failed += 1
        print("FAIL unit %s: exited with %d" % (name, code))
    if failed:
        print("---- output of %s ----\n%s\n----" % (name, out[-6000:]))
    return passed, failed


class Result(unittest.TextTestResult):
    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def _line(self, word, test):
        print("%s integration %s (%.1fs)" % (word, test.id().replace("test_", "", 1),
                                            time.monotonic() - self._t0), flush=True)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._line("PASS", test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._line("FAIL", test)
        print(self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._line("FAIL", test)
        print(self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        print("SKIP integration %s: %s" % (test.id(), reason))


def run_integration(only):
    sys.path.insert(0, os.path.join(HERE, "lib"))
    sys.path.insert(0, os.path.join(HERE, "integration"))
    suite = unittest.defaultTestLoader.discover(os.path.join(HERE, "integration"),
                                                pattern="test_*.py",
                                                top_level_dir=os.path.join(HERE, "integration"))
    tests = []

    def flatten(s):
        for t in s:
            if isinstance(t, unittest.TestSuite):
                flatten(t)
            else:
                tests.append(t)
    flatten(suite)
    if only:
        tests = [t for t in tests if only in t.id()]
    runner = unittest.TextTestRunner(stream=open(os.devnull, "w"), resultclass=Result, verbosity=0)
    res = runner.run(unittest.TestSuite(tests))
    failed = len(res.failures) + len(res.errors)
    return res.testsRun - failed - len(res.skipped), failed, len(res.skipped)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--only", default=None, help="run only integration tests whose id contains this")
    ap.add_argument("--no-integration", action="store_true")
    ap.add_argument("units", nargs="*")
    a = ap.parse_args()
    os.environ["BATON_BIN"] = os.path.join(ROOT, a.build, "bin")

    passed = failed = skipped = 0
    if not a.only:
        for u in a.units:
            p, f = run_unit(u)
            passed += p
            failed += f
    if not a.no_integration:
        p, f, s = run_integration(a.only)
        passed += p
        failed += f
        skipped += s
    tail = ", %d skipped" % skipped if skipped else ""
    print("%d passed, %d failed%s" % (passed, failed, tail))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
