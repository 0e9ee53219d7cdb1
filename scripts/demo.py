#!/usr/bin/env python3
"""make demo: the clinic conversation of the seed article, through every baton process.

Starts the fake Twilio and fake LLM, then router, ai-worker, egress and ingress
as separate processes, plays the customer's side as signed Twilio webhooks and
prints the transcript as the replies reach (fake) Twilio. Stops everything it
started and exits 0 on success, 1 if a reply did not arrive.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
from baton_harness import Pipeline, wait_for  # noqa: E402

CUSTOMER = "whatsapp:+5511988887777"
NAME = "Ana"

BOLD, DIM, CYAN, GREEN, YELLOW, RESET = "\033[1m", "\033[2m", "\033[36m", "\033[32m", "\033[33m", "\033[0m"
if not sys.stdout.isatty():
    BOLD = DIM = CYAN = GREEN = YELLOW = RESET = ""


def say(prefix, color, text):
    print("%s%-12s%s %s" % (color, prefix, RESET, text), flush=True)


def note(text):
    print("%s   · %s%s" % (DIM, text, RESET), flush=True)


def turn(p, text):
    say("customer", CYAN, "(%s) %s" % (NAME, text))
    before = len(p.sent_messages(CUSTOMER))
    t0 = time.monotonic()
    st, _, _ = p.send(CUSTOMER, text, name=NAME)
    note("ingress answered %d (stored in LMDB) in %.0f ms" % (st, (time.monotonic() - t0) * 1000))
    if st != 200:
        raise SystemExit("ingress answered %d" % st)
    msgs = wait_for(lambda: len(p.sent_messages(CUSTOMER)) > before and p.sent_messages(CUSTOMER),
                    15, what="the AI's reply")
    for m in msgs[before:]:
        say("ai", GREEN, m["Body"])
        note("router -> ai-worker -> LLM -> router -> egress -> Twilio %s in %.0f ms"
             % (m["sid"], (time.monotonic() - t0) * 1000))


def main():
    p = Pipeline()
    try:
        p.start_all()
        print("%sbaton demo%s — Clínica Sol on WhatsApp (sandbox: fake Twilio + fake LLM on loopback)"
              % (BOLD, RESET))
        for name in ("ingress", "router", "ai-worker", "egress"):
            note("%-9s pid %d" % (name, p.procs[name].pid))
        note("state: %s" % os.path.join(p.dir, "state"))
        print()
        turn(p, "Hi! Where is the clinic located?")
        turn(p, "What specialties do you have, and what are your opening hours?")
        print()
        say("operator", YELLOW, "kill -9 router  (state lives in LMDB)")
        p.stop("router", signal.SIGKILL)
        p.start("router")
        wait_for(lambda: p.log_text("router").count("egress worker joined") >= 2 and
                 p.log_text("router").count("ai worker joined") >= 2, 10, what="workers rejoined")
        note("router restarted, pid %d; workers reconnected" % p.procs["router"].pid)
        print()
        turn(p, "Thanks! Is the dermatology team there on Tuesdays?")
        last = p.llm_requests()[-1]["json"]["messages"]
        note("the last LLM call carried %d turns of history: nothing was lost" % len(last))
        print()
        print("%sdone%s: %d messages in, %d replies out through 4 processes"
              % (BOLD, RESET, 3, len(p.sent_messages(CUSTOMER))))
        return 0
    except (AssertionError, SystemExit) as e:
        print("demo failed: %s (logs kept in %s)" % (e, p.dir), file=sys.stderr)
        p.keep = True
        return 1
    finally:
        p.close()


if __name__ == "__main__":
    sys.exit(main())
