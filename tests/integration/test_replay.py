"""Capture and replay: ingress appends every webhook the router accepted to
capture files (capture.dir); baton-replay plays them into a fresh pipeline,
over HTTP (re-signed, signature checks on) or straight into the router, and
the conversations come out the same, make demo's whole Flex session
included (deterministic fake Twilio SIDs); streamgen's synthetic captures
replay at full speed with every record acknowledged and stored; a truncated
or damaged capture replays its complete records without crashing. Rich
WhatsApp messages (a photo with its caption, a voice note, a location, a
quick-reply button) replay with what they carried: the replayed history
has the same media description either way.
"""

import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import unittest
import urllib.parse

from baton_harness import MEDIA_JPEG, MEDIA_OGG, Pipeline, wait_for
from capture_file import capture_files, read_capture

ANA = "whatsapp:+5511988887777"
BRUNO = "whatsapp:+5511977776666"
ADDRESS_REPLY = "Clínica Sol is at Av. Paulista 1000"
SANITIZER = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


# --- the tools ---

def replay(p, *args, timeout=180):
    """baton-replay with p's settings and ingress's real port; (rc, stdout, stderr)."""
    env = p.env()
    if p.ingress_port:
        env["BATON_HTTP_PORT"] = str(p.ingress_port)
    r = subprocess.run([os.path.join(p.bindir, "baton-replay")] + [str(a) for a in args],
                       env=env, capture_output=True, text=True, timeout=timeout)
    for s in SANITIZER:
        assert s not in r.stderr, r.stderr[-4000:]
    return r.returncode, r.stdout, r.stderr


def replay_json(p, *args, want_rc=0):
    rc, out, err = replay(p, "--json", *args)
    assert rc == want_rc, (rc, out, err[-3000:])
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0]), err


def streamgen(bindir, *args):
    tool = os.path.join(os.path.dirname(bindir), "tools", "streamgen")
    r = subprocess.run([tool] + [str(a) for a in args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout.strip()


def transcript(p, who):
    """Customer and AI turns of a conversation, as (role, text)."""
    return [(h["role"], h["text"]) for h in p.show(who)["history"] if h["role"] in ("customer", "ai")]


def timeline(p, who):
    return [e["event"] for e in p.show(who)["timeline"]]


class TestCaptureAndReplay(unittest.TestCase):
    """One original run with capture on; each test replays its capture into a fresh pipeline."""

    @classmethod
    def setUpClass(cls):
        cls.cap = tempfile.mkdtemp(prefix="baton-capture-")
        p = Pipeline(env={"BATON_CAPTURE_DIR": cls.cap})
        try:
            p.start_all()
            cls.t_start = int(time.time() * 1000)
            st, _, cls.first_params = p.send(ANA, "Hi! Where is the clinic located?")
            assert st == 200
            wait_for(lambda: len(p.sent_messages(ANA)) >= 1, 10, what="first reply")
            p.send(ANA, "What are your specialties and opening hours?")
            wait_for(lambda: len(p.sent_messages(ANA)) >= 2, 10, what="second reply")
            # A rule escalation, the Flex handoff, then the operator hands back.
            p.send(BRUNO, "Quiero hablar con una persona, por favor")
            wait_for(lambda: p.log_contains("router", "handoff done"), 15, what="handoff")
            rc, _, err = p.ctl("handback", BRUNO)
            assert rc == 0, err
            wait_for(lambda: p.show(BRUNO)["mode"] == "ai", 10, what="hand-back")
            p.send(BRUNO, "Where is the clinic?")
            wait_for(lambda: len(p.sent_messages(BRUNO)) >= 2, 10, what="AI after hand-back")
            # A duplicate delivery is acknowledged but not captured again.
            st, _, _ = p.post_webhook(cls.first_params)
            assert st == 200
            cls.t_end = int(time.time() * 1000)
            cls.original = {w: transcript(p, w) for w in (ANA, BRUNO)}
            cls.timelines = {w: timeline(p, w) for w in (ANA, BRUNO)}
        finally:
            p.close()  # ingress closes its capture writer on the way out

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.cap, ignore_errors=True)

    def fresh(self):
        p = Pipeline()
        self.addCleanup(p.close)
        p.start_all()
        return p

    def assert_same_conversations(self, p):
        for who in (ANA, BRUNO):
            wait_for(lambda: transcript(p, who) == self.original[who], 15,
                     what="the replayed transcript of " + who)
        self.assertIn("escalated", timeline(p, BRUNO))
        self.assertIn("handed_back", timeline(p, BRUNO))
        self.assertEqual(p.show(BRUNO)["mode"], "ai")

    def test_capture_holds_the_accepted_webhooks(self):
        files = capture_files(self.cap)
        self.assertEqual(len(files), 1, files)
        self.assertRegex(os.path.basename(files[0]), r"^capture-\d{8}T\d{6}-\d+-\d{6}\.bcap$")
        self.assertEqual(os.stat(files[0]).st_mode & 0o777, 0o600)
        recs, _ = read_capture(files[0])
        self.assertEqual([r["p"] for r in recs], ["/twilio/messages"] * 3 +
                         ["/admin/handback", "/twilio/messages"])
        self.assertTrue(all(r["v"] == 1 for r in recs))
        times = [r["t"] for r in recs]
        self.assertEqual(times, sorted(times))
        self.assertTrue(self.t_start <= times[0] and times[-1] <= self.t_end, (times, self.t_start))
        # The body exactly as Twilio (here: the harness) posted it.
        self.assertEqual(recs[0]["b"], urllib.parse.urlencode(self.first_params).encode())
        self.assertEqual(json.loads(recs[3]["b"])["address"], BRUNO)
        self.assertEqual(self.original[ANA][1][0], "ai")
        self.assertTrue(self.original[ANA][1][1].startswith(ADDRESS_REPLY))

    def test_replay_over_http_gives_the_same_conversations(self):
        p = self.fresh()
        # One in flight keeps each conversation's order; signatures are checked (on by default).
        s, _ = replay_json(p, "--speed", "max", "--concurrency", "1", self.cap)
        self.assertEqual((s["records"], s["sent"], s["acknowledged"], s["failed"]), (5, 5, 5, 0))
        self.assert_same_conversations(p)
        self.assertFalse(p.log_contains("ingress", "signature mismatch"))

    def test_replay_to_the_router_gives_the_same_conversations(self):
        p = self.fresh()
        s, _ = replay_json(p, "--to", "router", "--speed", "max", "--concurrency", "1",
                           capture_files(self.cap)[0])
        self.assertEqual((s["records"], s["sent"], s["acknowledged"], s["failed"]), (5, 5, 5, 0))
        self.assert_same_conversations(p)

    def test_wrong_auth_token_fails_and_says_so(self):
        p = self.fresh()
        env_token = {"BATON_TWILIO_AUTH_TOKEN": "not-the-token"}
        p.extra_env.update(env_token)  # replay signs with this one; ingress keeps the real one
        rc, out, err = replay(p, "--speed", "max", "--concurrency", "1", self.cap)
        self.assertEqual(rc, 1, (out, err))
        # The four messages are refused (403); the hand-back then finds no conversation (404).
        self.assertIn("5 records, 5 sent, 0 acknowledged, 5 failed", out)
        self.assertIn("HTTP 403", err)
        self.assertIn("HTTP 404", err)


def media_history(p, who):
    """Customer turns as (text, media description or None)."""
    return [(h["text"], h.get("media")) for h in p.show(who)["history"] if h["role"] == "customer"]


class TestMediaCaptureAndReplay(unittest.TestCase):
    """A capture of rich messages replays with their media fields, both ways."""

    @classmethod
    def setUpClass(cls):
        cls.cap = tempfile.mkdtemp(prefix="baton-capture-media-")
        p = Pipeline(env={"BATON_CAPTURE_DIR": cls.cap})
        try:
            p.start_all()
            sends = [lambda: p.send_media(ANA, MEDIA_JPEG, "This is the rash on my arm"),
                     lambda: p.send_media(ANA, MEDIA_OGG),
                     lambda: p.send_rich(ANA, "location", location=("-23.5614", "-46.6559",
                                                                    "Av. Paulista 1000", "Clinica Sol")),
                     lambda: p.send_rich(ANA, "button", "Book", button=("Book", "book_dermatology"))]
            for n, send in enumerate(sends, 1):
                st, _, _ = send()
                assert st == 200
                # One at a time: the AI's turn between keeps the order the same on replay.
                wait_for(lambda: len(p.sent_messages(ANA)) >= n, 10, what="reply %d" % n)
            cls.original = media_history(p, ANA)
            cls.twilio_port = p.twilio_port
        finally:
            p.close()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.cap, ignore_errors=True)

    def fresh(self):
        # The captured MediaUrls name the first fake Twilio's port: the
        # replay's serves the same media there (the voice note is
        # transcribed again from it).
        p = Pipeline(twilio_port=self.twilio_port)
        self.addCleanup(p.close)
        p.start_all()
        return p

    def assert_same_media(self, p):
        wait_for(lambda: len(media_history(p, ANA)) == len(self.original), 15,
                 what="every replayed customer turn")
        # The voice note's text is its transcript, which the AI's answer
        # brings back after the turn is stored.
        p.wait_idle(15)
        self.assertEqual(media_history(p, ANA), self.original)

    def test_capture_holds_the_media_fields(self):
        recs = [r for f in capture_files(self.cap) for r in read_capture(f)[0]]
        self.assertEqual(len(recs), 4)
        forms = [dict(urllib.parse.parse_qsl(r["b"].decode())) for r in recs]
        self.assertEqual([f["MessageType"] for f in forms], ["image", "audio", "location", "button"])
        self.assertEqual((forms[0]["NumMedia"], forms[0]["MediaContentType0"]), ("1", "image/jpeg"))
        self.assertTrue(forms[0]["MediaUrl0"].endswith("/Media/" + MEDIA_JPEG))
        self.assertEqual(forms[2]["Label"], "Clinica Sol")
        self.assertEqual(forms[3]["ButtonPayload"], "book_dermatology")
        # What the original run stored: a photo, a voice note, a place, a tap.
        media = [m for _, m in self.original]
        self.assertEqual([m["type"] for m in media], ["image", "audio", "location", "button"])
        self.assertEqual(media[0]["items"][0]["ct"], "image/jpeg")
        self.assertEqual(media[1]["items"][0]["ct"], "audio/ogg")
        self.assertEqual(media[2]["loc"], {"lat": "-23.5614", "lon": "-46.6559",
                                           "addr": "Av. Paulista 1000", "label": "Clinica Sol"})
        self.assertEqual(media[3]["btn"], {"text": "Book", "payload": "book_dermatology"})
        self.assertEqual(self.original[0][0], "This is the rash on my arm")

    def test_replay_over_http_keeps_the_media(self):
        p = self.fresh()
        s, _ = replay_json(p, "--speed", "max", "--concurrency", "1", self.cap)
        self.assertEqual((s["records"], s["acknowledged"], s["failed"]), (4, 4, 0))
        self.assert_same_media(p)

    def test_replay_to_the_router_keeps_the_media(self):
        p = self.fresh()
        s, _ = replay_json(p, "--to", "router", "--speed", "max", "--concurrency", "1", self.cap)
        self.assertEqual((s["records"], s["acknowledged"], s["failed"]), (4, 4, 0))
        self.assert_same_media(p)


class TestCaptureFailure(unittest.TestCase):
    def test_a_failing_capture_never_fails_a_webhook_and_logs_once(self):
        tmp = tempfile.mkdtemp(prefix="baton-capfail-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cap = os.path.join(tmp, "cap")
        p = Pipeline(env={"BATON_CAPTURE_DIR": cap})
        self.addCleanup(p.close)
        p.start_fakes()
        p.start("router")
        p.start("ingress")
        # Files are created at the first record: without the directory, even root cannot.
        os.rmdir(cap)
        for i in range(3):
            st, _, _ = p.send(ANA, "message %d" % i)
            self.assertEqual(st, 200)
        errors = [l for l in p.log_lines("ingress")
                  if l.get("level") == "error" and "capture" in l.get("msg", "")]
        self.assertEqual(len(errors), 1, errors)  # once a minute, not once per webhook
        self.assertIn("cannot create", errors[0]["msg"])
        self.assertEqual(p.stop("ingress"), 0)
        self.assertTrue(p.log_contains("ingress", "3 accepted webhooks could not be captured"))

    def test_an_impossible_capture_dir_stops_ingress_at_start(self):
        tmp = tempfile.mkdtemp(prefix="baton-capfail-")
        self.addCleanup(shutil.rmtree, tmp, True)
        blocker = os.path.join(tmp, "file")
        open(blocker, "w").close()
        p = Pipeline(env={"BATON_CAPTURE_DIR": os.path.join(blocker, "cap")})
        self.addCleanup(p.close)
        p.start_fakes()
        p.start("router")
        proc = p.start("ingress", wait=False)
        self.assertEqual(proc.wait(10), 2)   # a config error, found before anything starts
        p.procs.pop("ingress")
        self.assertTrue(p.log_contains("ingress", "capture.dir: '%s': Not a directory"
                                       % os.path.join(blocker, "cap")))


# The replay's own wall clock: the hand-back note names the minutes of the human
# stretch as the router's clock saw them when it handled the events.
NOTE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


def full_transcript(show):
    """Every turn of a `batonctl --json show`, in order: role, text, the inbound SID
    (customer and agent turns) and the agent's name; the times in the hand-back
    note become <time>."""
    out = []
    for h in show["history"]:
        text = NOTE_TIME.sub("<time>", h["text"]) if h["role"] == "system" else h["text"]
        out.append((h["role"], text, h.get("message_sid"), h.get("agent")))
    return out


class TestDemoCapture(unittest.TestCase):
    """make demo leaves a capture (scripts/demo.py --capture DIR) that replays into a
    fresh pipeline to the same whole transcript: AI turns, the photo and the AI's
    answer about it, the escalation, the Flex agent's turns, the customer's
    message inside the Flex conversation, the hand-back note and the AI turn
    after it.

    The capture's Flex events (onMessageAdded, onConversationStateUpdated,
    reservation.accepted, task.*) name the Conversation (CH) and Task (WT) SIDs the
    original fake Twilio created. Both fakes get the same --sid-seed, so the fresh
    one hands the replay's flex-worker the same SIDs and the router matches the
    events. The fresh fake's simulated agent is off and nothing is sent to it as a
    customer: the capture plays both parts, and the fake sends baton no webhook of
    its own (checked)."""

    SEED = "demo-capture-replay"
    # Half the original pace: every gap between captured webhooks doubles, so the
    # fresh flex pipeline has created its conversation and task well before the
    # agent's accept (300 ms after the Interaction in the original) arrives, and
    # each AI answer is in before the next customer message, under SANITIZE=1 too.
    SPEED = "0.5"

    def test_demo_capture_replays_the_whole_transcript(self):
        tmp = tempfile.mkdtemp(prefix="baton-democap-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cap = os.path.join(tmp, "capture")
        out = os.path.join(tmp, "transcript.json")
        demo = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "scripts", "demo.py")
        r = subprocess.run(["python3", demo, "--capture", cap, "--sid-seed", self.SEED,
                            "--transcript-out", out], capture_output=True, text=True,
                           timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout[-2000:] + r.stderr[-2000:])
        with open(out) as f:
            original = json.load(f)
        want = full_transcript(original)
        roles = [t[0] for t in want]
        # The whole session is there to reproduce: both modes, the agent, the hand-back.
        for role in ("customer", "ai", "agent", "system"):
            self.assertIn(role, roles, want)
        self.assertEqual(original["mode"], "ai")
        recs = [rec for f in capture_files(cap) for rec in read_capture(f)[0]]
        paths = [rec["p"] for rec in recs]
        for path in ("/twilio/messages", "/twilio/conversations", "/twilio/taskrouter"):
            self.assertIn(path, paths)

        # Ana's photo: its MediaUrl names the original fake Twilio's port, and
        # the workers download it from there (the fresh fake serves the same
        # preloaded media), so the fresh fake listens on that port.
        forms = [dict(urllib.parse.parse_qsl(rec["b"].decode())) for rec in recs
                 if rec["p"] == "/twilio/messages"]
        urls = [f["MediaUrl0"] for f in forms if f.get("MediaUrl0")]
        self.assertEqual(len(urls), 1, "the demo's photo")
        self.assertEqual([f.get("MessageType") for f in forms if f.get("MediaUrl0")], ["image"])
        p = Pipeline(sid_seed=self.SEED, twilio_port=urllib.parse.urlsplit(urls[0]).port)
        self.addCleanup(p.close)
        p.start_all()
        p.agent(enabled=False)  # the agent's side comes from the capture
        # One in flight: the agent's last message, task.wrapup and the close arrive
        # within a millisecond of each other and must stay in that order.
        s, _ = replay_json(p, "--speed", self.SPEED, "--concurrency", "1", cap)
        n = len(recs)
        self.assertEqual((s["records"], s["sent"], s["acknowledged"], s["failed"]), (n, n, n, 0))

        def same():
            return full_transcript(p.show(ANA)) == want
        try:
            wait_for(same, 30, interval=0.1, what="the demo's whole transcript replayed")
        except AssertionError:
            p.keep = True
            got = full_transcript(p.show(ANA))
            raise AssertionError("replayed transcript differs:\n got  %s\n want %s\nrouter log "
                                 "in %s" % ("\n      ".join(map(repr, got)),
                                            "\n      ".join(map(repr, want)), p.dir))
        replayed = p.show(ANA)
        self.assertEqual(replayed["mode"], original["mode"])
        # The same Flex resources, by SID: that is what let the events match.
        for key in ("conversation", "interaction", "task"):
            self.assertEqual(replayed["flex"][key], original["flex"][key], key)
        self.assertEqual([(e["event"], e["detail"]) for e in replayed["timeline"]],
                         [(e["event"], e["detail"]) for e in original["timeline"]])
        # Everything baton received came from the capture, nothing from the fake.
        self.assertEqual(p.fake_get("twilio", "/_fake/webhooks"), [])
        self.assertEqual(p.fake_get("twilio", "/_fake/agent/log"), [])


class TestStreamReplay(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="baton-stream-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.p = Pipeline()
        self.addCleanup(self.p.close)
        self.p.start_fakes()

    def start(self, *names):
        for n in names:
            self.p.start(n)

    def test_500_messages_at_full_speed_all_acknowledged_and_stored(self):
        self.start("router", "ingress")
        out = os.path.join(self.tmp, "s")
        line = streamgen(self.p.bindir, "--out", out, "--messages", 500, "--conversations", 50,
                         "--escalate", 0, "--rate", 200, "--seed", 7)
        self.assertIn("500 messages", line)
        sent_log = os.path.join(self.tmp, "sent.log")
        s, _ = replay_json(self.p, "--speed", "max", "--sent-log", sent_log, out)
        self.assertEqual((s["records"], s["sent"], s["acknowledged"], s["failed"]), (500, 500, 500, 0))
        self.assertGreater(s["rate_per_s"], 0)
        lat = s["latency_ms"]
        self.assertTrue(0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], lat)

        lines = [l.split(" ") for l in open(sent_log).read().splitlines()]
        self.assertEqual(len(lines), 500)
        ns = [int(a) for a, _ in lines]
        self.assertEqual(ns, sorted(ns))
        sids = [b for _, b in lines]
        self.assertTrue(all(re.fullmatch(r"SM[0-9a-f]{32}", x) for x in sids), sids[:3])
        self.assertEqual(len(set(sids)), 500)

        # Stored: the same stream again is 500 duplicates, acknowledged and not processed.
        s2, _ = replay_json(self.p, "--to", "router", "--speed", "max", out)
        self.assertEqual((s2["sent"], s2["acknowledged"], s2["failed"]), (500, 500, 0))
        wait_for(lambda: self.p.log_text("router").count("duplicate delivery") >= 500, 10,
                 what="500 duplicate deliveries")
        # Conversation i is whatsapp:+1555 and i in 7 digits; the busiest (Zipf rank 1) is 0.
        self.assertEqual(self.p.show("whatsapp:+15550000000")["history"][0]["role"], "customer")

    def test_streamgen_escalations_and_handbacks_replay(self):
        self.start("router", "ai-worker", "egress", "flex-worker", "ingress")
        out = os.path.join(self.tmp, "e")
        line = streamgen(self.p.bindir, "--out", out, "--messages", 120, "--conversations", 12,
                         "--escalate", 0.5, "--handback", 1, "--rate", 1000, "--seed", 3)
        m = re.search(r"(\d+) escalations, (\d+) handbacks: (\d+) records", line)
        esc, hb, nrec = int(m.group(1)), int(m.group(2)), int(m.group(3))
        self.assertEqual((esc, hb, nrec), (6, 6, 126), line)
        s, _ = replay_json(self.p, "--speed", "max", "--concurrency", "1", out)
        self.assertEqual((s["sent"], s["acknowledged"], s["failed"]), (nrec, nrec, 0), s)

        def counts():
            escalated = handed = 0
            for i in range(12):
                rc, o, _ = self.p.ctl("--json", "show", "whatsapp:+1555%07d" % i)
                if rc != 0:
                    continue
                events = [e["event"] for e in json.loads(o)["timeline"]]
                escalated += "escalated" in events
                handed += "handed_back" in events
            return escalated, handed
        wait_for(lambda: counts() == (esc, hb), 20, what="escalations and hand-backs")
        # Rules escalate before the AI: no LLM call answers the escalating text itself.
        for r in self.p.llm_requests():
            last = json.dumps(r["json"]["messages"][-1], ensure_ascii=False)
            self.assertNotIn("quiero hablar con una persona", last)

    def test_truncated_and_damaged_captures(self):
        self.start("router", "ingress")
        out = os.path.join(self.tmp, "t")
        streamgen(self.p.bindir, "--out", out, "--messages", 40, "--conversations", 5,
                  "--escalate", 0, "--seed", 11)
        src = capture_files(out)[0]
        data = open(src, "rb").read()
        recs, end = read_capture(src)
        self.assertEqual((len(recs), end), (40, len(data)))

        # Cut inside the last record (a crash mid-write): the 39 before it replay, exit 0.
        cut = os.path.join(self.tmp, "cut.bcap")
        with open(cut, "wb") as f:
            f.write(data[:-10])
        s, err = replay_json(self.p, "--to", "router", "--speed", "max", cut)
        self.assertEqual((s["records"], s["sent"], s["acknowledged"], s["failed"],
                          s["damaged_files"]), (39, 39, 39, 0, 0))
        self.assertIn("cut short", err)

        # A hostile length after 10 records: those 10 replay, the file is damaged, exit 1.
        ten_end = 0
        for _ in range(10):
            ten_end += 4 + struct.unpack(">I", data[ten_end:ten_end + 4])[0]
        bad = os.path.join(self.tmp, "bad.bcap")
        with open(bad, "wb") as f:
            f.write(data[:ten_end] + b"\xff\xff\xff\xff" + b"\xdf\xff\xff\xff\xff" * 4)
        s, err = replay_json(self.p, "--speed", "max", bad, want_rc=1)
        self.assertEqual((s["records"], s["sent"], s["acknowledged"], s["failed"],
                          s["damaged_files"]), (10, 10, 10, 0, 1))
        self.assertIn("damaged file", err)

        # Garbage where a map should be (a 5-byte map claiming 2^32-1 pairs).
        garbage = os.path.join(self.tmp, "garbage.bcap")
        with open(garbage, "wb") as f:
            f.write(b"\x00\x00\x00\x05\xdf\xff\xff\xff\xff")
        s, err = replay_json(self.p, "--speed", "max", garbage, want_rc=1)
        self.assertEqual((s["records"], s["damaged_files"]), (0, 1))

    def test_files_merge_in_time_order_and_pace(self):
        self.start("router", "ingress")
        a, b = os.path.join(self.tmp, "a"), os.path.join(self.tmp, "b")
        streamgen(self.p.bindir, "--out", a, "--messages", 20, "--conversations", 3, "--rate", 10,
                  "--escalate", 0, "--seed", 1)
        streamgen(self.p.bindir, "--out", b, "--messages", 20, "--conversations", 3, "--rate", 10,
                  "--escalate", 0, "--seed", 2)
        want = sorted([(r["t"], r["b"]) for d in (a, b) for r in read_capture(capture_files(d)[0])[0]],
                      key=lambda x: x[0])
        sent_log = os.path.join(self.tmp, "sent.log")
        t0 = time.monotonic()
        s, _ = replay_json(self.p, "--speed", "2", "--sent-log", sent_log, a, b)
        took = time.monotonic() - t0
        self.assertEqual((s["sent"], s["acknowledged"]), (40, 40))
        span = (want[-1][0] - want[0][0]) / 1000.0
        # Original pace halved: the last request goes out about span/2 after the first.
        ns = [int(l.split()[0]) for l in open(sent_log)]
        self.assertAlmostEqual((ns[-1] - ns[0]) / 1e9, span / 2, delta=0.15)
        self.assertGreater(took, span / 2 - 0.15)
        # Requests go out in the merged time order of both files.
        sids = [l.split()[1] for l in open(sent_log)]
        order = [re.search(rb"MessageSid=(SM[0-9a-f]+)", body).group(1).decode() for _, body in want]
        self.assertEqual(sids, order)

    def test_a_router_that_never_answers_stops_the_replay(self):
        out = os.path.join(self.tmp, "r")
        streamgen(self.p.bindir, "--out", out, "--messages", 300, "--escalate", 0)
        self.p.extra_env["BATON_HTTP_ACK_TIMEOUT_MS"] = "300"  # no router started
        t0 = time.monotonic()
        s, err = replay_json(self.p, "--to", "router", "--speed", "max", out, want_rc=1)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertTrue(s["interrupted"])
        self.assertEqual((s["acknowledged"], s["failed"]), (0, s["sent"]))
        self.assertLess(s["sent"], 300)
        self.assertIn("no answer from the router", err)

    def test_usage_and_config_errors_exit_2(self):
        rc, _, err = replay(self.p)
        self.assertEqual(rc, 2)
        self.assertIn("usage", err)
        rc, _, err = replay(self.p, "--speed", "fast", self.tmp)
        self.assertEqual((rc, "--speed" in err), (2, True))
        rc, _, err = replay(self.p, "--to", "kafka", self.tmp)
        self.assertEqual(rc, 2)
        rc, _, err = replay(self.p, os.path.join(self.tmp, "missing"))
        self.assertEqual(rc, 2)
        self.p.extra_env["BATON_HTTP_ACK_TIMEOUT_MS"] = "soon"
        rc, _, err = replay(self.p, self.tmp)
        self.assertEqual(rc, 2)
        self.assertIn("http.ack_timeout_ms", err)
        # An empty directory is nothing to do, not an error.
        del self.p.extra_env["BATON_HTTP_ACK_TIMEOUT_MS"]
        empty = os.path.join(self.tmp, "empty")
        os.mkdir(empty)
        rc, out, _ = replay(self.p, "--url", "http://127.0.0.1:9", empty)
        self.assertEqual(rc, 0)
        self.assertIn("0 records", out)


if __name__ == "__main__":
    unittest.main()
