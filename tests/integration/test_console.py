"""The operator console (baton-console, /console): no console.token, no
console (it refuses to start, and ingress never serves /console); the
page is static and public, the API wants the token (bearer) or basic auth,
answers 401/404/405/415 as documented, reads LMDB read-only (503 until the
router has created it, then it appears by itself), never returns a secret,
and its hand-back and escalate go through the router exactly like
/admin/handback and /admin/escalate (committed before 200, captured as
those, working without admin.token). On one known scenario: customers'
names, waiting for an agent vs with an agent, search by name or number,
baton's own messages marked and the hand-back told without the LLM's
instructions, and the reports' figures exactly.

Customer media (issue 16): the console downloads a turn's photo, voice
note or document from Twilio with baton's credentials and serves the
checked bytes at /console/api/conversations/KEY/media/SEQ/I (the browser
never sees Twilio's URL), 502 with the reason when Twilio's answer is
wrong, 404 for what is not there, 401 without the console's credentials;
in the browser, a thumbnail, an audio player, a link to the PDF, the
location and the button as text, and a voice note's transcript marked.

The browser test drives the page in headless Chromium over WebDriver
(tests/lib/webdriver.py) after a streamgen stream with escalations is
replayed into the pipeline: log in with the token, see the list and the
escalation queue with names and states, open an escalated conversation,
read its transcript, hand it back (the page and batonctl show ai),
escalate another with a reason (waiting, its clock running, counted in the
title), hear of a customer's escalation (the beep, counted), search, open
Reports (uPlot's charts drawn, the tiles as the API says) and save
console.png and console-reports.png. Skipped when chromium or chromedriver
is not installed.
"""

import base64
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import webdriver
from baton_harness import (masked, media_fixture, ACCOUNT_SID, ADMIN_TOKEN, AUTH_TOKEN, BUSINESS,
                           LLM_KEY, MEDIA_JPEG, MEDIA_LYING, MEDIA_MISSING, MEDIA_OGG, MEDIA_PDF,
                           ROOT, Pipeline, wait_for)

TOKEN = "console-test-token-7e4a90"
USER = "operator"
PASSWORD = "console-pass-52b1d8"
SECRETS = (AUTH_TOKEN, LLM_KEY, ADMIN_TOKEN, TOKEN, PASSWORD)
ANA = "whatsapp:+5511988881111"
BRUNO = "whatsapp:+5511988882222"
CARLA = "whatsapp:+5511988883333"
SHOP = "whatsapp:+15550009999"
HOLDING = "Your conversation is being transferred to our team."
NO_AGENT = "All our agents are busy right now. A person will answer you as soon as possible."
MARTA = dict(identity="Marta", accept_after_ms=1000, greeting="Hi, I'm Marta.", reply_delay_ms=50,
             replies=[{"match": "thanks", "reply": "You're welcome, bye!", "close_after": True}])
GREETING = "Hi, I'm Gonzalo, how can I help you?"
AGENT = dict(identity="Gonzalo", accept_after_ms=100, greeting=GREETING, reply_delay_ms=50,
             replies=[])


def request_bytes(method, url, headers=None, timeout=20):
    """(status, body bytes, headers): for media, whose bytes are not text."""
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def request(method, url, body=None, headers=None, timeout=10):
    """(status, body text, headers as an HTTPMessage: repeated headers kept)."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace"), e.headers


def bearer(token=TOKEN):
    return {"Authorization": "Bearer " + token}


def basic(user=USER, password=PASSWORD):
    cred = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    return {"Authorization": "Basic " + cred}


def artifacts_dir():
    return os.environ.get("BATON_TEST_ARTIFACTS") or os.path.join(ROOT, "build", "test-artifacts")


def find_streamgen(bindir):
    for d in (os.path.dirname(bindir), os.path.join(ROOT, "build")):
        tool = os.path.join(d, "tools", "streamgen")
        if os.access(tool, os.X_OK):
            return tool
    return None


class ConsoleCase(unittest.TestCase):
    env = {"BATON_CONSOLE_TOKEN": TOKEN}

    def pipeline(self, env=None, start=("router", "ai-worker", "egress", "flex-worker", "ingress",
                                        "console")):
        e = dict(self.env)
        e.update(env or {})
        p = Pipeline(env=e)
        self.addCleanup(p.close)
        # Runs before close() (cleanups are LIFO): the logs are still there.
        self.addCleanup(self.assert_no_secret_in_logs, p)
        p.start_fakes()
        for name in start:
            p.start(name)
        if "ai-worker" in start:
            p.wait_workers(1)
        self.p = p
        return p

    def assert_no_secret_in_logs(self, p):
        for name in list(p.logs):
            text = p.log_text(name)
            for s in (TOKEN, PASSWORD):
                self.assertNotIn(s, text, "%s: a console secret appears in the log" % name)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.p.console_port, path)

    def ingress_url(self, path):
        return "http://127.0.0.1:%d%s" % (self.p.ingress_port, path)

    def get(self, path, headers=None, method="GET"):
        return request(method, self.url(path), headers=headers)

    def api(self, path, headers=None):
        st, text, h = self.get("/console/api/" + path, bearer() if headers is None else headers)
        self.assertEqual(st, 200, (path, st, text))
        self.assertEqual(h["Cache-Control"], "no-store")
        return json.loads(text)

    def post(self, what, obj, headers=None, ctype="application/json"):
        h = dict(bearer() if headers is None else headers)
        if ctype:
            h["Content-Type"] = ctype
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        return request("POST", self.url("/console/api/" + what), body, h)

    def mode(self, who):
        return self.p.show(who)["mode"]


class TestConsoleOff(ConsoleCase):
    env = {}

    def test_no_console_without_a_token_and_never_in_ingress(self):
        p = self.pipeline(start=("router", "ingress"))
        # Ingress is stateless: it serves webhooks, never the console.
        for path in ("/console", "/console/", "/console/console.js", "/console/console.css",
                     "/console/api/conversations", "/console/api/conversation?address=x"):
            st, _, _ = request("GET", self.ingress_url(path), headers=bearer())
            self.assertEqual(st, 404, path)
        st, _, _ = request("GET", self.ingress_url("/healthz"))
        self.assertEqual(st, 200)
        # baton-console without a token: a configuration error, said plainly.
        r = subprocess.run([os.path.join(p.bindir, "baton-console")], env=p.env(),
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("console.token: not set", r.stderr + r.stdout)

    def test_user_without_password_is_a_config_error(self):
        bindir = os.environ.get("BATON_BIN", os.path.join(ROOT, "build", "bin"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        env.update({"BATON_CONSOLE_TOKEN": TOKEN, "BATON_CONSOLE_USER": USER, "BATON_SANDBOX": "true"})
        r = subprocess.run([os.path.join(bindir, "baton-console"), "--check-config"], env=env,
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("console.user and console.password", r.stderr + r.stdout)
        env["BATON_CONSOLE_PASSWORD"] = PASSWORD
        r = subprocess.run([os.path.join(bindir, "baton-console"), "--check-config"], env=env,
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn(TOKEN, r.stdout)
        self.assertNotIn(PASSWORD, r.stdout)


class TestConsoleApi(ConsoleCase):
    env = {"BATON_CONSOLE_TOKEN": TOKEN, "BATON_CONSOLE_USER": USER,
           "BATON_CONSOLE_PASSWORD": PASSWORD}

    def test_page_is_static_and_locked_down(self):
        self.pipeline(start=("router", "console"))
        for path in ("/console", "/console/", "/console/index.html"):
            st, text, h = self.get(path)
            self.assertEqual(st, 200, path)
            self.assertTrue(h["Content-Type"].startswith("text/html"))
            self.assertIn('id="login-form"', text)
            self.assertIn("default-src 'self'", h["Content-Security-Policy"])
            self.assertIn("frame-ancestors 'none'", h["Content-Security-Policy"])
            self.assertEqual(h["X-Frame-Options"], "DENY")
            self.assertEqual(h["X-Content-Type-Options"], "nosniff")
            # Self-contained: nothing from another origin, no inline script.
            self.assertNotRegex(text, r"(src|href)=\"(https?:)?//")
            self.assertNotRegex(text, r"<script(?![^>]*\bsrc=)[^>]*>")
        st, js, h = self.get("/console/console.js")
        self.assertEqual(st, 200)
        self.assertTrue(h["Content-Type"].startswith("text/javascript"))
        self.assertIn("sessionStorage", js)
        st, _, h = self.get("/console/console.css")
        self.assertEqual((st, h["Content-Type"].split(";")[0]), (200, "text/css"))
        # uPlot, vendored: served like the page, its license beside it; the
        # CSP stays as strict (uPlot styles elements through the CSSOM only).
        st, js, h = self.get("/console/uPlot.iife.min.js")
        self.assertEqual((st, h["Content-Type"].split(";")[0]), (200, "text/javascript"))
        self.assertIn("uPlot", js)
        self.assertNotIn("unsafe-inline", h["Content-Security-Policy"])
        st, _, h = self.get("/console/uPlot.min.css")
        self.assertEqual((st, h["Content-Type"].split(";")[0]), (200, "text/css"))
        st, text, h = self.get("/console/uPlot.LICENSE")
        self.assertEqual((st, h["Content-Type"].split(";")[0]), (200, "text/plain"))
        self.assertIn("MIT License", text)
        st, text, _ = self.get("/console", method="HEAD")
        self.assertEqual((st, text), (200, ""))
        st, _, h = self.get("/console", method="POST")
        self.assertEqual(st, 405)
        self.assertIn("GET", h["Allow"])
        for path in ("/console/nope.js", "/console/api", "/console/api/", "/console/api/nope",
                     "/console/api/conversations/x", "/console/x/y", "/console/vendor/uPlot.min.css"):
            st, _, _ = self.get(path, bearer())
            self.assertEqual(st, 404, path)
        st, _, _ = self.get("/consoles", bearer())  # not the console's
        self.assertEqual(st, 404)
        st, text, _ = self.get("/healthz")
        self.assertEqual((st, json.loads(text)), (200, {"ok": True}))

    def test_api_auth(self):
        self.pipeline(start=("router", "console"))
        path = "/console/api/conversations"
        # Nothing: both challenges (the browser may ask for a user and password).
        st, text, h = self.get(path)
        self.assertEqual(st, 401)
        self.assertEqual(json.loads(text), {"error": "unauthorized"})
        challenges = h.get_all("WWW-Authenticate")
        self.assertTrue(any(c.startswith("Bearer") for c in challenges), challenges)
        self.assertTrue(any(c.startswith("Basic") for c in challenges), challenges)
        # A wrong token: Bearer only, so a page with a stale token gets no dialog.
        for wrong in ("nope", TOKEN[:-1], TOKEN + "x", "", ADMIN_TOKEN):
            st, _, h = self.get(path, bearer(wrong))
            self.assertEqual(st, 401, wrong)
            self.assertEqual(h.get_all("WWW-Authenticate"), ['Bearer realm="baton console"'])
        for hdr in (basic(USER, "wrong"), basic("someone", PASSWORD), basic(USER, ""),
                    {"Authorization": "Basic !!!"}, {"Authorization": "Token " + TOKEN},
                    {"Authorization": TOKEN}):
            st, _, _ = self.get(path, hdr)
            self.assertEqual(st, 401, hdr)
        # Right: bearer (scheme in any case) or basic.
        for hdr in (bearer(), {"Authorization": "bearer " + TOKEN}, basic()):
            st, text, h = self.get(path, hdr)
            self.assertEqual(st, 200, hdr)
            self.assertEqual(h["Cache-Control"], "no-store")
            self.assertEqual(json.loads(text)["conversations"], [])
        # Commands want credentials too, before anything reaches the router.
        st, _, _ = self.post("handback", {"address": ANA}, headers={})
        self.assertEqual(st, 401)
        st, _, _ = self.post("escalate", {"address": ANA}, headers=bearer("nope"))
        self.assertEqual(st, 401)
        self.assertFalse(self.p.log_contains("router", "admin_"))
        # Methods and bodies.
        st, _, h = self.get("/console/api/handback", bearer())
        self.assertEqual((st, h["Allow"]), (405, "POST"))
        st, _, h = self.get("/console/api/conversations", bearer(), method="POST")
        self.assertEqual(st, 405)
        st, _, _ = self.post("handback", b"address=" + ANA.encode(),
                             ctype="application/x-www-form-urlencoded")
        self.assertEqual(st, 415)
        st, _, _ = self.post("handback", b"{not json")
        self.assertEqual(st, 400)
        for bad in ("mode=robot", "limit=0", "limit=x", "limit=5001"):
            st, _, _ = self.get("/console/api/conversations?" + bad, bearer())
            self.assertEqual(st, 400, bad)
        st, _, _ = self.get("/console/api/conversation", bearer())
        self.assertEqual(st, 400)
        st, text, _ = self.get("/console/api/conversation?address=whatsapp:%2B1999", bearer())
        self.assertEqual((st, json.loads(text)), (404, {"error": "no such conversation"}))

    def test_lists_show_and_never_return_a_secret(self):
        p = self.pipeline()
        p.agent(**AGENT)
        p.customer(ANA, "Where is the clinic located?")
        p.customer(BRUNO, "Where is the clinic located?")
        wait_for(lambda: len(p.whatsapp(BRUNO)) == 1, 10, what="first AI reply")
        p.customer(BRUNO, "quiero hablar con una persona")
        wait_for(lambda: GREETING in [m["body"] for m in p.whatsapp(BRUNO)], 15, what="agent greeting")

        every = self.api("conversations")
        self.assertEqual(every["total"], 2)
        self.assertEqual(every["counts"], {"ai": 1, "escalating": 0, "human": 1})
        rows = {r["customer"]: r for r in every["conversations"]}
        self.assertEqual(set(rows), {masked(ANA), masked(BRUNO)}, "customers are masked")
        self.assertEqual(rows[masked(BRUNO)]["mode"], "human")
        self.assertEqual(rows[masked(BRUNO)]["key"], BRUNO + "|" + BUSINESS)
        self.assertEqual(rows[masked(BRUNO)]["business"], BUSINESS)
        self.assertIsNone(rows[masked(ANA)]["escalation"])
        stamps = [r["last_activity_ms"] for r in every["conversations"]]
        self.assertEqual(stamps, sorted(stamps, reverse=True))

        queue = self.api("conversations?mode=queue")
        # The queue reads the modes index, not every record: the same counts.
        self.assertEqual(queue["counts"], every["counts"])
        self.assertEqual(queue["total"], 1)
        self.assertEqual(self.api("conversations?mode=human")["counts"], every["counts"])
        self.assertEqual([r["customer"] for r in queue["conversations"]], [masked(BRUNO)])
        esc = queue["conversations"][0]["escalation"]
        self.assertEqual(esc["trigger"], "rule")
        self.assertTrue(esc["at_ms"] <= queue["now_ms"])
        self.assertEqual(esc["agent"], "Gonzalo")
        self.assertEqual([r["customer"] for r in self.api("conversations?mode=ai")["conversations"]],
                         [masked(ANA)])
        self.assertEqual(len(self.api("conversations?limit=1")["conversations"]), 1)

        # One conversation: as batonctl show has it, plus the masked customer.
        d = self.api("conversation?address=" + urllib.parse.quote(BRUNO))
        show = p.show(BRUNO)
        self.assertEqual(d["mode"], "human")
        self.assertEqual(d["customer"], masked(BRUNO))
        self.assertEqual([(h["role"], h["text"]) for h in d["history"]],
                         [(h["role"], h["text"]) for h in show["history"]])
        self.assertEqual([t["event"] for t in d["timeline"]], [t["event"] for t in show["timeline"]])
        self.assertIn("agent", [h["role"] for h in d["history"]])
        self.assertTrue(d["flex"]["task"].startswith("WT"))
        # customer|business and an unencoded '+' find it too.
        self.assertEqual(self.api("conversation?address=" + urllib.parse.quote(BRUNO + "|" + BUSINESS))["key"],
                         d["key"])
        self.assertEqual(self.api("conversation?address=" + BRUNO)["key"], d["key"])
        # Too long to be a key of ours (together): not found, not a failed read.
        st, _, _ = self.get("/console/api/conversation?address=" + "1" * 300 + "&business=" + "2" * 300,
                            bearer())
        self.assertEqual(st, 404)

        # Nothing the console serves carries a secret.
        bodies = []
        for path in ("conversations", "conversations?mode=queue", "conversations?mode=human",
                     "conversation?address=" + urllib.parse.quote(ANA),
                     "conversation?address=" + urllib.parse.quote(BRUNO), "reports"):
            st, text, _ = self.get("/console/api/" + path, bearer())
            self.assertEqual(st, 200)
            bodies.append(text)
        for path in ("/console", "/console/console.js", "/console/console.css"):
            bodies.append(self.get(path)[1])
        for text in bodies:
            for s in SECRETS:
                self.assertNotIn(s, text)

    def test_commands_go_through_the_router_like_admin(self):
        cap = tempfile.mkdtemp(prefix="baton-console-cap-")
        self.addCleanup(shutil.rmtree, cap, True)
        # No admin.token: /admin is off, the console's commands are not.
        p = self.pipeline(env={"BATON_ADMIN_TOKEN": "", "BATON_CAPTURE_DIR": cap})
        p.customer(ANA, "Where is the clinic located?")
        wait_for(lambda: len(p.whatsapp(ANA)) == 1, 10, what="first AI reply")
        st, _, _ = request("POST", self.ingress_url("/admin/escalate"), json.dumps({"address": ANA}).encode(),
                           {"Authorization": "Bearer " + ADMIN_TOKEN, "Content-Type": "application/json"})
        self.assertEqual(st, 404)

        st, text, _ = self.post("escalate", {"address": ANA, "reason": "VIP customer"})
        self.assertEqual((st, json.loads(text)), (200, {"ok": True}))
        # 200 means committed: the state says so at once.
        show = p.show(ANA)
        self.assertEqual(show["mode"], "escalating")
        self.assertIn(("escalated", "operator: VIP customer"),
                      [(t["event"], t["detail"]) for t in show["timeline"]])
        wait_for(lambda: p.log_contains("router", "handoff done"), 15, what="Flex handoff")

        st, text, _ = self.post("handback", {"address": ANA, "business": BUSINESS,
                                             "reason": "operator console"}, headers=basic())
        self.assertEqual((st, json.loads(text)), (200, {"ok": True}))
        show = p.show(ANA)
        self.assertEqual(show["mode"], "ai")
        self.assertEqual(show["timeline"][-1]["event"], "handed_back")
        self.assertEqual(show["timeline"][-1]["detail"], "operator")

        st, text, _ = self.post("handback", {"address": "whatsapp:+15550000000"})
        self.assertEqual((st, json.loads(text)), (404, {"error": "no such conversation"}))
        st, _, _ = self.post("escalate", {"business": BUSINESS})
        self.assertEqual(st, 400)

        # Captured as the /admin commands they are, so a replay repeats them.
        self.assertEqual(p.stop("console"), 0)
        self.assertEqual(p.stop("ingress"), 0)
        data = b"".join(open(f, "rb").read() for f in glob.glob(os.path.join(cap, "*.bcap")))
        self.assertIn(b"/admin/escalate", data)
        self.assertIn(b"/admin/handback", data)
        self.assertIn(b"VIP customer", data)
        self.assertNotIn(b"/console", data)

    def test_state_that_appears_later_is_read(self):
        p = self.pipeline(start=("console",))
        st, text, _ = self.get("/console/api/conversations", bearer())
        self.assertEqual(st, 503, text)
        p.start("router")
        p.start("ingress")
        st, _, _ = p.send(ANA, "hello")
        self.assertEqual(st, 200)
        rows = self.api("conversations")["conversations"]
        self.assertEqual([r["customer"] for r in rows], [masked(ANA)])
        self.assertEqual(self.api("conversation?address=" + urllib.parse.quote(ANA))["history"][0]["text"],
                         "hello")


class TestConsoleScenario(ConsoleCase):
    """One known scenario: Ana only talks to the AI; Bruno escalates, Marta
    accepts after a known delay, he thanks her and she closes the chat (Flex
    wraps the task up first: task_completed); Carla escalates when no agent
    takes tasks (told after the accept timeout, still waiting)."""
    env = {"BATON_CONSOLE_TOKEN": TOKEN, "BATON_HANDOFF_ACCEPT_TIMEOUT_S": "3"}

    def scenario(self):
        p = self.pipeline()
        self.t0 = int(time.time() * 1000)
        p.agent(**MARTA)
        p.customer(ANA, "Where is the clinic located?", name="Ana Souza")
        wait_for(lambda: len(p.whatsapp(ANA)) == 1, 10, what="the AI's reply to Ana")
        p.customer(BRUNO, "quiero hablar con una persona", name="Bruno")
        wait_for(lambda: "Hi, I'm Marta." in [m["body"] for m in p.whatsapp(BRUNO)], 15,
                 what="Marta's greeting")
        # Tasks created from now on are never accepted.
        p.agent(enabled=False)
        p.customer(CARLA, "quiero hablar con una persona", name="Carla Núñez")
        wait_for(lambda: self.mode(CARLA) == "human", 15, what="Carla's task")
        return p

    def test_names_states_and_search(self):
        p = self.scenario()
        rows = {r["key"].split("|")[0]: r for r in self.api("conversations")["conversations"]}
        self.assertEqual({c: r["name"] for c, r in rows.items()},
                         {ANA: "Ana Souza", BRUNO: "Bruno", CARLA: "Carla Núñez"})
        self.assertEqual({c: r["customer"] for c, r in rows.items()},
                         {c: masked(c) for c in (ANA, BRUNO, CARLA)}, "numbers stay masked")
        self.assertEqual({c: r["state"] for c, r in rows.items()},
                         {ANA: "ai", BRUNO: "with_agent", CARLA: "waiting"})

        # The queue: longest waiting first, each with its own clock.
        queue = self.api("conversations?mode=queue")
        self.assertEqual([(r["name"], r["state"]) for r in queue["conversations"]],
                         [("Bruno", "with_agent"), ("Carla Núñez", "waiting")])
        bruno, carla = (r["escalation"] for r in queue["conversations"])
        self.assertEqual(bruno["agent"], "Marta")
        self.assertEqual(bruno["agent_since_ms"], bruno["accepted_at_ms"])
        self.assertEqual(bruno["waited_ms"], bruno["accepted_at_ms"] - bruno["at_ms"])
        self.assertGreaterEqual(bruno["waited_ms"], MARTA["accept_after_ms"])
        self.assertIsNone(carla["agent_since_ms"])
        self.assertIsNone(carla["waited_ms"])
        self.assertIsNone(carla["agent"])
        # The detail says the same.
        d = self.api("conversation?address=" + urllib.parse.quote(CARLA))
        self.assertEqual((d["name"], d["state"], d["mode"]), ("Carla Núñez", "waiting", "human"))

        def found(q, mode="all"):
            r = self.api("conversations?mode=%s&q=%s" % (mode, urllib.parse.quote(q)))
            self.assertIsNone(r["next"], "one page holds every match")
            self.assertFalse(r["partial"])
            return sorted(c["key"].split("|")[0] for c in r["conversations"])
        self.assertEqual(found("ana"), [ANA])                 # case folded
        self.assertEqual(found("  SOUZA "), [ANA])            # trimmed
        self.assertEqual(found("nunez"), [CARLA])             # accents folded
        self.assertEqual(found("Núñez"), [CARLA])
        self.assertEqual(found("1111"), [ANA])                # digits of the number
        self.assertEqual(found("+55 11 98888-2222"), [BRUNO])  # as people type it
        self.assertEqual(found("98888"), [ANA, BRUNO, CARLA])
        self.assertEqual(found("carla", mode="queue"), [CARLA])
        self.assertEqual(found("ana", mode="queue"), [])
        self.assertEqual(found("zzz"), [])
        self.assertEqual(found("4444"), [])
        self.assertEqual(found(""), [ANA, BRUNO, CARLA])
        counts = self.api("conversations?q=zzz")["counts"]
        self.assertEqual(counts, {"ai": 1, "escalating": 0, "human": 2}, "counts stay global")
        st, _, _ = self.get("/console/api/conversations?q=" + "a" * 101, bearer())
        self.assertEqual(st, 400)

    def test_own_messages_and_hand_back_are_labelled(self):
        p = self.scenario()
        p.customer(BRUNO, "thanks")
        wait_for(lambda: self.mode(BRUNO) == "ai", 15, what="Marta closing the chat")
        wait_for(lambda: NO_AGENT in [m["body"] for m in p.whatsapp(CARLA)], 15,
                 what="Carla told no agent is free")

        st, raw, _ = self.get("/console/api/conversation?address=" + urllib.parse.quote(BRUNO), bearer())
        self.assertEqual(st, 200)
        d = json.loads(raw)
        kinds = [(h["role"], h["kind"]) for h in d["history"]]
        self.assertEqual(kinds, [("customer", "message"), ("ai", "holding"), ("agent", "message"),
                                 ("customer", "message"), ("agent", "message"),
                                 ("system", "handback")])
        hold = d["history"][1]
        self.assertEqual((hold["text"], hold["setting"]), (HOLDING, "handoff.holding_message"))
        back = d["history"][-1]
        show = p.show(BRUNO)
        tl = {t["event"]: t for t in show["timeline"]}
        self.assertEqual(back["handback"]["path"], "task_completed")
        self.assertEqual(back["handback"]["agent"], "Marta")
        self.assertEqual(back["handback"]["agent_since_ms"], tl["accepted"]["at_ms"])
        self.assertEqual(back["handback"]["at_ms"], tl["handed_back"]["at_ms"])
        self.assertRegex(back["text"], r"^Handed back to the AI \u2014 task completed, "
                                       r"after \d+ s with Marta$")
        # The router's note to the LLM stays in the store, never in the console.
        self.assertIn("You are the assistant again", show["history"][-1]["text"])
        for words in ("You are the assistant", "human stretch", "do not say"):
            self.assertNotIn(words, raw)

        d = self.api("conversation?address=" + urllib.parse.quote(CARLA))
        own = [(h["kind"], h.get("setting"), h["text"]) for h in d["history"] if h["role"] == "ai"]
        self.assertEqual(own, [("holding", "handoff.holding_message", HOLDING),
                               ("notice", "handoff.no_agent_message", NO_AGENT)])
        d = self.api("conversation?address=" + urllib.parse.quote(ANA))
        self.assertEqual([(h["role"], h["kind"]) for h in d["history"]],
                         [("customer", "message"), ("ai", "message")], "the AI's own words")

    def test_reports_on_a_known_scenario(self):
        p = self.scenario()
        p.customer(BRUNO, "thanks")
        wait_for(lambda: self.mode(BRUNO) == "ai", 15, what="Marta closing the chat")
        t1 = int(time.time() * 1000) + 1
        tl = p.show(BRUNO)["timeline"]
        waited = next(t["at_ms"] for t in tl if t["event"] == "accepted") - \
            next(t["at_ms"] for t in tl if t["event"] == "escalated")
        self.assertGreaterEqual(waited, MARTA["accept_after_ms"])

        r = self.api("reports?from_ms=%d&to_ms=%d" % (self.t0 - 1000, t1))
        self.assertEqual(r["conversations"], {"active": 3, "ai_only": 1, "with_person": 2,
                                              "ai_only_share": 1 / 3})
        es = r["escalations"]
        self.assertEqual(es["total"], 2)
        self.assertEqual(es["by_trigger"], {"rule": 2, "tool": 0, "tag": 0, "ai_failure": 0,
                                            "voice": 0, "operator": 0, "other": 0})
        hours = es["per_hour"]
        self.assertEqual(hours["step_ms"], 3600000)
        self.assertEqual(hours["start_ms"], (self.t0 - 1000) // 3600000 * 3600000)
        self.assertEqual(sum(hours["counts"]), 2)
        self.assertEqual(len(hours["counts"]), -(-(t1 - hours["start_ms"]) // 3600000))
        ta = r["time_to_agent"]
        self.assertEqual((ta["accepted"], ta["not_accepted"], ta["waiting"]), (1, 0, 1))
        self.assertEqual((ta["median_ms"], ta["p90_ms"], ta["max_ms"]), (waited, waited, waited))
        self.assertEqual([b["count"] for b in ta["bins"]], [1, 0, 0, 0, 0, 0, 0, 0], "under 30 s")
        self.assertEqual((ta["bins"][0]["from_ms"], ta["bins"][0]["to_ms"], ta["bins"][-1]["to_ms"]),
                         (0, 30000, None))
        self.assertEqual(r["handbacks"]["total"], 1)
        self.assertEqual(r["handbacks"]["by_path"], {"agent_closed": 0, "task_completed": 1,
                                                     "operator": 0, "inactivity_timeout": 0,
                                                     "no_agent": 0, "reset": 0, "other": 0})
        self.assertEqual((r["scan"]["conversations"], r["scan"]["truncated"]), (3, False))

        # A period before any of it: nothing, and no share of nothing.
        r = self.api("reports?from_ms=%d&to_ms=%d" % (self.t0 - 7200000, self.t0 - 3600000))
        self.assertEqual(r["conversations"], {"active": 0, "ai_only": 0, "with_person": 0,
                                              "ai_only_share": None})
        self.assertEqual((r["escalations"]["total"], r["handbacks"]["total"]), (0, 0))
        self.assertEqual(r["escalations"]["per_hour"]["counts"], [0, 0] if self.t0 % 3600000 else [0],
                         "the hours the period touches")
        # Defaults: the last 24 hours.
        r = self.api("reports")
        self.assertEqual(r["to_ms"] - r["from_ms"], 86400000)
        self.assertEqual(r["escalations"]["total"], 2)
        for bad in ("from_ms=x", "to_ms=-5", "from_ms=10&to_ms=10", "from_ms=0&to_ms=%d" % (367 * 86400000)):
            st, _, _ = self.get("/console/api/reports?" + bad, bearer())
            self.assertEqual(st, 400, bad)
        st, _, _ = self.get("/console/api/reports")
        self.assertEqual(st, 401)


class TestConsoleOwnMessagesPerNumber(ConsoleCase):
    """The closed-hours holding message (%h and %n expanded) and a number's
    own holding message ([number] section) are baton's, not the AI's."""
    # Open one minute a week, on a day that is not today: closed now.
    day = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"][(int(time.time() // 86400) + 5) % 7]
    CLOSED = "We answer %h. A person will write to you on %n."
    SHOP_HOLD = "Un momento, te paso con el equipo de la tienda."

    def test_closed_and_per_number_messages(self):
        conf = tempfile.mkdtemp(prefix="baton-console-conf-")
        self.addCleanup(shutil.rmtree, conf, True)
        path = os.path.join(conf, "baton.conf")
        with open(path, "w") as f:
            f.write('business.hours = "%s 03:00-03:01"\nhandoff.closed_message = "%s"\n'
                    '[number %s]\nbusiness.hours = ""\nhandoff.holding_message = "%s"\n'
                    % (self.day, self.CLOSED, SHOP, self.SHOP_HOLD))
        p = self.pipeline(env={"BATON_CONFIG": path})
        p.customer(ANA, "quiero hablar con una persona")
        p.customer(ANA, "quiero hablar con una persona", to=SHOP)
        closed = wait_for(lambda: [m["body"] for m in p.whatsapp(ANA) if m["body"].startswith("We answer")],
                          15, what="the closed message")
        wait_for(lambda: self.SHOP_HOLD in [m["body"] for m in p.whatsapp(ANA)], 15,
                 what="the shop's holding message")
        d = self.api("conversation?address=" + urllib.parse.quote(ANA + "|" + BUSINESS))
        own = [(h["kind"], h.get("setting"), h["text"]) for h in d["history"] if h["role"] == "ai"]
        self.assertEqual(own, [("holding", "handoff.closed_message", closed[0])])
        d = self.api("conversation?address=" + urllib.parse.quote(ANA + "|" + SHOP))
        own = [(h["kind"], h.get("setting"), h["text"]) for h in d["history"] if h["role"] == "ai"]
        self.assertEqual(own, [("holding", "handoff.holding_message", self.SHOP_HOLD)])


def dots(masked_addr):
    """A masked address as the page shows it: no whatsapp: prefix, hidden digits as dots."""
    return masked_addr.replace("whatsapp:", "").replace("*", "\u2022")


@unittest.skipIf(webdriver.available(), "browser test: %s" % webdriver.available())
class TestConsoleBrowser(ConsoleCase):
    def replay_stream(self, p):
        """A streamgen stream with escalations, replayed into ingress; returns its customers."""
        tool = find_streamgen(p.bindir)
        if not tool:
            self.skipTest("streamgen not built (make test builds it)")
        tmp = tempfile.mkdtemp(prefix="baton-console-stream-")
        self.addCleanup(shutil.rmtree, tmp, True)
        out = os.path.join(tmp, "s")
        args = ("--out", out, "--messages", 60, "--conversations", 12, "--escalate", 0.3,
                "--handback", 0, "--rate", 1000, "--seed", 5)
        r = subprocess.run([tool] + [str(a) for a in args], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"(\d+) escalations", r.stdout)
        self.assertTrue(m and int(m.group(1)) >= 2, r.stdout)
        env = p.env()
        env["BATON_HTTP_PORT"] = str(p.ingress_port)
        r = subprocess.run([os.path.join(p.bindir, "baton-replay"), "--json", "--speed", "max",
                            "--concurrency", "1", out], env=env, capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        s = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual((s["failed"], s["sent"]), (0, s["acknowledged"]), s)
        return int(m.group(1))

    def test_operator_hands_back_and_escalates_in_the_browser(self):
        p = self.pipeline()
        p.agent(**AGENT)  # escalations are accepted: the queue holds conversations with an agent
        escalations = self.replay_stream(p)
        # A message with markup: the page must show it as text.
        p.send(ANA, "<img src=x id=xss onerror=\"document.title='pwned'\"> is the clinic open?")

        def settled():
            q = self.api("conversations?mode=queue")["conversations"]
            return len(q) == escalations and all(r["state"] == "with_agent" for r in q) and q
        queue = wait_for(settled, 30, what="every escalation accepted by the agent")
        total = self.api("conversations")["total"]
        target = queue[0]  # waiting longest
        self.assertTrue(target["name"], "streamgen's customers have WhatsApp names")
        who = target["key"].split("|")[0]

        shots = artifacts_dir()
        b = webdriver.Browser()
        self.addCleanup(b.close)
        try:
            self.drive(b, p, target, who, total, escalations, shots)
        except Exception:
            # What the page looked like when it failed.
            try:
                print("screenshot of the failure: " +
                      b.screenshot(os.path.join(shots, "console-failed.png")))
                print("browser console: %s" % b.console_log())
            except Exception:
                pass
            raise

    def drive(self, b, p, target, who, total, escalations, shots):
        key = target["key"]
        b.get(self.url("/console"))
        b.wait(lambda: b.find("#token").displayed, what="the login form")
        self.assertFalse(b.find("#app-view").displayed)

        # A wrong token is refused on the page.
        b.find("#token").send_keys("not-the-token")
        b.click("#login-button")
        b.wait(lambda: "not right" in b.find("#login-error").text, what="the wrong-token message")
        self.assertFalse(b.find("#app-view").displayed)

        # The right one, typed; "Signed in." goes away by itself.
        b.find("#token").clear().send_keys(TOKEN)
        b.click("#login-button")
        b.wait(lambda: b.find("#app-view").displayed, what="the console after login")
        self.assertEqual(b.js("return sessionStorage.getItem('baton.console.token')"), TOKEN)
        self.assertEqual(b.find("#status").text, "Signed in.")
        b.wait(lambda: not b.find("#status").displayed, timeout=6, what="the sign-in banner gone")

        # The live list and the queue, with names; numbers stay masked.
        b.wait(lambda: len(b.find_all("#conversation-rows tr")) == total, what="every conversation listed")
        b.wait(lambda: len(b.find_all("#queue li")) == escalations, what="the escalation queue")
        row_text = b.wait(lambda: b.find('#conversation-rows tr[data-key="%s"]' % key).text)
        self.assertIn(target["name"] + " \u00b7 " + dots(target["customer"]), row_text)
        self.assertIn("with Gonzalo", row_text)
        state = b.find('#conversation-rows tr[data-key="%s"] .badge.state' % key)
        self.assertEqual((state.attr("data-state"), state.attr("title")), ("with_agent", "mode human"))
        self.assertNotIn(who.replace("whatsapp:", ""), b.find("#conversation-rows").text,
                         "customers are masked")
        self.assertRegex(b.find('#conversation-rows tr[data-key="%s"] .when' % key).text,
                         r"^\d\d:\d\d$", "today: the time alone")
        item = '#queue .queue-item[data-key="%s"]' % key
        b.wait(lambda: "rule" in b.find(item).text, what="the trigger in the queue")
        self.assertIn(target["name"], b.find(item).text)
        self.assertEqual(b.find("#queue-count").text, str(escalations))
        # Everyone has an agent: green, "with Gonzalo", and nobody counted as waiting.
        self.assertEqual({q.attr("data-state") for q in b.find_all("#queue .queue-item")}, {"with_agent"})
        self.assertRegex(b.find(item + " .q-wait").text, r"^with Gonzalo (\d+s|\d+m \d\ds)$")
        self.assertEqual(b.find("#queue-waiting").text, "0 waiting")
        self.assertEqual(b.js("return document.title"), "baton \u00b7 operator console")

        # Dates on times that are not today, in this browser's time zone.
        self.assertRegex(b.js("return batonConsole.fmtTime(Date.now() - 3 * 86400000)"),
                         r"^(Sun|Mon|Tue|Wed|Thu|Fri|Sat) \d{1,2} "
                         r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)( \d{4})? \d\d:\d\d$")
        self.assertRegex(b.js("return batonConsole.fmtTime(Date.now())"), r"^\d\d:\d\d$")
        self.assertEqual(b.js("var d = new Date(2020, 10, 30, 14, 5); return batonConsole.fmtTime(d.getTime())"),
                         "Mon 30 Nov 2020 14:05")

        # Open it from the queue: transcript and timeline.
        b.click(item)
        b.wait(lambda: b.find("#detail-panel").attr("data-key") == key, what="the conversation open")
        b.wait(lambda: {li.attr("data-role") for li in b.find_all("#transcript li")} >=
               {"customer", "ai", "agent"}, what="customer, ai and agent turns")
        self.assertEqual(b.find("#detail-mode").text, "human")
        self.assertEqual(b.find("#detail-state").text, "with Gonzalo")
        self.assertEqual(b.find("#detail-state").attr("data-state"), "with_agent")
        self.assertIn(target["name"], b.find("#detail-customer").text)
        self.assertRegex(b.find("#detail-facts .state-clock").text, r"^With Gonzalo \u00b7 (\d+s|\d+m \d\ds)$")
        transcript = b.find("#transcript").text
        self.assertIn("quiero hablar con una persona", transcript)
        self.assertIn(GREETING, transcript)
        # The holding message is baton's, not the AI's.
        hold = b.find('#transcript li[data-kind="holding"]')
        self.assertEqual(hold.find(".role").text.lower(), "baton (holding message)")
        self.assertEqual(hold.find(".text").text, "Your conversation is being transferred to our team.")
        events = b.wait(lambda: [li.attr("data-event") for li in b.find_all("#timeline li")])
        self.assertIn("escalated", events)
        self.assertIn("accepted", events)
        self.assertFalse(b.find("#handback").prop("disabled"))
        self.assertTrue(b.find("#escalate").prop("disabled"))

        # Hand back to AI: the page shows ai, and so does batonctl.
        b.click("#handback")
        b.wait(lambda: b.find("#detail-mode").text == "ai", what="mode ai on the page")
        b.wait(lambda: "Handed back" in b.find("#status").text, what="the result in the status line")
        self.assertEqual(b.find("#status").attr("role"), "status")
        self.assertEqual(self.mode(who), "ai")
        rc, out, err = p.ctl("show", who)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"mode\s+ai")
        self.assertEqual(p.show(who)["timeline"][-1]["event"], "handed_back")
        b.wait(lambda: not b.find_all('#queue li[data-key="%s"]' % key), what="it leaves the queue")
        b.wait(lambda: "ai" in b.find('#conversation-rows tr[data-key="%s"]' % key).text,
               what="its row says ai")
        b.wait(lambda: [li.attr("data-event") for li in b.find_all("#timeline li")][-1] == "handed_back",
               what="handed_back in the page's timeline")
        # The hand-back reads as a line for people, not the LLM's instructions.
        back = b.wait(lambda: b.find_all('#transcript li[data-role="system"]'), what="the hand-back turn")[-1]
        self.assertRegex(back.find(".text").text,
                         r"^Handed back to the AI \u2014 by an operator, after \d+ (s|min) with Gonzalo$")
        self.assertNotIn("You are the assistant", b.find("#transcript").text)
        self.assertFalse(b.find("#detail-state").displayed, "no state badge in ai mode")

        # The markup message is text, not HTML.
        p.agent(enabled=False)  # the next escalations wait in the queue
        ana = ANA + "|" + BUSINESS
        b.click('#conversation-rows tr[data-key="%s"] .open-conv' % ana)
        b.wait(lambda: b.find("#detail-panel").attr("data-key") == ana, what="ANA open")
        b.wait(lambda: "<img src=x" in b.find("#transcript").text, what="the markup shown as text")
        self.assertEqual(b.find_all("#transcript img"), [])
        self.assertFalse(b.js("return !!document.getElementById('xss')"))
        self.assertNotEqual(b.js("return document.title"), "pwned")

        # Sound on (remembered in this browser); the click itself plays a sample.
        self.assertEqual(b.find("#sound-toggle").attr("aria-pressed"), "false")
        b.click("#sound-toggle")
        self.assertEqual(b.find("#sound-toggle").attr("aria-pressed"), "true")
        self.assertEqual(b.js("return localStorage.getItem('baton.console.sound')"), "on")
        self.assertEqual(b.find("#sound-toggle").attr("data-beeps"), "1")

        # Escalate with a reason, through the dialog: waiting for an agent now.
        self.assertTrue(b.find("#handback").prop("disabled"))
        b.click("#escalate")
        b.wait(lambda: b.find("#escalate-dialog").prop("open"), what="the reason dialog")
        b.find("#escalate-reason").send_keys("billing dispute")
        b.click("#escalate-confirm")
        # escalating until the flex-worker has created the task, human after.
        b.wait(lambda: b.find("#detail-mode").text in ("escalating", "human"),
               what="mode escalating on the page")
        b.wait(lambda: "Escalated" in b.find("#status").text, what="the escalation result")
        self.assertIn(self.mode(ANA), ("escalating", "human"))
        self.assertFalse(b.find("#escalate").prop("disabled") and b.find("#handback").prop("disabled"))
        self.assertIn(("escalated", "operator: billing dispute"),
                      [(t["event"], t["detail"]) for t in p.show(ANA)["timeline"]])
        ana_item = '#queue .queue-item[data-key="%s"]' % ana
        b.wait(lambda: "billing dispute" in b.find(ana_item).text,
               what="the new escalation in the queue with its reason")
        self.assertEqual(b.find(ana_item).attr("data-state"), "waiting")
        self.assertIn("Ana \u00b7 " + dots(masked(ANA)), b.find(ana_item).text)
        b.wait(lambda: b.find("#detail-state").text == "waiting", what="waiting in the detail")
        clock = b.find("#detail-facts .state-clock").text
        self.assertRegex(clock, r"^Waiting for an agent \u00b7 \d+s$")
        b.wait(lambda: b.find("#detail-facts .state-clock").text != clock, timeout=4,
               what="the waiting clock running")
        b.wait(lambda: b.js("return document.title") == "(1) baton \u00b7 operator console",
               what="the title counting who waits")
        self.assertEqual(b.find("#queue-waiting").text, "1 waiting")
        self.assertEqual(b.find("#sound-toggle").attr("data-beeps"), "1", "no beep for my own escalation")

        # A customer asks for a person: a beep and a word in the status line.
        carla = "whatsapp:+5511988883333"
        p.send(carla, "quiero hablar con una persona", name="Carla")
        b.wait(lambda: b.find("#sound-toggle").attr("data-beeps") == "2", what="the beep")
        b.wait(lambda: "New escalation: Carla" in b.find("#status").text, what="the news")
        b.wait(lambda: b.js("return document.title") == "(2) baton \u00b7 operator console",
               what="two waiting in the title")

        # Search by name, then by number.
        b.find("#search").send_keys("carl")
        b.wait(lambda: [r.attr("data-key") for r in b.find_all("#conversation-rows tr")] ==
               [carla + "|" + BUSINESS], what="Carla alone found by name")
        b.find("#search").clear().send_keys("1111")
        b.wait(lambda: [r.attr("data-key") for r in b.find_all("#conversation-rows tr")] == [ana],
               what="Ana alone found by her number's digits")
        b.find("#search").clear().send_keys("nobody-has-this-name")
        b.wait(lambda: b.find("#list-empty").displayed, what="nothing found")
        self.assertIn("No conversation matches", b.find("#list-empty").text)
        b.find("#search").clear()
        b.js("var s = document.getElementById('search'); s.dispatchEvent(new Event('input'));")
        b.wait(lambda: len(b.find_all("#conversation-rows tr")) == total + 1, what="every conversation again")

        # The picture: the queue (waiting and with an agent), the list, and the
        # handed-back conversation open (its hand-back line, its whole timeline).
        b.click('#conversation-rows tr[data-key="%s"] .open-conv' % key)
        b.wait(lambda: b.find("#detail-panel").attr("data-key") == key, what="the first one again")
        b.wait(lambda: "system" in {li.attr("data-role") for li in b.find_all("#transcript li")},
               what="the hand-back's system turn")
        b.js("window.scrollTo(0, 0); document.querySelector('.table-wrap').scrollTop = 0;")
        path = b.screenshot(os.path.join(shots, "console.png"))
        self.assertGreater(os.path.getsize(path), 10000)
        print("console screenshot: " + path)

        # Reports: the same figures as the API, drawn by uPlot.
        report = self.api("reports")
        b.click("#tab-reports")
        b.wait(lambda: b.find("#reports-view").displayed, what="the reports view")
        self.assertFalse(b.find("#conversations-view").displayed)
        self.assertTrue(b.js("return location.hash") == "#reports")
        b.wait(lambda: b.js("return document.querySelectorAll('#reports-view .uplot canvas').length") == 5,
               what="five uPlot charts")
        self.assertEqual(b.find("#tile-escalations .tile-value").text, str(report["escalations"]["total"]))
        self.assertEqual(b.find("#tile-active .tile-value").text, str(report["conversations"]["active"]))
        self.assertEqual(b.find("#tile-ai-only .tile-value").text,
                         "%d%%" % round(report["conversations"]["ai_only_share"] * 100))
        self.assertEqual(b.find("#tile-handbacks .tile-value").text, "1")
        self.assertGreater(b.js("return document.querySelector('#chart-hours canvas').width"), 200)
        for period in ("7d", "30d"):
            b.click('.period-btn[data-period="%s"]' % period)
            b.wait(lambda: b.find('.period-btn[data-period="%s"]' % period).attr("aria-pressed") == "true",
                   what="the %s period" % period)
            b.wait(lambda: b.js("return document.querySelectorAll('#reports-view .uplot canvas').length") == 5,
                   what="the charts redrawn")
        b.js("document.getElementById('period-from').value = arguments[0];"
             "document.getElementById('period-to').value = arguments[0];",
             time.strftime("%Y-%m-%d"))
        b.click("#period-apply")
        b.wait(lambda: b.find("#period-custom").attr("data-active") == "true", what="the custom period")
        b.wait(lambda: b.find("#tile-escalations .tile-value").text == str(report["escalations"]["total"]),
               what="today's escalations")
        self.assertIn("From", b.find("#reports-period").text)
        b.click('.period-btn[data-period="24h"]')
        b.wait(lambda: b.find('.period-btn[data-period="24h"]').attr("aria-pressed") == "true" and
               b.find("#period-custom").attr("data-active") == "false", what="the last 24 hours again")
        b.wait(lambda: b.js("return document.querySelectorAll('#reports-view .uplot canvas').length") == 5,
               what="the charts redrawn")
        # Tall enough for every chart in the picture.
        b.resize(1280, 1560)
        b.wait(lambda: b.js("return window.innerHeight") > 1300, what="the taller window")
        b.wait(lambda: b.js("return document.querySelectorAll('#reports-view .uplot canvas').length") == 5,
               what="the charts after the resize")
        b.js("window.scrollTo(0, 0);")
        path = b.screenshot(os.path.join(shots, "console-reports.png"))
        self.assertGreater(os.path.getsize(path), 10000)
        print("reports screenshot: " + path)
        b.resize(1280, 900)
        b.click("#tab-conversations")
        b.wait(lambda: b.find("#conversations-view").displayed, what="back to the conversations")

        # The page never logged an error (CSP violations included) but the
        # wrong token's 401 above.
        errors = [e for e in b.console_log() if e.get("level") == "SEVERE" and
                  "401 (Unauthorized)" not in e.get("message", "")]
        self.assertEqual(errors, [])

        # Sign out: back to the login form, the token forgotten.
        b.click("#logout")
        b.wait(lambda: b.find("#login-view").displayed, what="the login form again")
        self.assertIsNone(b.js("return sessionStorage.getItem('baton.console.token')"))
        self.assertEqual(b.js("return document.title"), "baton \u00b7 operator console")


CAPTION = "This is the rash on my arm"
TRANSCRIPT = "Hi, this is Ana, the rash on my arm is itchy since Monday."


class MediaCase(ConsoleCase):
    # The AI does not look at photos here: every download of one is the
    # console's, so counting them tests the console.
    env = {"BATON_CONSOLE_TOKEN": TOKEN, "BATON_AI_IMAGES": "false"}

    def media_turns(self, p, n):
        """The customer turns with media once there are n of them (the conversation document's)."""
        def turns():
            st, text, _ = self.get("/console/api/conversation?address=" + urllib.parse.quote(ANA),
                                   bearer())
            if st != 200:
                return None
            doc = json.loads(text)
            got = [h for h in doc["history"] if h["role"] == "customer" and h.get("media")]
            return len(got) >= n and (doc["key"], got)
        return wait_for(turns, 20, what="%d customer turns with media" % n)

    def media(self, key, seq, i, headers=None, method="GET"):
        path = "/console/api/conversations/%s/media/%s/%s" % (urllib.parse.quote(key, safe=""), seq, i)
        return request_bytes(method, self.url(path), bearer() if headers is None else headers)


class TestConsoleMedia(MediaCase):
    def test_media_route_serves_checked_bytes_and_never_twilio_urls(self):
        p = self.pipeline()
        sent = [(MEDIA_JPEG, CAPTION), (MEDIA_OGG, ""), (MEDIA_PDF, "my exam results"),
                (MEDIA_MISSING, ""), (MEDIA_LYING, "")]
        for sid, caption in sent:
            st, _, _ = p.send_media(ANA, sid, caption)
            self.assertEqual(st, 200)
        st, _, _ = p.send_rich(ANA, "location", location=("-23.5614", "-46.6559", "Av. Paulista 1000",
                                                          "Clinica Sol"))
        self.assertEqual(st, 200)
        key, turns = self.media_turns(p, len(sent) + 1)
        by_sid = {}
        for h in turns:
            for it in h["media"].get("items", []):
                by_sid[it["url"].rsplit("/", 1)[1]] = h
        self.assertEqual(set(by_sid), {sid for sid, _ in sent})
        self.assertEqual(by_sid[MEDIA_JPEG]["text"], CAPTION)
        p.wait_idle(15)
        self.assertEqual(p.media_fetches(MEDIA_JPEG), [], "nothing downloaded the photo yet")

        # The bytes, exactly, with the checked type; private, never sniffed,
        # inert if opened on their own; documents are attachments.
        for sid, name, ctype, disposition in ((MEDIA_JPEG, "rash.jpg", "image/jpeg", "inline"),
                                              (MEDIA_OGG, "voice.ogg", "audio/ogg", "inline"),
                                              (MEDIA_PDF, "exam.pdf", "application/pdf", "attachment")):
            st, body, h = self.media(key, by_sid[sid]["seq"], 0)
            self.assertEqual(st, 200, (sid, body[:200]))
            self.assertEqual(body, media_fixture(name), name)
            self.assertEqual(h["Content-Type"], ctype)
            self.assertEqual(h["Cache-Control"], "private")
            self.assertEqual(h["X-Content-Type-Options"], "nosniff")
            self.assertEqual(h["Content-Disposition"], disposition)
            csp = h["Content-Security-Policy"]
            self.assertIn("default-src 'none'", csp)
            self.assertIn("sandbox", csp)
        # HEAD answers like GET, without the bytes.
        st, body, h = self.media(key, by_sid[MEDIA_JPEG]["seq"], 0, method="HEAD")
        self.assertEqual((st, body, h["Content-Type"]), (200, b"", "image/jpeg"))

        # The console fetched with the account's credentials: the page never
        # had them nor the URL.
        fetches = p.media_fetches(MEDIA_JPEG)
        self.assertTrue(fetches, "the console fetched the photo from the fake Twilio")
        self.assertEqual({f["auth_user"] for f in fetches}, {ACCOUNT_SID})

        # Twilio's answer was wrong: 502 and why, never the URL or a secret.
        for sid, outcome, reason in ((MEDIA_MISSING, "http", "HTTP 404"),
                                     (MEDIA_LYING, "mismatch", "not what its type says")):
            st, body, h = self.media(key, by_sid[sid]["seq"], 0)
            self.assertEqual(st, 502, sid)
            self.assertEqual(h["Content-Type"], "application/json")
            err = json.loads(body)
            self.assertEqual(err["outcome"], outcome, err)
            self.assertIn(reason, err["reason"])
            self.assertNotIn("/2010-04-01/", body.decode())
            self.assertNotIn(AUTH_TOKEN, body.decode())
        self.assertTrue(p.log_contains("console", "not fetched (mismatch)"))

        # Not there: 404 (a turn without items, no such item, no such turn,
        # no such conversation, not a number).
        location = [h for h in turns if h["media"].get("loc")]
        self.assertEqual(len(location), 1)
        self.assertEqual(location[0]["media"]["loc"]["label"], "Clinica Sol")
        for args in ((key, location[0]["seq"], 0), (key, by_sid[MEDIA_JPEG]["seq"], 1),
                     (key, 9999, 0), (key, 0, 0), (BRUNO + "|" + BUSINESS, 1, 0),
                     (key, "x", 0), (key, by_sid[MEDIA_JPEG]["seq"], "-1"),
                     (key, by_sid[MEDIA_JPEG]["seq"], "")):
            st, _, _ = self.media(*args)
            self.assertEqual(st, 404, args)
        st, _, _ = request_bytes("GET", self.url("/console/api/conversations/%s/photo/1/0" %
                                                 urllib.parse.quote(key, safe="")), bearer())
        self.assertEqual(st, 404)

        # The console's own credentials, as every API route; GET only.
        seq = by_sid[MEDIA_JPEG]["seq"]
        for hdr in ({}, bearer("nope"), {"Authorization": "Basic " +
                                         base64.b64encode(b"x:y").decode()}):
            st, body, _ = self.media(key, seq, 0, headers=hdr)
            self.assertEqual((st, json.loads(body)), (401, {"error": "unauthorized"}), hdr)
        st, _, h = self.media(key, seq, 0, method="POST")
        self.assertEqual(st, 405)
        self.assertEqual(len(p.media_fetches(MEDIA_JPEG)), len(fetches),
                         "refused requests fetched nothing")

    def test_at_most_eight_downloads_at_once_and_the_page_waits_its_turn(self):
        p = self.pipeline()
        slow = p.add_media("image/jpeg", media_fixture("rash.jpg"), delay_ms=1500)
        # Ten photos in one message (WhatsApp's most), each 1.5 s to download.
        st, _, _ = p.send_rich(ANA, "image", "ten photos", media=[(slow, "image/jpeg")] * 10)
        self.assertEqual(st, 200)
        key, turns = self.media_turns(p, 1)
        seq = turns[0]["seq"]
        self.assertEqual(len(turns[0]["media"]["items"]), 10)
        results = [None] * 10

        def get(i):
            results[i] = self.media(key, seq, i)
        threads = [threading.Thread(target=get, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        codes = sorted(r[0] for r in results)
        self.assertEqual(codes, [200] * 8 + [503] * 2, codes)
        for st, body, h in results:
            if st == 503:
                self.assertEqual(h["Retry-After"], "1")
                self.assertIn("too many media downloads", json.loads(body)["error"])
            else:
                self.assertEqual(body, media_fixture("rash.jpg"))
        # Once they are done, the next ones are served.
        st, body, _ = self.media(key, seq, 9)
        self.assertEqual((st, body), (200, media_fixture("rash.jpg")))

    def test_page_policy_allows_its_own_media_only(self):
        self.pipeline(start=("router", "console"))
        st, _, h = self.get("/console")
        csp = h["Content-Security-Policy"]
        # Blob URLs the page made itself (media fetched with its token).
        self.assertIn("img-src 'self' data: blob:", csp)
        self.assertIn("media-src 'self' blob:", csp)
        self.assertIn("default-src 'self'", csp)


@unittest.skipIf(webdriver.available(), "browser test: %s" % webdriver.available())
class TestConsoleMediaBrowser(MediaCase):
    def browser(self):
        b = webdriver.Browser()
        self.addCleanup(b.close)
        return b

    def open_ana(self, b, key):
        b.get(self.url("/console"))
        b.wait(lambda: b.find("#token").displayed, what="the login form")
        b.find("#token").send_keys(TOKEN)
        b.click("#login-button")
        b.wait(lambda: b.find("#app-view").displayed, what="the console after login")
        b.click('#conversation-rows tr[data-key="%s"] .open-conv' % key)
        b.wait(lambda: b.find("#detail-panel").attr("data-key") == key, what="Ana's conversation open")

    def test_transcript_shows_photo_voice_note_document_location_and_button(self):
        p = self.pipeline()
        for sid, caption in ((MEDIA_JPEG, CAPTION), (MEDIA_OGG, ""), (MEDIA_PDF, ""),
                             (MEDIA_MISSING, "")):
            self.assertEqual(p.send_media(ANA, sid, caption)[0], 200)
        p.send_rich(ANA, "location", location=("-23.5614", "-46.6559", "Av. Paulista 1000", "Clinica Sol"))
        p.send_rich(ANA, "button", "Book", button=("Book", "book_dermatology"))
        # Ten slow photos at once: more than the console downloads together.
        slow = p.add_media("image/jpeg", media_fixture("rash.jpg"), delay_ms=1000)
        p.send_rich(ANA, "image", "", media=[(slow, "image/jpeg")] * 10)
        key, turns = self.media_turns(p, 7)
        seqs = {}
        for h in turns:
            for it in h["media"].get("items", []):
                seqs[it["url"].rsplit("/", 1)[1]] = h["seq"]

        b = self.browser()
        try:
            self.open_ana(b, key)
            fig = '#transcript li[data-seq="%d"] figure[data-media-kind="%s"]'
            # The photo: a thumbnail the browser decoded (the fixture is 160x120).
            img = fig % (seqs[MEDIA_JPEG], "image")
            b.wait(lambda: b.find(img).attr("data-state") == "loaded", what="the photo loaded")
            b.wait(lambda: b.js("return document.querySelector(arguments[0] + ' img').naturalWidth", img) == 160,
                   what="the photo decoded")
            self.assertTrue(b.find(img + " img").attr("src").startswith("blob:"))
            self.assertEqual(b.find(img + " img").attr("alt"), "photo (image/jpeg)")
            self.assertIn(CAPTION, b.find('#transcript li[data-seq="%d"] .text' % seqs[MEDIA_JPEG]).text)
            # The voice note: a player with the Ogg the browser can read.
            au = fig % (seqs[MEDIA_OGG], "audio")
            b.wait(lambda: b.find(au).attr("data-state") == "loaded", what="the voice note loaded")
            self.assertTrue(b.find(au + " audio").attr("src").startswith("blob:"))
            self.assertTrue(b.find(au + " audio").prop("controls"))
            b.wait(lambda: b.js("return document.querySelector(arguments[0] + ' audio').readyState", au) >= 1,
                   what="the voice note's metadata read by the browser")
            self.assertAlmostEqual(b.js("return document.querySelector(arguments[0] + ' audio').duration", au),
                                   1.0, delta=0.2)
            # The PDF: a link that saves the bytes.
            pdf = fig % (seqs[MEDIA_PDF], "pdf")
            b.wait(lambda: b.find(pdf).attr("data-state") == "loaded", what="the PDF loaded")
            link = b.find(pdf + " a.media-link")
            self.assertTrue(link.attr("href").startswith("blob:"))
            self.assertTrue(link.attr("download").endswith(".pdf"))
            self.assertEqual(link.text, "PDF document (application/pdf)")
            # What Twilio would not give: said on the turn, nothing broken.
            bad = fig % (seqs[MEDIA_MISSING], "image")
            b.wait(lambda: b.find(bad).attr("data-state") == "failed", what="the missing photo failed")
            self.assertIn("HTTP 404", b.find(bad + " .media-error").text)
            # Location and button as text.
            b.wait(lambda: b.find_all('#transcript .media-text[data-media-kind="location"]'),
                   what="the location")
            self.assertEqual(b.find('#transcript .media-text[data-media-kind="location"]').text,
                             "shared a location: Clinica Sol, Av. Paulista 1000 (-23.5614, -46.6559)")
            self.assertEqual(b.find('#transcript .media-text[data-media-kind="button"]').text,
                             "tapped: Book")
            # The ten: those the console said 503 to waited and asked again.
            ten = '#transcript li[data-seq="%d"] figure' % seqs[slow]
            b.wait(lambda: [f.attr("data-state") for f in b.find_all(ten)] == ["loaded"] * 10,
                   timeout=20, what="the ten slow photos loaded")
            # The redraws every 2 s keep the same blobs (no new downloads).
            p.wait_idle(15)
            n = len(p.media_fetches())
            src = b.find(img + " img").attr("src")
            p.send(ANA, "thanks")
            b.wait(lambda: "thanks" in b.find("#transcript").text, what="a new turn drawn")
            self.assertEqual(b.find(img + " img").attr("src"), src)
            self.assertEqual(len(p.media_fetches()), n)
            # The page never held a Twilio URL nor a secret.
            html = b.js("return document.documentElement.outerHTML")
            self.assertNotIn("/2010-04-01/", html)
            self.assertNotIn(AUTH_TOKEN, html)
            self.assertNotIn(ACCOUNT_SID, html)
            b.js("document.querySelector(arguments[0]).scrollIntoView()", img)
            path = b.screenshot(os.path.join(artifacts_dir(), "console-media.png"))
            print("media screenshot: " + path)
            # No error but the missing photo's 502 (CSP violations would be here).
            errors = [e for e in b.console_log() if e.get("level") == "SEVERE" and
                      "502" not in e.get("message", "")]
            self.assertEqual(errors, [])
        except Exception:
            try:
                print("screenshot of the failure: " +
                      b.screenshot(os.path.join(artifacts_dir(), "console-media-failed.png")))
                print("browser console: %s" % b.console_log())
            except Exception:
                pass
            raise

    def test_voice_note_transcript_is_marked(self):
        # transcribe.base_url is the fake LLM's, which wants its key.
        p = self.pipeline(env={"BATON_TRANSCRIBE_API_KEY": LLM_KEY})
        p.set_transcription(text=TRANSCRIPT)
        self.assertEqual(p.send_media(ANA, MEDIA_OGG)[0], 200)

        def transcribed():
            key, turns = self.media_turns(p, 1)
            return turns[0].get("transcript") and (key, turns[0])
        key, turn = wait_for(transcribed, 30, what="the voice note's transcript stored")
        self.assertEqual(turn["text"], TRANSCRIPT)

        b = self.browser()
        self.open_ana(b, key)
        li = '#transcript li[data-seq="%d"]' % turn["seq"]
        b.wait(lambda: b.find(li).attr("data-transcript") == "true", what="the turn marked a transcript")
        self.assertEqual(b.find(li + " .transcript-mark").text, "voice note transcript")
        self.assertEqual(b.find(li + " .text").text, TRANSCRIPT)
        b.wait(lambda: b.find(li + ' figure[data-media-kind="audio"]').attr("data-state") == "loaded",
               what="the voice note beside its transcript")
        # A typed turn is not marked.
        p.send(ANA, "thanks")
        b.wait(lambda: "thanks" in b.find("#transcript").text, what="a typed turn")
        self.assertEqual(len(b.find_all('#transcript li[data-transcript="true"]')), 1)


if __name__ == "__main__":
    unittest.main()
