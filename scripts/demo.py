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


def router_lines(p, since, words):
    out = []
    for line in p.log_lines("router")[since:]:
        msg = line.get("msg", "")
        if any(w in msg for w in words):
            out.append(msg)
    return out


def handoff(p, text):
    """The escalation: rule match, atomic handoff, Flex pipeline, mode human."""
    say("customer", CYAN, "(%s) %s" % (NAME, text))
    mark = len(p.log_lines("router"))
    llm_before = len(p.llm_requests())
    before = len(p.sent_messages(CUSTOMER))
    st, _, _ = p.send(CUSTOMER, text, name=NAME)
    if st != 200:
        raise SystemExit("ingress answered %d" % st)
    msgs = wait_for(lambda: len(p.sent_messages(CUSTOMER)) > before and p.sent_messages(CUSTOMER),
                    15, what="the holding message")
    for line in router_lines(p, mark, ["escalating"]):
        note("router: " + line)
    note("mode: ai -> escalating (holding message, Flex job and mode in one LMDB commit)")
    for m in msgs[before:]:
        say("baton", GREEN, m["Body"])
    wait_for(lambda: p.log_contains("router", "handoff done"), 20, what="the Flex task")
    calls = p.fake_get("twilio", "/_fake/requests")
    for r in calls:
        if r["path"].startswith("/v1/"):
            note("flex-worker -> Twilio %s %s -> %s" % (r["method"], r["path"], r["status"]))
    state = p.fake_get("twilio", "/_fake/state")
    inter = state["interactions"]
    inter = list(inter.values()) if isinstance(inter, dict) else inter
    convs = state["conversations"]
    convs = list(convs.values()) if isinstance(convs, dict) else convs
    ours = [c for c in convs if (c.get("unique_name") or "").startswith("baton-")]
    if ours:
        note("the agent's thread in Flex (%s):" % ours[0]["sid"])
        for m in ours[0].get("messages", []):
            who = "customer" if m["author"] == CUSTOMER else m["author"]
            note("    %-9s %s" % (who + ":", m["body"][:90]))
    req = [r for r in calls if r["path"] == "/v1/Interactions"][-1]
    import json
    attrs = json.loads(req["form"]["Routing"][0])["properties"]["attributes"]
    note("task attributes: " + json.dumps(attrs, ensure_ascii=False))
    for line in router_lines(p, mark, ["handoff done"]):
        note("router: " + line)
    say("operator", YELLOW, "mode is now human: the AI stays silent (%d LLM calls since)"
        % (len(p.llm_requests()) - llm_before))
    if not inter:
        raise SystemExit("no interaction was created")


def main():
    p = Pipeline()
    try:
        p.start_all()
        print("%sbaton demo%s — Clínica Sol on WhatsApp (sandbox: fake Twilio + fake LLM on loopback)"
              % (BOLD, RESET))
        for name in ("ingress", "router", "ai-worker", "egress", "flex-worker"):
            note("%-11s pid %d" % (name, p.procs[name].pid))
        note("state: %s" % os.path.join(p.dir, "state"))
        print()
        turn(p, "Hi! Where is the clinic located?")
        turn(p, "What specialties do you have, and what are your opening hours?")
        print()
        say("operator", YELLOW, "kill -9 router  (state lives in LMDB)")
        p.stop("router", signal.SIGKILL)
        p.start("router")
        p.wait_workers(2)
        note("router restarted, pid %d; workers reconnected" % p.procs["router"].pid)
        print()
        turn(p, "Do you see children too?")
        last = p.llm_requests()[-1]["json"]["messages"]
        note("the last LLM call carried %d turns of history: nothing was lost" % len(last))
        print()
        handoff(p, "I want to speak with a human")
        print()
        print("%sdone%s: %d customer messages, %d WhatsApp messages out, 1 Flex task, "
              "5 processes" % (BOLD, RESET, 4, len(p.sent_messages(CUSTOMER))))
        return 0
    except (AssertionError, SystemExit) as e:
        print("demo failed: %s (logs kept in %s)" % (e, p.dir), file=sys.stderr)
        p.keep = True
        return 1
    finally:
        p.close()


if __name__ == "__main__":
    sys.exit(main())
