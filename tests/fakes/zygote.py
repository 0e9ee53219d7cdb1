#!/usr/bin/env python3
"""A fork server for the fakes of the tests.

Starting a fake costs a Python interpreter and its imports (and, for the fake
Twilio, 4 MB of OpenAPI specs): about a tenth of a CPU second, paid by every
test twice, which on two cores was most of the test run's CPU. This process
pays it once: it imports fake_twilio and fake_llm (and parses the specs given
as its argument), then reads one JSON request per line on stdin and forks a
child that runs that fake's main() with the request's arguments, environment,
directory, stdout and stderr files, and answers {"pid": N} on stdout. The
harness (tests/lib/baton_harness.py) reads the fake's ready line from its
stdout file and stops it by pid. Children are reaped by the kernel (SIGCHLD
ignored here); the server exits at the end of its stdin.

Only the fork server is single-threaded when it forks (the fakes start their
threads in the child), so forking is safe.
"""

import json
import os
import random
import signal
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_llm  # noqa: E402
import fake_twilio  # noqa: E402
import twilio_conversations  # noqa: E402

FAKES = {"fake_llm": fake_llm, "fake_twilio": fake_twilio}


def child(req):
    """Runs in the forked child; never returns."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        for fd, to in ((null, 0), (out, 1), (err, 2)):
            os.dup2(fd, to)
            os.close(fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        os.environ.clear()
        os.environ.update(req["env"])
        os.chdir(req["cwd"])
        random.seed()  # not the fork server's sequence, shared by every child
        sys.argv = [req["module"] + ".py"] + req["args"]
        code = FAKES[req["module"]].main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code or 0)


def main():
    if len(sys.argv) > 1:
        twilio_conversations.preload_specs(sys.argv[1])
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(req)
        print(json.dumps({"pid": pid}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
