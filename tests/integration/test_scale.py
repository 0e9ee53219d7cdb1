"""Independently scaled workers, workers over tcp, and bursty customers.

The router balances jobs by credit over whatever workers said HELLO; these
tests start and stop extra ai-workers while traffic flows and check every
customer message is answered exactly once.
"""

import os
import signal
import time
import unittest

from baton_harness import Pipeline, free_port, wait_for

ANA = "whatsapp:+5511988887777"


def customers(n):
    return ["whatsapp:+55119%08d" % i for i in range(n)]


class TestScaling(unittest.TestCase):
    def setUp(self):
        # Small credit and a slow LLM: one worker cannot take all the jobs,
        # so a second one has work waiting for it the moment it joins.
        self.p = Pipeline(env={"BATON_AI_WORKER_CREDIT": "2"}, llm_latency_ms=400)
        self.addCleanup(self.p.close)
        self.p.start_all()

    def answered(self, who):
        sent = self.p.sent_messages()
        return {m["To"] for m in sent if m["To"] in who}, len(sent)

    def test_a_new_worker_takes_work_within_a_second_and_a_killed_one_loses_nothing(self):
        who = customers(24)
        for c in who:
            self.assertEqual(self.p.send(c, "Where is the clinic?")[0], 200)
        self.p.start("ai-worker", as_name="ai-worker-2")
        t0 = time.monotonic()
        wait_for(lambda: self.p.log_contains("ai-worker-2", "calling the LLM"), 5,
                 what="the new worker's first LLM call")
        self.assertLess(time.monotonic() - t0, 1.0, "new worker took work within a second")

        # Now kill the first worker while it holds jobs, and stop the second
        # one gracefully after more traffic: nothing may be lost or doubled.
        wait_for(lambda: self.p.log_text("ai-worker").count("calling the LLM") >= 3, 10,
                 what="first worker busy")
        self.p.stop("ai-worker", signal.SIGKILL)
        more = customers(40)[24:]
        for c in more:
            self.assertEqual(self.p.send(c, "Where is the clinic?")[0], 200)
        self.p.start("ai-worker", as_name="ai-worker-3")
        self.p.stop("ai-worker-2", signal.SIGTERM)
        everyone = set(who) | set(more)
        wait_for(lambda: self.answered(everyone)[0] == everyone, 30,
                 what="every customer answered")
        self.p.wait_idle(20)  # every job done: a doubled reply would be sent by now
        tos = [m["To"] for m in self.p.sent_messages()]
        self.assertEqual(len(tos), len(everyone), "exactly one reply each")
        self.assertEqual(set(tos), everyone)


class TestTcpWorkers(unittest.TestCase):
    def test_workers_and_ingress_reach_the_router_over_tcp(self):
        # Plain tcp, allowed on loopback only (test_security covers CURVE).
        env = {"BATON_ROUTER_WORK_ENDPOINT": "tcp://127.0.0.1:%d" % free_port(),
               "BATON_ROUTER_INGRESS_ENDPOINT": "tcp://127.0.0.1:%d" % free_port(),
               "BATON_ZMQ_INSECURE_TCP": "true"}
        p = Pipeline(env=env)
        self.addCleanup(p.close)
        p.start_all()
        self.assertTrue(p.log_contains("ai-worker", "router " + env["BATON_ROUTER_WORK_ENDPOINT"]))
        self.assertFalse(os.path.exists(os.path.join(p.dir, "state", "work.ipc")))
        self.assertEqual(p.send(ANA, "Where is the clinic?")[0], 200)
        wait_for(lambda: p.sent_messages(ANA), 10, what="reply over tcp")


class TestBurst(unittest.TestCase):
    def start(self, burst_ms, latency=0):
        p = Pipeline(env={"BATON_AI_BURST_MS": str(burst_ms)}, llm_latency_ms=latency)
        self.addCleanup(p.close)
        p.start_all()
        return p

    def test_fragments_within_the_window_get_one_reply_that_sees_them_all(self):
        p = self.start(800)
        for text in ("Hi", "I need the address", "of the clinic please"):
            self.assertEqual(p.send(ANA, text)[0], 200)
        wait_for(lambda: p.sent_messages(ANA), 10, what="the reply")
        p.wait_idle()  # no turn waiting or running: a second reply would be sent by now
        self.assertEqual(len(p.sent_messages(ANA)), 1)
        llm = p.llm_requests()
        self.assertEqual(len(llm), 1)
        user = [m["content"] for m in llm[0]["json"]["messages"] if m["role"] == "user"]
        text = " ".join(u if isinstance(u, str) else str(u) for u in user)
        for frag in ("Hi", "I need the address", "of the clinic please"):
            self.assertIn(frag, text)
        show = p.show(ANA)
        roles = [t["role"] for t in show["history"]]
        self.assertEqual(roles, ["customer", "customer", "customer", "ai"])

    def test_messages_during_a_reply_are_answered_together_after_it(self):
        p = self.start(100, latency=1000)
        p.send(ANA, "Where is the clinic?")
        wait_for(lambda: p.log_contains("ai-worker", "calling the LLM"), 10, what="first call")
        p.send(ANA, "And the hours?")
        p.send(ANA, "And the price?")
        wait_for(lambda: len(p.sent_messages(ANA)) >= 2, 15, what="two replies")
        p.wait_idle()
        self.assertEqual(len(p.sent_messages(ANA)), 2)
        last = p.llm_requests()[-1]["json"]["messages"]
        self.assertIn("And the price?", str(last[-1]["content"]))
        self.assertIn("And the hours?", str(last))

    def test_without_the_window_each_message_gets_its_own_turn(self):
        p = self.start(0)
        for text in ("Hi", "Where is the clinic?"):
            p.send(ANA, text)
        wait_for(lambda: len(p.sent_messages(ANA)) >= 2, 10, what="two replies")
        self.assertEqual(len(p.llm_requests()), 2)  # one AI turn each, nothing joined
