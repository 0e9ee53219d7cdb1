#!/usr/bin/env python3
"""baton's test runner: unit binaries (cmocka, TAP output) and integration tests.

Prints one line per test and ends with exactly one summary line,
"N passed, N failed", as CI expects. Exit status 0 only when nothing failed.

    tests/run.py --build build build/tests/test_envelope ...
    tests/run.py --build build --only http     # integration tests matching "http"
    tests/run.py --jobs 1 ...                   # one test at a time

Tests run in parallel: every integration test is one task (each already has
its own state directory, ports and processes; a class with setUpClass is one
task), given to
--jobs worker processes (default TEST_JOBS or 12: the tests mostly wait on
the processes they start, and their fakes are forked from a fork server
that has them loaded, tests/fakes/zygote.py), longest first by the durations of the last run
(build/test-times.json). A class that sets `serial = True` (it loads the
machine on purpose, or measures latency) runs alone after the others. The
unit binaries run in the same pool.

The core integration tests (POSTGRES_AGAIN) run a second time with the
state in PostgreSQL (BATON_TEST_BACKEND=postgres, lines marked
"[postgres]"), on one cluster this runner starts for the whole run
(tests/lib/pgcluster.py) and every pipeline a database of its own.
"""

import argparse
import atexit
import concurrent.futures
import io
import json
import os
import re
import subprocess
import sys
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# Tests that run against both backends (test id prefixes).
POSTGRES_AGAIN = ("test_pipeline.", "test_escalation.", "test_lifecycle.", "test_ctl.TestPurge",
                  "test_console.TestConsoleApi")
POSTGRES_MARK = " [postgres]"

# A unit binary that hangs is a failure, not a stuck CI.
UNIT_TIMEOUT_S = 120
DEFAULT_JOBS = 12


def run_unit(path):
    """(lines, passed, failed) of one cmocka binary."""
    name = os.path.basename(path)
    env = dict(os.environ, CMOCKA_MESSAGE_OUTPUT="TAP")
    try:
        p = subprocess.run([path], env=env, capture_output=True, text=True, timeout=UNIT_TIMEOUT_S)
        out, code = p.stdout + p.stderr, p.returncode
    except subprocess.TimeoutExpired as e:
        out, code = (e.stdout or "") if isinstance(e.stdout, str) else "", -1
        out += "\n(timed out)"
    lines, passed, failed = [], 0, 0
    for line in out.splitlines():
        m = re.match(r"^(not ok|ok) \d+ - (.*)$", line)
        if not m:
            continue
        if m.group(1) == "ok":
            passed += 1
            lines.append("PASS unit %s: %s" % (name, m.group(2)))
        else:
            failed += 1
            lines.append("FAIL unit %s: %s" % (name, m.group(2)))
    if code != 0 and failed == 0:
        # Crashed or aborted outside a test: count it, show why.
        failed += 1
        lines.append("FAIL unit %s: exited with %d" % (name, code))
    if failed:
        lines.append("---- output of %s ----\n%s\n----" % (name, out[-6000:]))
    return lines, passed, failed


class Result(unittest.TextTestResult):
    """Collects one line per test (and the traceback of a failure)."""
    mark = ""  # POSTGRES_MARK in a run against PostgreSQL

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.lines = []
        self.times = {}

    def startTest(self, test):
        self._t0 = time.monotonic()
        super().startTest(test)

    def _line(self, word, test, detail=None):
        secs = time.monotonic() - getattr(self, "_t0", time.monotonic())
        self.times[test.id() + self.mark] = secs
        self.lines.append("%s integration %s%s (%.1fs)" % (word, test.id().replace("test_", "", 1),
                                                         self.mark, secs))
        if detail:
            self.lines.append(detail)

    def addSuccess(self, test):
        super().addSuccess(test)
        self._line("PASS", test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._line("FAIL", test, self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._line("FAIL", test, self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.lines.append("SKIP integration %s%s: %s" % (test.id(), self.mark, reason))


def integration_path():
    sys.path.insert(0, os.path.join(HERE, "lib"))
    sys.path.insert(0, os.path.join(HERE, "integration"))


def discover(only):
    """{task id: [test ids]} of the integration tests, and the serial task ids. A
    task is one test, or a whole class when the class sets itself up once
    (setUpClass) or runs serially."""
    integration_path()
    suite = unittest.defaultTestLoader.discover(os.path.join(HERE, "integration"),
                                                pattern="test_*.py",
                                                top_level_dir=os.path.join(HERE, "integration"))
    classes, serial = {}, set()

    def flatten(s):
        for t in s:
            if isinstance(t, unittest.TestSuite):
                flatten(t)
            elif not only or only in t.id():
                cls = t.id().rsplit(".", 1)[0]
                k = type(t)
                whole = getattr(k, "serial", False) or \
                    k.setUpClass.__func__ is not unittest.TestCase.setUpClass.__func__
                task = cls if whole else t.id()
                classes.setdefault(task, []).append(t.id())
                if getattr(k, "serial", False):
                    serial.add(task)
    flatten(suite)
    return classes, serial


def run_class(ids, backend="lmdb"):
    """Runs one class's tests in this (worker) process: (lines, run, failed, skipped, times, out)."""
    integration_path()
    os.environ["BATON_TEST_BACKEND"] = backend
    Result.mark = POSTGRES_MARK if backend == "postgres" else ""
    captured = io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = captured   # a test's own prints stay with its lines
    try:
        suite = unittest.defaultTestLoader.loadTestsFromNames(ids)
        runner = unittest.TextTestRunner(stream=open(os.devnull, "w"), resultclass=Result,
                                         verbosity=0)
        res = runner.run(suite)
        failed = len(res.failures) + len(res.errors)
        return res.lines, res.testsRun, failed, len(res.skipped), res.times, captured.getvalue()
    except Exception:
        return (["FAIL integration %s: the runner could not run it\n%s"
                 % (ids[0].rsplit(".", 1)[0], traceback.format_exc())], 1, 1, 0, {},
                captured.getvalue())
    finally:
        sys.stdout, sys.stderr = old


def load_times(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--only", default=None, help="run only integration tests whose id contains this")
    ap.add_argument("--no-integration", action="store_true")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("TEST_JOBS", DEFAULT_JOBS)))
    ap.add_argument("units", nargs="*")
    a = ap.parse_args()
    os.environ["BATON_BIN"] = os.path.join(ROOT, a.build, "bin")
    # Every "python3" the tests start (the fakes' fork server, scripts/baton)
    # is this interpreter, first on PATH: the same version, and not a version
    # manager's shim, which cost 0.15 CPU seconds an exec.
    shim = os.path.join(ROOT, a.build, "test-python")
    try:
        os.makedirs(shim, exist_ok=True)
        link = os.path.join(shim, "python3")
        if os.path.realpath(link) != os.path.realpath(sys.executable):
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(sys.executable, link)
        os.environ["PATH"] = shim + os.pathsep + os.environ.get("PATH", "")
    except OSError:
        pass
    # Deadlines for something to happen stretch when tests share the cores
    # (and under the sanitizers); what must not happen is not affected.
    slow = (3.0 if a.jobs > 1 else 1.0) * (2.0 if "san" in a.build else 1.0)
    os.environ.setdefault("BATON_TEST_SLOW", "%g" % slow)
    times_path = os.path.join(ROOT, a.build, "test-times.json")
    # A build's first run orders its tests by another build's last one (the
    # same tests, slower or faster alike): the longest still start first.
    # A fresh clone has none: tests/durations.json, a normal build's times
    # kept in the repository, stops its longest tests from starting last.
    times = load_times(times_path) or next(
        (t for t in (load_times(os.path.join(ROOT, b, "test-times.json"))
                     for b in ("build", "build-san", "build-rel") if b != a.build) if t),
        None) or load_times(os.path.join(HERE, "durations.json")) or {}
    t0 = time.monotonic()

    passed = failed = skipped = 0
    classes, serial = discover(a.only) if not a.no_integration else ({}, set())
    units = [] if a.only else a.units

    # The core tests again against PostgreSQL: a task (backend, ids) each.
    tasks = {("lmdb", c): ids for c, ids in classes.items()}
    again = {c: ids for c, ids in classes.items()
             if c not in serial and any(c.startswith(p) for p in POSTGRES_AGAIN)}
    cluster = None
    if again:
        import pgcluster
        why = pgcluster.available()
        if why:
            print("FAIL integration postgres: cannot run the tests against PostgreSQL: %s" % why)
            failed += 1
        else:
            cluster = pgcluster.PgCluster().start()
            # Stopped however the run ends (a closed pipe, ^C): closing twice is harmless.
            atexit.register(cluster.close)
            os.environ["BATON_TEST_PG_PORT"] = str(cluster.port)
            tasks.update({("postgres", c): ids for c, ids in again.items()})

    def cost(task):
        mark = POSTGRES_MARK if task[0] == "postgres" else ""
        return sum(times.get(t + mark, 5.0) for t in tasks[task])
    parallel = sorted((t for t in tasks if t[1] not in serial), key=cost, reverse=True)
    new_times = dict(times)

    def report(lines, out=""):
        for line in lines:
            print(line, flush=True)
        if out.strip() and any(l.startswith("FAIL") for l in lines):
            print("---- output ----\n%s----" % out[-4000:], flush=True)
        elif out.strip():
            print(out.rstrip(), flush=True)

    with concurrent.futures.ProcessPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        futs = {pool.submit(run_unit, u): ("unit", u) for u in units}
        futs.update({pool.submit(run_class, tasks[t], t[0]): ("class", t) for t in parallel})
        for f in concurrent.futures.as_completed(futs):
            kind, _ = futs[f]
            if kind == "unit":
                lines, p, fl = f.result()
                report(lines)
                passed += p
                failed += fl
            else:
                lines, run, fl, sk, ts, out = f.result()
                report(lines, out)
                passed += run - fl - sk
                failed += fl
                skipped += sk
                new_times.update(ts)
    # Classes that load the machine or time things run alone.
    if cluster:
        cluster.close()
        del os.environ["BATON_TEST_PG_PORT"]  # serial classes start their own
    for c in sorted(serial):
        lines, run, fl, sk, ts, out = run_class(classes[c])
        report(lines, out)
        passed += run - fl - sk
        failed += fl
        skipped += sk
        new_times.update(ts)
    if not a.only:
        try:
            with open(times_path, "w") as f:
                json.dump(new_times, f, indent=0, sort_keys=True)
        except OSError:
            pass
    print("test run: %.0f s wall, %d jobs" % (time.monotonic() - t0, a.jobs))
    tail = ", %d skipped" % skipped if skipped else ""
    print("%d passed, %d failed%s" % (passed, failed, tail))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
