"""End to end through the real processes: webhook in, AI reply out via Twilio.

Each test starts ingress, router, ai-worker and egress on loopback against the
fake Twilio and fake LLM, in its own state directory.
"""

import json
import re
import signal
import time
import unittest

from baton_harness import (ACCOUNT_SID, BUSINESS, Pipeline, wait_for)

ANA = "whatsapp:+5511988887777"
BRUNO = "whatsapp:+5511977776666"

ADDRESS_REPLY = "Clínica Sol is at Av. Paulista 1000"
HOURS_REPLY = "Our specialties: general practice"


class PipelineCase(unittest.TestCase):
    provider = "anthropic"
    env = None
    latency = 0

    def setUp(self):
        self.p = Pipeline(provider=self.provider, env=self.env, llm_latency_ms=self.latency)
        self.addCleanup(self.p.close)
        self.p.start_all()

    def replies(self, to=ANA):
        return [m["Body"] for m in self.p.sent_messages(to)]

    def wait_replies(self, n, to=ANA, timeout=10):
        return wait_for(lambda: len(self.replies(to)) >= n and self.replies(to), timeout,
                        what="%d replies to %s" % (n, to))


class TestClinicConversation(PipelineCase):
    def test_questions_answered_in_order_with_history(self):
        st, body, _ = self.p.send(ANA, "Hi! Where is the clinic located?")
        self.assertEqual(st, 200)
        self.assertIn("<Response>", body)
        self.wait_replies(1)
        st, _, _ = self.p.send(ANA, "What are your specialties and opening hours?")
        self.assertEqual(st, 200)
        replies = self.wait_replies(2)
        self.assertTrue(replies[0].startswith(ADDRESS_REPLY), replies)
        self.assertTrue(replies[1].startswith(HOURS_REPLY), replies)

        sent = self.p.sent_messages(ANA)
        self.assertEqual(sent[0]["From"], BUSINESS)
        self.assertTrue(all(m["sid"].startswith("SM") for m in sent))
        recs = self.p.fake_get("twilio", "/_fake/requests?path_contains=Messages.json")
        self.assertTrue(all(r["headers"].get("auth_user") == ACCOUNT_SID for r in recs))

        # The second LLM call carries the whole conversation so far.
        llm = self.p.llm_requests()
        self.assertEqual(len(llm), 2)
        req = llm[1]
        self.assertEqual(req["path"], "/v1/messages")
        self.assertEqual(req["headers"].get("anthropic-version"), "2023-06-01")
        self.assertIn("x-api-key", req["headers"])
        msgs = req["json"]["messages"]
        self.assertEqual([m["role"] for m in msgs], ["user", "assistant", "user"])
        self.assertIn("Where is the clinic", msgs[0]["content"])
        self.assertTrue(msgs[1]["content"].startswith(ADDRESS_REPLY))
        self.assertIn("Clinica Sol", req["json"]["system"])


    def test_duplicate_webhook_processed_once(self):
        params = self.p.webhook_params(ANA, "Where is the clinic?")
        headers = {"I-Twilio-Idempotency-Token": "tok-1"}
        st1, _, _ = self.p.post_webhook(params, headers=headers)
        st2, _, _ = self.p.post_webhook(params, headers=headers)
        self.assertEqual((st1, st2), (200, 200))
        self.wait_replies(1)
        m = self.p.wait_idle()  # a wrongly-processed duplicate would have been answered by now
        self.assertEqual(len(self.replies()), 1)
        self.assertEqual(len(self.p.llm_requests()), 1)
        self.assertEqual(m.sum("baton_router_duplicate_webhooks_total"), 1)

    def test_router_killed_between_messages_loses_no_history(self):
        self.p.send(ANA, "Where is the clinic located?")
        self.wait_replies(1)
        self.p.stop("router", signal.SIGKILL)
        self.p.start("router")
        self.p.wait_workers(2)
        st, _, _ = self.p.send(ANA, "And your opening hours?")
        self.assertEqual(st, 200)
        replies = self.wait_replies(2)
        self.assertTrue(replies[1].startswith(HOURS_REPLY))
        msgs = self.p.llm_requests()[-1]["json"]["messages"]
        self.assertEqual(len(msgs), 3, msgs)
        self.assertIn("Where is the clinic", msgs[0]["content"])
        self.assertTrue(msgs[1]["content"].startswith(ADDRESS_REPLY))

    def test_media_only_message_is_accepted(self):
        params = self.p.webhook_params(ANA, "", extra=[("MediaUrl0", "https://api.twilio.com/x/Media/ME1"),
                                                       ("MediaContentType0", "image/jpeg")])
        params = [(k, "1" if k == "NumMedia" else v) for k, v in params]
        st, _, _ = self.p.post_webhook(params)
        self.assertEqual(st, 200)
        self.wait_replies(1)
        content = json.dumps(self.p.llm_requests()[0]["json"]["messages"][0]["content"])
        self.assertIn("photo", content)


class TestOpenAIProvider(PipelineCase):
    provider = "openai"

    def test_chat_completions_shape(self):
        self.p.send(ANA, "Where is the clinic located?")
        replies = self.wait_replies(1)
        self.assertTrue(replies[0].startswith(ADDRESS_REPLY))
        req = self.p.llm_requests()[0]
        self.assertEqual(req["path"], "/v1/chat/completions")
        self.assertEqual(req["headers"].get("authorization"), "<redacted>")
        msgs = req["json"]["messages"]
        self.assertEqual(msgs[0]["role"], "system")
        self.assertEqual(msgs[1], {"role": "user", "content": "Where is the clinic located?"})



class TestOrdering(PipelineCase):
    latency = 300

    def test_one_ai_job_at_a_time_and_replies_in_order(self):
        for text in ("Where is the clinic?", "What are your opening hours?", "Can I book an appointment on Tuesday?"):
            st, _, _ = self.p.send(ANA, text)
            self.assertEqual(st, 200)
        replies = self.wait_replies(3, timeout=15)
        self.assertTrue(replies[0].startswith(ADDRESS_REPLY))
        self.assertTrue(replies[1].startswith(HOURS_REPLY))
        self.assertIn("Tuesday", replies[2])
        # Never two calls in flight for one conversation: each call starts
        # after the previous answer (300 ms latency) came back.
        times = [r["time"] for r in self.p.llm_requests()]
        self.assertEqual(len(times), 3)
        for a, b in zip(times, times[1:]):
            self.assertGreaterEqual(b - a, 0.28)
        # The third call saw the first two answered, in order.
        msgs = self.p.llm_requests()[2]["json"]["messages"]
        self.assertEqual([m["role"] for m in msgs], ["user", "assistant", "user", "assistant", "user"])

    def test_conversations_run_in_parallel(self):
        t0 = time.monotonic()
        self.p.send(ANA, "Where is the clinic?")
        self.p.send(BRUNO, "Where is the clinic?")
        self.wait_replies(1, ANA)
        self.wait_replies(1, BRUNO)
        times = sorted(r["time"] for r in self.p.llm_requests())
        # Both calls were in flight together, not one after the other.
        self.assertLess(times[1] - times[0], 0.25)
        self.assertLess(time.monotonic() - t0, 5)


class TestUpstreamFailures(PipelineCase):
    def test_malformed_llm_response_gets_apology_and_worker_lives(self):
        self.p.fake_post("llm", "/_fake/fail", {"path_contains": "/v1/", "malformed": True, "count": 1})
        self.p.send(ANA, "Where is the clinic?")
        replies = self.wait_replies(1)
        self.assertTrue(replies[0].startswith("Sorry, I could not process your message"), replies)
        self.assertTrue(any("malformed LLM response" in (l.get("msg") or "") and l.get("job")
                            for l in self.p.log_lines("ai-worker")))
        self.p.send(ANA, "What are your opening hours?")
        replies = self.wait_replies(2)
        self.assertTrue(replies[1].startswith(HOURS_REPLY))

    def test_wrong_shape_llm_response_gets_apology(self):
        self.p.fake_post("llm", "/_fake/fail", {"path_contains": "/v1/", "wrong_shape": True, "count": 1})
        self.p.send(ANA, "Where is the clinic?")
        replies = self.wait_replies(1)
        self.assertTrue(replies[0].startswith("Sorry"))

    def test_llm_overloaded_is_retried(self):
        self.p.fake_post("llm", "/_fake/fail", {"path_contains": "/v1/", "status": 529, "count": 1})
        self.p.send(ANA, "Where is the clinic?")
        replies = self.wait_replies(1)
        self.assertTrue(replies[0].startswith(ADDRESS_REPLY))
        self.assertEqual(len(self.p.llm_requests()), 2)

    def test_twilio_429_is_retried_and_sent_once(self):
        self.p.fake_post("twilio", "/_fake/fail", {"path_contains": "Messages.json", "status": 429,
                                                   "code": 20429, "count": 2})
        self.p.send(ANA, "Where is the clinic?")
        self.wait_replies(1)
        self.p.wait_idle()
        self.assertEqual(len(self.replies()), 1)
        recs = self.p.fake_get("twilio", "/_fake/requests?path_contains=Messages.json")
        self.assertEqual([r["status"] for r in recs], [429, 429, 201])

    def test_twilio_400_is_final_and_logged_with_code(self):
        self.p.fake_post("twilio", "/_fake/fail", {"path_contains": "Messages.json", "status": 400,
                                                   "code": 21211, "count": 1})
        self.p.send(ANA, "Where is the clinic?")
        wait_for(lambda: self.p.log_contains("egress", "21211"), 10, what="error logged")
        wait_for(lambda: self.p.log_contains("router", "Twilio error 21211"), 10, what="router recorded")
        recs = self.p.fake_get("twilio", "/_fake/requests?path_contains=Messages.json")
        self.assertEqual(len(recs), 1)


if __name__ == "__main__":
    unittest.main()


class TestDedupeWindow(PipelineCase):
    env = {"BATON_DEDUPE_KEEP_S": "1"}

    def test_message_sids_are_forgotten_after_the_window(self):
        params = self.p.webhook_params(ANA, "Where is the clinic?")
        self.assertEqual(self.p.post_webhook(params)[0], 200)
        self.wait_replies(1)
        self.assertEqual(self.p.post_webhook(params)[0], 200)  # a retry: dropped
        m = self.p.wait_idle()
        self.assertEqual(len(self.replies()), 1)
        self.assertEqual(m.sum("baton_router_duplicate_webhooks_total"), 1)
        # Past dedupe.keep_s the router prunes the entry; the same MessageSid
        # then counts as new (Twilio never retries that late). No metric
        # counts the pruning: its log line (debug) says it happened.
        wait_for(lambda: re.search(r"forgot [1-9]\d* MessageSids", self.p.log_text("router")), 10,
                 what="the MessageSid forgotten")
        self.assertEqual(self.p.post_webhook(params)[0], 200)
        self.wait_replies(2)
