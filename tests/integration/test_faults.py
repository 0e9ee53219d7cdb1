"""Faults on purpose: processes killed or frozen mid-job, Twilio down, hostile
frames on the sockets, hostile HTTP clients, oversized upstream answers.
Each test fails if the guarantee it names breaks."""

import os
import signal
import socket
import subprocess
import time
import unittest

from baton_harness import Pipeline, wait_for

ANA = "whatsapp:+5511988887777"
ADDRESS = "Clínica Sol is at"
HOURS = "Our specialties"


def zsend(p, endpoint, *frames, multipart=False):
    tool = os.path.join(os.path.dirname(p.bindir), "tests", "zsend")
    args = [tool, endpoint] + (["-m"] if multipart else []) + list(frames)
    subprocess.run(args, check=True, timeout=10)


class FaultCase(unittest.TestCase):
    env = {}
    latency = 0

    def setUp(self):
        self.p = Pipeline(env=dict(self.env), llm_latency_ms=self.latency)
        self.addCleanup(self.p.close)
        self.p.start_all()

    def replies(self, to=ANA):
        return [m["Body"] for m in self.p.sent_messages(to)]


class TestSockets(FaultCase):
    def test_garbage_frames_are_dropped_and_the_router_lives(self):
        state = os.path.join(self.p.dir, "state")
        ingress_ep = "ipc://" + os.path.join(state, "ingress.ipc")
        work_ep = "ipc://" + os.path.join(state, "work.ipc")
        # not msgpack; truncated map; version 2; type 99; a result for no job.
        garbage = ["ffffffff", "85a17601a174", "82a17602a17401", "82a17601a17463",
                   "86a17601a17405a2696401a27473cd0001a4636f6e76a1ffa6737461747573ff"]
        for ep in (ingress_ep, work_ep):
            zsend(self.p, ep, *garbage)
            zsend(self.p, ep, "00", "82a17601a17402", multipart=True)
        wait_for(lambda: self.p.log_text("router").count("dropped a malformed envelope") >= 6, 10,
                 what="drops logged")
        # A result from a peer that never said hello is looked at like any
        # other (the socket is the boundary): for no job, it is dropped.
        wait_for(lambda: self.p.log_contains("router", "dropped a stale ai result"), 10,
                 what="a result for no job dropped")
        self.assertIsNone(self.p.procs["router"].poll())
        self.p.send(ANA, "Where is the clinic?")
        wait_for(lambda: self.replies(), 10, what="the pipeline still works")


def mp(o):
    """A minimal msgpack encoder for hand-made frames."""
    if isinstance(o, int):
        return bytes([o]) if 0 <= o < 128 else b"\xcf" + o.to_bytes(8, "big")
    if isinstance(o, str):
        b = o.encode()
        return bytes([0xa0 | len(b)]) + b
    if isinstance(o, dict):
        return bytes([0x80 | len(o)]) + b"".join(mp(k) + mp(v) for k, v in o.items())
    raise TypeError(o)


class TestIncompleteEvent(FaultCase):
    def test_event_without_its_fields_is_dropped_and_the_router_lives(self):
        ep = "ipc://" + os.path.join(self.p.dir, "state", "ingress.ipc")
        frame = mp({"v": 1, "t": 10, "id": 1, "ts": 1, "op": "message_added", "ch": "CH1", "sid": "IMx"})
        zsend(self.p, ep, frame.hex())
        wait_for(lambda: self.p.log_contains("router", "without the fields it needs"), 10,
                 what="incomplete event dropped")
        self.assertIsNone(self.p.procs["router"].poll())
        self.p.send(ANA, "Where is the clinic?")
        wait_for(lambda: self.replies(), 10, what="the pipeline still works")


class TestWorkerLoss(FaultCase):
    latency = 1500

    def test_ai_worker_killed_with_a_job_is_redispatched_and_answered_once(self):
        self.p.send(ANA, "Where is the clinic?")
        # The fake records a call when it answers: watch the worker start it.
        wait_for(lambda: self.p.log_contains("ai-worker", "calling the LLM"), 10, what="LLM call")
        self.p.stop("ai-worker", signal.SIGKILL)
        self.p.start("ai-worker")
        wait_for(lambda: self.replies(), 15, what="reply after the re-dispatch")
        self.p.wait_idle()
        self.assertEqual(len(self.replies()), 1)
        self.assertTrue(self.p.log_contains("router", "re-dispatching its 1 jobs"))

    def test_frozen_worker_loses_its_job_to_another_and_its_late_answer_is_dropped(self):
        self.p.send(ANA, "Where is the clinic?")
        wait_for(lambda: self.p.log_contains("ai-worker", "calling the LLM"), 10, what="LLM call")
        frozen = self.p.procs["ai-worker"]
        frozen.send_signal(signal.SIGSTOP)
        self.p.procs["ai-worker-2"] = frozen  # keep it owned, resume it below
        del self.p.procs["ai-worker"]
        self.p.start("ai-worker")
        t0 = time.monotonic()
        wait_for(lambda: self.p.log_contains("router", "silent for"), 10, what="heartbeat timeout")
        wait_for(lambda: self.replies(), 10, what="reply from the second worker")
        self.assertLess(time.monotonic() - t0, 6, "re-dispatched within a few seconds")
        frozen.send_signal(signal.SIGCONT)
        # Its late answer is dropped as a stale result.
        wait_for(lambda: self.p.log_contains("router", "dropped a stale ai result"), 10,
                 what="late answer dropped")
        self.p.wait_idle()
        self.assertEqual(len(self.replies()), 1)
        self.p.logs["ai-worker-2"] = self.p.logs["ai-worker"]


class TestOutbox(FaultCase):
    env = {"BATON_EGRESS_RETRY_DEADLINE_MS": "400"}

    def test_egress_down_replies_wait_in_lmdb_and_leave_in_order(self):
        self.p.stop("egress", signal.SIGKILL)
        self.p.stop("router", signal.SIGKILL)  # and the router forgets everything in memory
        self.p.start("router")
        for text in ("Where is the clinic?", "What are your opening hours?"):
            st, _, _ = self.p.send(ANA, text)
            self.assertEqual(st, 200)
        wait_for(lambda: self.p.log_text("router").count("queued for sending") >= 2, 10,
                 what="replies in the outbox")
        self.p.stop("router", signal.SIGKILL)
        self.p.start("router")
        self.p.start("egress")
        wait_for(lambda: len(self.replies()) == 2, 15, what="outbox drained")
        r = self.replies()
        self.assertTrue(r[0].startswith(ADDRESS) and r[1].startswith(HOURS), r)

    def test_twilio_outage_replies_leave_in_order_when_it_is_back(self):
        self.p.fake_post("twilio", "/_fake/fail", {"path_contains": "Messages.json", "status": 503,
                                                   "count": -1})
        for text in ("Where is the clinic?", "What are your opening hours?"):
            self.p.send(ANA, text)
        # The outbox tries again while Twilio is still down: each attempt
        # ends as a retry (egress gives up within its deadline).
        self.p.wait_metrics(lambda m: m.sum("baton_egress_sends_total", outcome="retry") >= 2, 10,
                            what="the send retried by the outbox during the outage")
        self.assertEqual(self.replies(), [])
        self.p.fake_post("twilio", "/_fake/reset", {})
        wait_for(lambda: len(self.replies()) == 2, 30, what="replies after the outage")
        r = self.replies()
        self.assertTrue(r[0].startswith(ADDRESS) and r[1].startswith(HOURS), r)


class TestOutboxAtEscalation(FaultCase):
    env = {"BATON_EGRESS_RETRY_DEADLINE_MS": "300"}

    def test_an_unsent_ai_reply_is_withdrawn_when_the_conversation_escalates(self):
        self.p.fake_post("twilio", "/_fake/fail", {"path_contains": "Messages.json", "status": 503,
                                                   "count": -1})
        self.p.send(ANA, "Where is the clinic?")
        wait_for(lambda: self.p.log_contains("router", "send failed for now"), 10,
                 what="AI reply waiting in the outbox")
        self.p.send(ANA, "humano")
        wait_for(lambda: self.p.log_contains("router", "unsent AI reply withdrawn"), 10,
                 what="withdrawn")
        self.p.fake_post("twilio", "/_fake/reset", {})
        wait_for(lambda: self.replies(), 30, what="holding message")
        self.p.wait_idle()  # the handoff done, nothing left to send
        self.assertEqual(self.replies(), ["Your conversation is being transferred to our team."])


class TestHostileHttp(FaultCase):
    env = {"BATON_HTTP_CONN_TIMEOUT_S": "2"}

    def test_slow_client_is_cut_off_and_others_are_served(self):
        s = socket.create_connection(("127.0.0.1", self.p.ingress_port))
        s.sendall(b"POST /twilio/messages HTTP/1.1\r\nHost: x\r\n")
        st, _, _ = self.p.send(ANA, "Where is the clinic?")
        self.assertEqual(st, 200, "one slow client must not block others")
        s.settimeout(6)
        t0 = time.monotonic()
        try:
            data = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            data = b""
        self.assertEqual(data[:12] if data else b"", data[:12])
        self.assertLess(time.monotonic() - t0, 5.5, "idle connection closed by the timeout")
        s.close()

    def test_huge_header_is_refused_and_ingress_lives(self):
        s = socket.create_connection(("127.0.0.1", self.p.ingress_port))
        s.sendall(b"POST /twilio/messages HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n")
        s.settimeout(5)
        try:
            resp = s.recv(200)
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            resp = b""
        s.close()
        self.assertFalse(resp.startswith(b"HTTP/1.1 200"), resp[:40])
        st, _, _ = self.p.send(ANA, "Where is the clinic?")
        self.assertEqual(st, 200)

    def test_thousands_of_params_400(self):
        params = self.p.webhook_params(ANA, "hi") + [("p%d" % i, "1") for i in range(3000)]
        st, _, _ = self.p.post_webhook(params)
        self.assertEqual(st, 400)
        m = self.p.wait_idle()
        self.assertEqual(m.sum("baton_router_customer_messages_total"), 0)
        self.assertEqual(self.p.llm_requests(), [])


class TestTwilioAnswers(FaultCase):
    def test_unreadable_twilio_answer_is_final_and_logged(self):
        # Twilio may have sent it: a retry could double the message.
        self.p.fake_post("twilio", "/_fake/fail", {"path_contains": "Messages.json", "malformed": True,
                                                   "count": 1})
        self.p.send(ANA, "Where is the clinic?")
        wait_for(lambda: self.p.log_contains("egress", "unreadable Twilio answer"), 10, what="logged")
        self.p.wait_idle()  # the send job finished: a retry would have been made by now
        recs = self.p.fake_get("twilio", "/_fake/requests?path_contains=Messages.json")
        self.assertEqual(len(recs), 1)
        self.assertIsNone(self.p.procs["egress"].poll())


class TestHugeUpstream(FaultCase):
    def test_huge_llm_answer_gets_the_apology(self):
        big = '{"content":[{"type":"text","text":"' + "x" * (3 * 1024 * 1024) + '"}]}'
        self.p.fake_post("llm", "/_fake/fail", {"path_contains": "/v1/", "status": 200, "body": big,
                                                "count": 1})
        self.p.send(ANA, "Where is the clinic?")
        wait_for(lambda: self.replies(), 10, what="apology")
        self.assertTrue(self.replies()[0].startswith("Sorry"))
        self.assertTrue(self.p.log_contains("ai-worker", "too large"))


if __name__ == "__main__":
    unittest.main()
