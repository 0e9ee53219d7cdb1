"""batonctl for the operator: conversations (filters, --json), stats
(modes, escalations by trigger and reason, hand-backs by path), export
(the whole conversation for an audit), purge (the right to erasure, through
the router: everything of the conversation goes, an audit record and a log
line without the number stay, its Flex side is closed, no queued job runs
on it), and reads that never fail while the router writes under load.
"""

import json
import os
import select
import subprocess
import threading
import time
import unittest

from baton_harness import masked, ADMIN_TOKEN, BUSINESS, Pipeline, http, wait_for

ANA = "whatsapp:+5511988881111"    # stays with the AI
BRUNO = "whatsapp:+5511988882222"  # escalated, an agent has it (human)
CARLA = "whatsapp:+5511988883333"  # escalated, then handed back by the operator
HOLD = "Your conversation is being transferred to our team."
GREETING = "Hi, I'm Gonzalo, how can I help you?"
AGENT = dict(identity="Gonzalo", accept_after_ms=100, greeting=GREETING, reply_delay_ms=50,
             replies=[])




class CtlCase(unittest.TestCase):
    env = {}
    agent = AGENT
    latency_ms = 0

    def setUp(self):
        self.p = Pipeline(env=dict(self.env), llm_latency_ms=self.latency_ms)
        self.addCleanup(self.p.close)
        self.p.start_all()
        if self.agent:
            self.p.agent(**self.agent)

    def ctl_json(self, *args):
        rc, out, err = self.p.ctl(*args)
        self.assertEqual(rc, 0, (args, err))
        return json.loads(out)

    def wa(self, who):
        return [m["body"] for m in self.p.whatsapp(who)]

    def mode(self, who):
        return self.p.show(who)["mode"]

    def three_conversations(self):
        """ANA in ai mode, BRUNO with an agent, CARLA handed back by the operator."""
        p = self.p
        for who in (ANA, BRUNO, CARLA):
            p.customer(who, "Where is the clinic located?")
        for who in (ANA, BRUNO, CARLA):
            wait_for(lambda: len(self.wa(who)) == 1, 10, what="first AI reply")
        p.customer(BRUNO, "quiero hablar con una persona")
        p.customer(CARLA, "I want to speak with a human")
        for who in (BRUNO, CARLA):
            wait_for(lambda: GREETING in self.wa(who), 15, what="agent greeting")
        rc, _, err = p.ctl("handback", CARLA)
        self.assertEqual(rc, 0, err)
        wait_for(lambda: self.mode(CARLA) == "ai", 10, what="hand-back")
        self.assertEqual(self.mode(BRUNO), "human")


class TestReports(CtlCase):
    def test_conversations_stats_and_export(self):
        p = self.p
        self.three_conversations()

        # conversations: every one, masked, newest first.
        rc, out, err = p.ctl("conversations")
        self.assertEqual(rc, 0, err)
        self.assertIn("LAST ACTIVITY", out)
        for who in (ANA, BRUNO, CARLA):
            self.assertIn(masked(who), out)
            self.assertNotIn(who, out, "numbers are masked by default")
        rows = self.ctl_json("conversations", "--json")
        self.assertEqual({r["customer"]: r["mode"] for r in rows},
                         {masked(ANA): "ai", masked(BRUNO): "human", masked(CARLA): "ai"})
        stamps = [r["last_activity_ms"] for r in rows]
        self.assertEqual(stamps, sorted(stamps, reverse=True))
        self.assertTrue(all(r["business"] == BUSINESS for r in rows))
        self.assertTrue(all(isinstance(r["last_activity_ms"], int) for r in rows))
        self.assertTrue(all(r["key"].endswith("|" + BUSINESS) for r in rows))
        self.assertEqual({r["customer"]: r["customer_turns"] for r in rows},
                         {masked(ANA): 1, masked(BRUNO): 2, masked(CARLA): 2})
        human = self.ctl_json("conversations", "--mode", "human", "--json")
        self.assertEqual([r["customer"] for r in human], [masked(BRUNO)])
        self.assertTrue(human[0]["flex"]["conversation"].startswith("CH"))
        self.assertTrue(human[0]["flex"]["task"].startswith("WT"))
        self.assertEqual(self.p.show(BRUNO)["flex"]["task"], human[0]["flex"]["task"])
        # Handed back: with the AI, and the table shows no open Flex SIDs for it.
        carla = [r for r in rows if r["customer"] == masked(CARLA)][0]
        self.assertEqual(carla["state"], "ai")
        carla_line = [l for l in out.splitlines() if masked(CARLA) in l][0]
        self.assertNotIn("CH", carla_line)
        self.assertIn(human[0]["flex"]["conversation"],
                      [l for l in out.splitlines() if masked(BRUNO) in l][0])
        self.assertEqual(len(self.ctl_json("conversations", "--limit", "1", "--json")), 1)
        self.assertEqual(len(self.ctl_json("conversations", "--since", "1h", "--json")), 3)
        self.assertEqual(len(self.ctl_json("conversations", "--since", "2020-01-01", "--json")), 3)
        self.assertEqual(self.ctl_json("conversations", "--since", "2999-01-01T00:00Z", "--json"), [])
        self.assertEqual(self.ctl_json("conversations", "--mode", "escalating", "--json"), [])
        for bad in (["--mode", "robot"], ["--since", "yesterday"], ["--limit", "0"], ["--yes"]):
            rc, _, err = p.ctl("conversations", *bad)
            self.assertEqual(rc, 2, (bad, err))
        # log.mask_phone = false shows the numbers.
        p.extra_env["BATON_LOG_MASK_PHONE"] = "false"
        try:
            clear = self.ctl_json("conversations", "--json")
        finally:
            del p.extra_env["BATON_LOG_MASK_PHONE"]
        self.assertEqual({r["customer"] for r in clear}, {ANA, BRUNO, CARLA})

        # stats
        st = self.ctl_json("stats", "--json")
        conv = st["conversations"]
        self.assertEqual(conv["total"], 3)
        self.assertEqual(conv["by_mode"], {"ai": 2, "escalating": 0, "human": 1})
        self.assertEqual(conv["escalated"], 2)
        self.assertAlmostEqual(conv["escalation_rate"], 2 / 3, places=3)
        self.assertEqual(st["escalations"]["total"], 2)
        self.assertEqual(st["escalations"]["by_trigger"], {"rule": 2})
        self.assertEqual(st["escalations"]["by_reason"],
                         {"customer wrote 'persona'": 1, "customer wrote 'human'": 1})
        self.assertEqual(st["handbacks"]["by_path"], {"operator": 1})
        self.assertEqual(st["purges"]["total"], 0)
        self.assertGreaterEqual(st["history"]["messages"], 2 + 5 + 6)
        lm = st["lmdb"]
        self.assertGreater(lm["file_bytes"], 0)
        self.assertGreater(lm["map_bytes"], lm["used_bytes"])
        self.assertGreater(lm["used_bytes"], 0)
        self.assertEqual(set(st["jobs"]["by_kind"]), {"ai", "send", "flex"})
        self.assertIn("backlog", st["outbox"])
        rc, out, err = p.ctl("stats")
        self.assertEqual(rc, 0, err)
        for text in ("escalations     2", "customer wrote 'persona'", "operator", "lmdb", "map"):
            self.assertIn(text, out)

        # export: the whole conversation, in order, for an audit.
        doc = self.ctl_json("export", CARLA)
        self.assertEqual(doc["conversation"]["customer"], CARLA)
        self.assertEqual(doc["conversation"]["mode"], "ai")
        roles = [t["role"] for t in doc["history"]]
        self.assertEqual(roles, ["customer", "ai", "customer", "ai", "agent", "system"])
        self.assertEqual(doc["history"][3]["text"], HOLD)
        self.assertEqual(doc["history"][4]["agent"], "Gonzalo")
        self.assertEqual([t["seq"] for t in doc["history"]], list(range(1, 7)))
        stamps = [t["at_ms"] for t in doc["history"]]
        self.assertEqual(stamps, sorted(stamps))
        tl = doc["timeline"]
        self.assertEqual([(e["event"], e.get("mode")) for e in tl if e.get("mode")],
                         [("escalated", "escalating"), ("task_created", "human"),
                          ("handed_back", "ai")])
        esc = [e for e in tl if e["event"] == "escalated"][0]
        self.assertEqual((esc["trigger"], esc["reason"]), ("rule", "customer wrote 'human'"))
        self.assertEqual([e["path"] for e in tl if e["event"] == "handed_back"], ["operator"])
        self.assertEqual(self.ctl_json("export", CARLA, "--format", "json")["history"],
                         doc["history"])
        rc, out, err = p.ctl("export", CARLA, "--format", "text")
        self.assertEqual(rc, 0, err)
        for text in ("transcript", "timeline", "customer ", "agent (Gonzalo)", "system ",
                     "handed_back", "-> mode ai", HOLD):
            self.assertIn(text, out)
        self.assertLess(out.index("agent (Gonzalo)"), out.index("system "))
        rc, _, _ = p.ctl("export", "whatsapp:+19999999999")
        self.assertEqual(rc, 3)
        rc, _, _ = p.ctl("export", CARLA, "--format", "yaml")
        self.assertEqual(rc, 2)

    def test_help_for_every_command(self):
        for cmd in ("conversations", "stats", "show", "export", "handback", "escalate", "purge"):
            rc, out, _ = self.p.ctl(cmd, "--help")
            self.assertEqual(rc, 0, cmd)
            self.assertIn("usage: batonctl " + cmd, out)
            self.assertIn("3 no such conversation", out)
        rc, out, _ = self.p.ctl("--help")
        self.assertEqual(rc, 0)
        self.assertIn("purge ADDRESS", out)
        rc, _, _ = self.p.ctl("frobnicate")
        self.assertEqual(rc, 2)
        rc, _, _ = self.p.ctl("show")
        self.assertEqual(rc, 2)


class TestPurge(CtlCase):
    def test_purge_erases_everything_through_the_router(self):
        p = self.p
        self.three_conversations()
        before = self.ctl_json("stats", "--json")
        doc = self.ctl_json("export", BRUNO)
        n_hist, n_tl = len(doc["history"]), len(doc["timeline"])
        ch = doc["conversation"]["flex"]["conversation"]

        # No --yes and no terminal: refused, nothing erased.
        rc, _, err = p.ctl("purge", BRUNO)
        self.assertEqual(rc, 2)
        self.assertIn("--yes", err)
        self.assertEqual(self.mode(BRUNO), "human")

        rc, out, err = p.ctl("purge", BRUNO, "--yes", "--reason", "erasure request #42")
        self.assertEqual(rc, 0, err)
        self.assertIn("purged", out)
        self.assertNotIn(BRUNO, out)

        # Gone from every read.
        self.assertEqual(p.ctl("show", BRUNO)[0], 3)
        self.assertEqual(p.ctl("export", BRUNO)[0], 3)
        rows = self.ctl_json("conversations", "--json")
        self.assertEqual({r["customer"] for r in rows}, {masked(ANA), masked(CARLA)})
        after = self.ctl_json("stats", "--json")
        self.assertEqual(after["conversations"]["total"], 2)
        self.assertEqual(after["conversations"]["by_mode"]["human"], 0)
        self.assertEqual(after["escalations"]["total"], 1)
        self.assertEqual(after["escalations"]["by_reason"], {"customer wrote 'human'": 1})
        self.assertEqual(after["history"]["messages"], before["history"]["messages"] - n_hist)
        self.assertEqual(after["history"]["timeline_entries"],
                         before["history"]["timeline_entries"] - n_tl)
        self.assertEqual(after["purges"]["total"], 1)
        self.assertEqual(after["jobs"]["by_kind"]["send"], 0)

        # The router logged it, masked, with the counts; the number never in clear.
        lines = [l for l in p.log_lines("router") if "purged conversation" in l.get("msg", "")]
        self.assertEqual(len(lines), 1, lines)
        msg = lines[0]["msg"]
        self.assertIn(masked(BRUNO), msg)
        self.assertIn("erasure request #42", msg)
        self.assertIn("%d messages" % n_hist, msg)
        self.assertNotIn(BRUNO, p.log_text("router"))

        # Its Flex side was closed: the customer is not left bound to it, and
        # writing again starts a new conversation with the AI.
        wait_for(lambda: [c for c in p.fake_get("twilio", "/_fake/state")["conversations"]
                          if c.get("sid") == ch and c["state"] == "closed"], 10,
                 what="Flex conversation closed")
        r = p.customer(BRUNO, "Where is the clinic located?")
        self.assertEqual(r["routed"], "messaging")
        wait_for(lambda: len(self.wa(BRUNO)) >= 3 and self.wa(BRUNO)[-1].startswith("Clínica Sol"),
                 10, what="AI answers the new conversation")
        fresh = p.show(BRUNO)
        self.assertEqual(fresh["mode"], "ai")
        self.assertEqual([h["role"] for h in fresh["history"]], ["customer", "ai"])
        self.assertEqual(fresh["timeline"], [])
        # The close job finished: nothing left queued.
        wait_for(lambda: self.ctl_json("stats", "--json")["jobs"]["total"] == 0, 10, what="no jobs")

        # Unknown addresses: 3 from batonctl, 404 from the router itself.
        rc, _, err = p.ctl("purge", "whatsapp:+19999999999", "--yes")
        self.assertEqual(rc, 3, err)
        st, _, _ = http("POST", "http://127.0.0.1:%d/admin/purge" % p.ingress_port,
                        json.dumps({"address": "whatsapp:+19999999999"}).encode(),
                        {"Authorization": "Bearer " + ADMIN_TOKEN,
                         "Content-Type": "application/json"})
        self.assertEqual(st, 404)
        st, _, _ = http("POST", "http://127.0.0.1:%d/admin/purge" % p.ingress_port,
                        json.dumps({"address": ANA}).encode(),
                        {"Authorization": "Bearer wrong", "Content-Type": "application/json"})
        self.assertEqual(st, 401)
        self.assertEqual(self.mode(ANA), "ai")


class TestPurgeConfirmation(CtlCase):
    agent = None

    def purge_on_a_terminal(self, answer):
        """batonctl purge without --yes, stdin and stderr on a pseudo-terminal."""
        env = self.p.env()
        env["BATON_HTTP_PORT"] = str(self.p.ingress_port)
        master, slave = os.openpty()
        proc = subprocess.Popen([os.path.join(self.p.bindir, "batonctl"), "purge", ANA],
                                stdin=slave, stderr=slave, stdout=subprocess.PIPE, env=env)
        os.close(slave)
        seen = b""
        try:
            deadline = time.monotonic() + 10
            while b"Type 'yes'" not in seen and time.monotonic() < deadline:
                if select.select([master], [], [], 0.2)[0]:
                    seen += os.read(master, 4096)
            self.assertIn(b"Type 'yes'", seen)
            os.write(master, answer + b"\n")
            out, _ = proc.communicate(timeout=20)
        finally:
            os.close(master)
        return proc.returncode, out.decode(), seen.decode()

    def test_asks_on_a_terminal(self):
        self.p.customer(ANA, "Where is the clinic located?")
        wait_for(lambda: len(self.wa(ANA)) == 1, 10, what="AI reply")
        rc, _, prompt = self.purge_on_a_terminal(b"no")
        self.assertEqual(rc, 1)
        self.assertIn(masked(ANA), prompt)
        self.assertIn("2 messages", prompt)
        self.assertEqual(self.p.ctl("show", ANA)[0], 0, "not purged")
        rc, out, _ = self.purge_on_a_terminal(b"yes")
        self.assertEqual(rc, 0)
        self.assertIn("purged", out)
        self.assertEqual(self.p.ctl("show", ANA)[0], 3)


class TestPurgeDuringHandoff(CtlCase):
    agent = dict(AGENT)

    def test_refused_while_the_flex_pipeline_runs_then_done(self):
        p = self.p
        p.fake_post("twilio", "/_fake/fail", {"path_contains": "/v1/Interactions",
                                              "delay_ms": 2000, "count": 1})
        p.customer(BRUNO, "I want to speak with a human")
        wait_for(lambda: HOLD in self.wa(BRUNO), 10, what="holding message")
        self.assertEqual(self.mode(BRUNO), "escalating")
        rc, _, err = p.ctl("purge", BRUNO, "--yes")
        self.assertEqual(rc, 1, err)
        self.assertIn("handoff", err)
        self.assertEqual(self.p.show(BRUNO)["mode"], "escalating", "nothing erased")
        wait_for(lambda: self.mode(BRUNO) == "human", 15, what="handoff done")
        rc, _, err = p.ctl("purge", BRUNO, "--yes")
        self.assertEqual(rc, 0, err)
        self.assertEqual(p.ctl("show", BRUNO)[0], 3)
        wait_for(lambda: p.log_contains("flex-worker", "Flex side closed"), 10, what="close")


class TestPurgeWithJobInFlight(CtlCase):
    latency_ms = 1500
    agent = None

    def test_no_queued_job_runs_on_a_purged_conversation(self):
        p = self.p
        p.customer(ANA, "Where is the clinic located?")
        wait_for(lambda: p.log_contains("router", "dispatched job_ai"), 10, what="AI job at a worker")
        rc, _, err = p.ctl("purge", ANA, "--yes")
        self.assertEqual(rc, 0, err)
        wait_for(lambda: p.log_contains("router", "dropped a stale ai result"), 10,
                 what="the late AI answer dropped")
        p.wait_idle()  # a reply made of it would have been sent by now
        self.assertEqual(self.wa(ANA), [], "nothing reaches a purged customer")
        self.assertEqual(p.ctl("show", ANA)[0], 3)
        self.assertEqual(self.ctl_json("stats", "--json")["jobs"]["total"], 0)


class TestReadsUnderLoad(CtlCase):
    agent = None

    def test_reads_never_fail_while_the_router_writes(self):
        p = self.p
        stop = threading.Event()
        sent = []

        def load():
            i = 0
            while not stop.is_set():
                who = "whatsapp:+1555%07d" % (i % 40)
                st, _, _ = p.send(who, "Where is the clinic? %d" % i)
                sent.append((st, who))
                i += 1

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            reads = 0
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline or reads < 10:
                rc, out, err = p.ctl("conversations", "--json", "--limit", "5")
                self.assertEqual(rc, 0, err)
                self.assertLessEqual(len(json.loads(out)), 5)
                rc, out, err = p.ctl("stats", "--json")
                self.assertEqual(rc, 0, err)
                self.assertGreaterEqual(json.loads(out)["conversations"]["total"], 0)
                reads += 1
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertGreater(len(sent), 20)
        self.assertTrue(all(st == 200 for st, _ in sent), set(st for st, _ in sent))
        n = len(set(who for _, who in sent))
        wait_for(lambda: self.ctl_json("stats", "--json")["conversations"]["total"] == n, 10,
                 what="%d conversations" % n)


if __name__ == "__main__":
    unittest.main()
