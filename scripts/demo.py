#!/usr/bin/env python3
"""make demo: the clinic session of the seed article, through every baton process.

Starts the sandbox (fake Twilio with a simulated Flex agent, fake LLM) and the
five baton processes on loopback, then plays the customer's side as WhatsApp
messages that the fake Twilio routes like Twilio does: to baton's Messaging
webhook, or into the agent's Flex conversation once the customer is bound to
it. Ana sends a photo of her rash (a MessageType=image webhook whose MediaUrl0
is the fake Twilio's copy of tests/fixtures/media/rash.jpg): the ai-worker
downloads it and the model answers about it, and after the escalation the
agent's Flex thread has the photo attached (uploaded to the Media Content
Service). Prints who said what and every mode change, stops everything it
started, and exits 0 on success, 1 if something did not happen.

The photo is checked twice: an image block reached the model, and the
photo is attached in the agent's Flex thread.

    scripts/demo.py [--capture DIR] [--sid-seed S] [--transcript-out FILE]

--capture DIR (or BATON_CAPTURE_DIR=DIR make demo) makes ingress append
every accepted webhook to capture files in DIR, for build/bin/baton-replay.
--sid-seed S (or FAKE_TWILIO_SID_SEED=S) makes the fake Twilio's SIDs
deterministic: a fresh pipeline whose fake has the same seed (and its agent
off) creates the same Flex conversation and task, so the capture's Flex
events replay too (tests/integration/test_replay.py, TestDemoCapture).
--transcript-out FILE writes `batonctl --json show` of the customer's
conversation at the end, to compare with the replay's.
"""

import argparse
import json
import os
import signal
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
from baton_harness import MEDIA_JPEG, Pipeline, media_fixture, wait_for  # noqa: E402

CUSTOMER = "whatsapp:+5511988887777"
NAME = "Ana"
AGENT = "Gonzalo"
GREETING = "Hi, good afternoon, I'm Gonzalo, how can I help you?"
CONFIRM = "Done: your dermatology appointment is on Tuesday at 10:00. Anything else?"
CAPTION = "This is the rash on my arm"

BOLD, DIM, CYAN, GREEN, MAGENTA, YELLOW, RESET = ("\033[1m", "\033[2m", "\033[36m", "\033[32m",
                                                  "\033[35m", "\033[33m", "\033[0m")
if not sys.stdout.isatty():
    BOLD = DIM = CYAN = GREEN = MAGENTA = YELLOW = RESET = ""


def say(who, color, text):
    print("%s%-16s%s %s" % (color, who, RESET, text), flush=True)


def note(text):
    print("%s                 · %s%s" % (DIM, text, RESET), flush=True)


def attachment(m):
    """A Conversations message's media as the demo prints it."""
    return ", ".join("[photo attached: %s, %d bytes, MediaSid %s]" % (x["content_type"], x["size"], x["sid"])
                     for x in m["media"])


class Demo:
    def __init__(self, p):
        self.p = p
        self.seen = 0
        self.mode = "ai"
        self.last_reply = ""

    def received(self):
        return self.p.whatsapp(CUSTOMER)

    def show_new(self, want, timeout=15):
        """Print what reached the customer's WhatsApp since last time (at least want)."""
        msgs = wait_for(lambda: len(self.received()) >= self.seen + want and self.received(),
                        timeout, what="%d message(s) to the customer" % want)
        for m in msgs[self.seen:]:
            self.last_reply = m["body"]
            if m.get("via") == "conversation":
                say("agent (%s)" % m.get("author", AGENT), MAGENTA, m["body"])
            elif self.mode == "ai":
                say("ai", GREEN, m["body"])
            else:
                say("baton", GREEN, m["body"])
        self.seen = len(msgs)

    def mode_now(self):
        return self.p.show(CUSTOMER)["mode"]

    def wait_mode(self, mode, why):
        wait_for(lambda: self.mode_now() == mode, 20, what="mode " + mode)
        say("mode", YELLOW, "%s -> %s  (%s)" % (self.mode, mode, why))
        self.mode = mode

    def customer(self, text, want=1, media=None):
        shown = text
        if media:
            shown = "[photo: image/jpeg, %d bytes] %s" % (len(media_fixture("rash.jpg")), text)
        say("customer (%s)" % NAME, CYAN, shown)
        t0 = time.monotonic()
        r = self.p.customer(CUSTOMER, text, name=NAME, media=media)
        where = ("into the Flex conversation (Twilio routes a bound customer there)"
                 if r["routed"] == "conversation" else "to ingress, 200 after the LMDB commit")
        note("Twilio -> %s in %.0f ms" % (where, (time.monotonic() - t0) * 1000))
        if want:
            self.show_new(want)


def main():
    ap = argparse.ArgumentParser(description="baton's clinic demo")
    # The harness drops the caller's BATON_* variables, so this one is passed on explicitly.
    ap.add_argument("--capture", metavar="DIR", default=os.environ.get("BATON_CAPTURE_DIR"),
                    help="leave a capture of every accepted webhook in DIR (baton-replay)")
    ap.add_argument("--sid-seed", metavar="S", default=os.environ.get("FAKE_TWILIO_SID_SEED"),
                    help="deterministic SIDs in the fake Twilio (replaying the capture into a "
                         "fresh run with the same seed reproduces the Flex part too)")
    ap.add_argument("--transcript-out", metavar="FILE",
                    help="write `batonctl --json show` of the customer's conversation to FILE "
                         "at the end")
    args = ap.parse_args()
    env = {"BATON_CAPTURE_DIR": os.path.abspath(args.capture)} if args.capture else None
    p = Pipeline(env=env, sid_seed=args.sid_seed or None)
    try:
        p.start_all()
        p.agent(identity=AGENT, accept_after_ms=300, greeting=GREETING, reply_delay_ms=400,
                replies=[{"match": ["dermatolog", "tuesday"], "reply": CONFIRM, "close_after": True}])
        d = Demo(p)
        print("%sbaton demo%s — Clínica Sol on WhatsApp (sandbox: fake Twilio + Flex agent + fake LLM)"
              % (BOLD, RESET))
        for name in ("ingress", "router", "ai-worker", "egress", "flex-worker"):
            note("%-11s pid %d" % (name, p.procs[name].pid))
        print()
        d.customer("Hi! Where is the clinic located?")
        d.customer("What specialties do you have, and what are your opening hours?")

        say("operator", YELLOW, "kill -9 router  (all state is in LMDB)")
        p.stop("router", signal.SIGKILL)
        p.start("router")
        p.wait_workers(2)
        note("router restarted, pid %d; the workers reconnected" % p.procs["router"].pid)

        # A photo with a caption: the model is shown the photo itself.
        calls = len(p.llm_requests())
        d.customer(CAPTION, media=[MEDIA_JPEG])
        fetched = [f for f in p.media_fetches(MEDIA_JPEG) if f.get("media_bytes")]
        if fetched:
            note("ai-worker -> Twilio GET …/Media/%s -> %d (%d bytes, basic auth as the account)"
                 % (MEDIA_JPEG, fetched[0]["status"], fetched[0]["media_bytes"]))
        blocks = [b for b in p.llm_media_blocks("image") if b["seq"] > calls]
        assert blocks, "the model was not shown the photo"
        assert "photo" in d.last_reply, "the AI did not answer about the photo: " + d.last_reply
        note("ai-worker -> LLM: the photo as an %s block (%s, %d bytes) beside the caption"
             % (blocks[0]["type"], blocks[0]["media_type"], blocks[0]["bytes"]))

        d.customer("I want to speak with a human", want=0)
        d.mode = "escalating"
        say("mode", YELLOW, "ai -> escalating  (rule: 'human'; holding message, Flex job and mode "
            "in one commit)")
        d.show_new(1)
        wait_for(lambda: p.log_contains("router", "handoff done"), 20, what="the Flex task")
        for r in p.fake_get("twilio", "/_fake/requests"):
            if r["path"].startswith("/v1/"):
                note("flex-worker -> Twilio %s %s -> %s" % (r["method"], r["path"], r["status"]))
        state = p.fake_get("twilio", "/_fake/state")
        ours = [c for c in state["conversations"] if (c.get("unique_name") or "").startswith("baton-")]
        note("the agent's thread in Flex (%s):" % ours[0]["sid"])
        for m in ours[0].get("messages", []):
            who = "customer" if m["author"] == CUSTOMER else m["author"]
            note("    %-9s %s" % (who + ":", " ".join(filter(None, [" ".join((m["body"] or "").split())[:80],
                                                                 attachment(m) if m.get("media") else ""]))))
        photos = [x for m in p.conversation_media(ours[0]["sid"]) for x in m["media"]]
        rash = len(media_fixture("rash.jpg"))
        assert [x for x in photos if x["content_type"] == "image/jpeg" and x["size"] == rash], \
            "the photo is not attached in the agent's Flex thread: %s" % photos
        uploads = [u for u in p.mcs_uploads() if u["size"] == rash]
        note("flex-worker -> Media Content Service: %d upload(s), the photo attached as %s"
             % (len(uploads), photos[0]["sid"]))
        req = [r for r in p.fake_get("twilio", "/_fake/requests") if r["path"] == "/v1/Interactions"][-1]
        attrs = json.loads(req["form"]["Routing"][0])["properties"]["attributes"]
        note("task attributes: " + json.dumps(attrs, ensure_ascii=False))
        d.wait_mode("human", "Flex task created")
        d.show_new(1)  # the agent's greeting
        calls = len(p.llm_requests())

        d.customer("I'd like an appointment with dermatology on Tuesday, please.", want=1)
        d.wait_mode("ai", "the agent closed the conversation")
        note("LLM calls while a person had the conversation: %d" % (len(p.llm_requests()) - calls))

        d.customer("Thanks! Can you remind me of my appointment day?")
        last = p.llm_requests()[-1]["json"]["messages"]
        note("the AI's request carried %d messages, the agent's turns and the hand-back note "
             "among them" % len(last))
        print()
        rc, out, _ = p.ctl("show", CUSTOMER)
        print(BOLD + "batonctl show " + CUSTOMER + RESET)
        in_timeline = False
        for line in out.splitlines():
            if line.startswith("timeline"):
                in_timeline = True
            elif line.startswith("transcript"):
                break
            if in_timeline and line.strip():
                print("  " + line)
        if args.transcript_out:
            with open(args.transcript_out, "w") as f:
                json.dump(p.show(CUSTOMER), f, ensure_ascii=False, indent=1)
        print()
        print("%sdone%s: %d messages reached the customer; ingress, router, ai-worker, egress and "
              "flex-worker are separate processes" % (BOLD, RESET, d.seen))
        return 0
    except (AssertionError, SystemExit, KeyError, IndexError) as e:
        print("demo failed: %s (logs kept in %s)" % (e, p.dir), file=sys.stderr)
        p.keep = True
        return 1
    finally:
        p.close()


if __name__ == "__main__":
    sys.exit(main())
