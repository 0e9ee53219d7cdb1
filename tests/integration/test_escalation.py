"""Escalation: detection (rules, tag, tool, JSON field, AI failure), the atomic
handoff and the Flex pipeline against the fake Conversations/Flex APIs.

Each test runs all five processes; the fake Twilio validates every
Conversations/Flex request against Twilio's OpenAPI specs (tests/specs/twilio;
the harness refuses to start without them) and answers 400 to a wrong shape.
"""

import json
import signal
import unittest
import urllib.parse

from baton_harness import (ACCOUNT_SID, AUTH_TOKEN, BUSINESS, WORKFLOW_SID, WORKSPACE_SID,
                           Pipeline, http, wait_for)

ANA = "whatsapp:+5511988887777"
HOLD = "Your conversation is being transferred to our team."

TAG_SCRIPT = {
    "rules": [
        {"match": ["end"], "reply": "Let me get someone for you. [ESCALAR]"},
        {"match": ["start"], "reply": "[ESCALAR] Let me get someone for you."},
        {"match": ["middle"], "reply": "Let me [escalar] get someone for you."},
        {"match": ["twice"], "reply": "[Escalar] Let me get someone. [ESCALAR]"},
        {"match": ["where"], "reply": "We are at Av. Paulista 1000."},
    ],
    "default": "How can I help?",
}


class FlexCase(unittest.TestCase):
    provider = "anthropic"
    env = {}
    latency = 0

    def setUp(self):
        self.p = Pipeline(provider=self.provider, env=dict(self.env), llm_latency_ms=self.latency)
        self.addCleanup(self.p.close)
        self.p.start_all()

    # --- helpers ---
    def replies(self, to=ANA):
        return [m["Body"] for m in self.p.sent_messages(to)]

    def state(self):
        return self.p.fake_get("twilio", "/_fake/state")

    def conversations(self, address=ANA):
        convs = self.state()["conversations"]
        if isinstance(convs, dict):
            convs = list(convs.values())
        return [c for c in convs
                if any((pp.get("messaging_binding") or {}).get("address") == address
                       for pp in self._parts(c))]

    @staticmethod
    def _parts(c):
        parts = c.get("participants", [])
        return list(parts.values()) if isinstance(parts, dict) else parts

    def interactions(self):
        it = self.state()["interactions"]
        return list(it.values()) if isinstance(it, dict) else it

    def wait_handoff(self, timeout=15):
        try:
            wait_for(lambda: self.p.log_contains("router", "handoff done"), timeout,
                     what="handoff done")
        except AssertionError as e:
            # What the router and the flex-worker said of it: a handoff that
            # never ends is otherwise a bare timeout.
            said = [l for name in ("router", "flex-worker")
                    for l in self.p.log_text(name).splitlines()
                    if any(w in l for w in ("handoff", "flex", "lease", "job", "attempt"))]
            raise AssertionError("%s; last lines:\n%s" % (e, "\n".join(said[-40:]))) from None
        return self.conversations(), self.interactions()

    def assert_spec_clean(self):
        # The fake checks against the specs only when it loaded them: make sure it did.
        self.assertIn("--specs", " ".join(self.p.fakes["fake_twilio"][0].args))
        v = self.p.fake_get("twilio", "/_fake/spec_violations")
        self.assertEqual(v, [], "requests that do not match Twilio's OpenAPI specs")

    def ours(self, convs):
        return [c for c in convs if (c.get("unique_name") or "").startswith("baton-")]

    @staticmethod
    def msgs(c):
        return c.get("messages", [])


class TestRuleEscalation(FlexCase):
    def test_rule_escalates_before_the_ai_and_flex_gets_the_task(self):
        self.p.send(ANA, "Hi! Where is the clinic located?")
        wait_for(lambda: len(self.replies()) == 1, 10, what="first reply")
        self.p.send(ANA, "Quero falar com um HUMANO, por favor")
        convs, inter = self.wait_handoff()
        self.assertEqual(self.replies()[-1], HOLD)
        self.assertEqual(len(self.p.llm_requests()), 1, "the AI must not see the escalating message")

        mine = self.ours(convs)
        self.assertEqual(len(mine), 1)
        conv = mine[0]
        self.assertEqual(conv["state"], "active")
        parts = self._parts(conv)
        self.assertEqual(len(parts), 1)
        self.assertEqual(parts[0]["messaging_binding"]["address"], ANA)
        self.assertEqual(parts[0]["messaging_binding"]["proxy_address"], BUSINESS)
        # The history as a readable thread: one message per turn, authored, in order.
        thread = [(m["author"], m["body"]) for m in self.msgs(conv)]
        self.assertEqual(thread[0], (ANA, "Hi! Where is the clinic located?"))
        self.assertEqual(thread[1][0], "baton")
        self.assertTrue(thread[1][1].startswith("Clínica Sol is at"))
        self.assertEqual(thread[2], (ANA, "Quero falar com um HUMANO, por favor"))
        self.assertEqual(len(thread), 3)
        for m in self.msgs(conv):
            self.assertFalse(m["body"].lstrip().startswith("{"), "no JSON blobs for the agent")

        self.assertEqual(len(inter), 1)
        ch = inter[0]["channel"] if "channel" in inter[0] else None
        req = [r for r in self.p.fake_get("twilio", "/_fake/requests?path_contains=/v1/Interactions")]
        self.assertEqual(len(req), 1)
        form = req[0]["form"]
        channel = json.loads(form["Channel"][0])
        routing = json.loads(form["Routing"][0])
        self.assertEqual(channel["type"], "whatsapp")
        self.assertEqual(channel["initiated_by"], "customer")
        self.assertEqual(channel["properties"]["media_channel_sid"], conv["sid"])
        props = routing["properties"]
        self.assertEqual(props["workspace_sid"], WORKSPACE_SID)
        self.assertEqual(props["workflow_sid"], WORKFLOW_SID)
        self.assertEqual(props["task_channel_unique_name"], "chat")
        attrs = props["attributes"]
        self.assertEqual(attrs["customerName"], "Ana")
        self.assertEqual(attrs["customerAddress"], ANA)
        self.assertEqual(attrs["escalationTrigger"], "rule")
        self.assertIn("HUMANO", attrs["handoffReason"].upper())
        self.assertEqual(attrs["turns"], 3)
        self.assertIn(ANA, attrs["batonConversationKey"])
        self.assertTrue(req[0]["headers"]["content-type"].startswith("application/x-www-form-urlencoded"))
        self.assertEqual(req[0]["auth_user"], ACCOUNT_SID)
        self.assertIsNotNone(ch)
        self.assert_spec_clean()
        # The router stored the SIDs and moved the conversation to human.
        self.assertTrue(self.p.log_contains("router", "mode human"))

    def test_rule_is_whole_word_and_accent_insensitive(self):
        self.p.send(ANA, "I love humanity")
        wait_for(lambda: len(self.replies()) == 1, 10, what="AI reply")
        self.assertEqual(len(self.p.llm_requests()), 1)
        self.p.send(ANA, "¿Puedo hablar con una PERSONA?")
        self.wait_handoff()
        self.assertEqual(self.replies()[-1], HOLD)
        self.assertEqual(len(self.p.llm_requests()), 1)


class TestTagMode(FlexCase):
    env = {"BATON_AI_ESCALATION_MODE": "tag", "BATON_ESCALATION_PHRASES": ""}

    def test_tag_in_every_placement_is_stripped_and_escalates(self):
        self.p.fake_post("llm", "/_fake/script", TAG_SCRIPT)
        customers = {}
        for i, word in enumerate(["end", "start", "middle", "twice"]):
            who = "whatsapp:+55119000000%02d" % i
            customers[word] = who
            self.p.send(who, "please, %s" % word)
        wait_for(lambda: self.p.log_text("router").count("handoff done") == 4, 20, what="4 handoffs")
        for word, who in customers.items():
            got = self.replies(who)
            self.assertEqual(got, [HOLD], (word, got))
        # The tag instruction went into the system prompt, no tools were sent.
        req = self.p.llm_requests()[0]["json"]
        self.assertIn("[ESCALAR]", req["system"])
        self.assertNotIn("tools", req)
        self.assertTrue(any("escalationTrigger\":\"tag" in json.dumps(i) or
                            i.get("routing", {}).get("properties", {}).get("attributes", "").find("tag") >= 0
                            for i in self.interactions()))

    def test_reply_without_tag_is_not_escalated(self):
        self.p.fake_post("llm", "/_fake/script", TAG_SCRIPT)
        self.p.send(ANA, "where are you?")
        wait_for(lambda: self.replies(), 10, what="reply")
        self.assertEqual(self.replies(), ["We are at Av. Paulista 1000."])
        m = self.p.wait_idle()  # an escalation would have its handoff done by now
        self.assertEqual(m.sum("baton_router_escalations_total"), 0)
        self.assertEqual(self.p.show(ANA)["mode"], "ai")
        self.assertEqual(self.interactions(), [])


class TestStructuredAnthropic(FlexCase):
    env = {"BATON_ESCALATION_PHRASES": ""}

    def test_tool_call_escalates_with_reason_and_summary(self):
        self.p.send(ANA, "I need to talk to an attendant now")
        self.wait_handoff()
        req = self.p.llm_requests()[0]["json"]
        self.assertEqual(req["tools"][0]["name"], "escalate_to_human")
        self.assertEqual(req["tool_choice"], {"type": "auto"})
        self.assertEqual(self.replies(), [HOLD])
        form = self.p.fake_get("twilio", "/_fake/requests?path_contains=/v1/Interactions")[0]["form"]
        attrs = json.loads(form["Routing"][0])["properties"]["attributes"]
        self.assertEqual(attrs["escalationTrigger"], "tool")
        self.assertEqual(attrs["handoffReason"], "customer asked for a human")
        self.assertIn("Customer asked for the address", attrs["summary"])
        self.assert_spec_clean()


class TestStructuredOpenAI(FlexCase):
    provider = "openai"
    env = {"BATON_ESCALATION_PHRASES": ""}

    def test_json_field_escalates(self):
        self.p.send(ANA, "can I talk to an attendant?")
        self.wait_handoff()
        req = self.p.llm_requests()[0]["json"]
        self.assertEqual(req["response_format"]["type"], "json_schema")
        schema = req["response_format"]["json_schema"]["schema"]
        self.assertEqual(set(schema["required"]), {"reply", "escalate", "reason", "summary"})
        self.assertEqual(self.replies(), [HOLD])

    def test_json_reply_is_unwrapped(self):
        self.p.send(ANA, "Where is the clinic?")
        wait_for(lambda: self.replies(), 10, what="reply")
        self.assertTrue(self.replies()[0].startswith("Clínica Sol is at"))

    def test_model_ignoring_the_format_still_gets_its_text_delivered(self):
        self.p.fake_post("llm", "/_fake/script", {"rules": [], "default": "Plain answer, no JSON."})
        self.p.send(ANA, "hello")
        wait_for(lambda: self.replies(), 10, what="reply")
        self.assertEqual(self.replies(), ["Plain answer, no JSON."])

    def test_json_without_reply_never_reaches_the_customer(self):
        self.p.fake_post("llm", "/_fake/script", {"rules": [], "default": '{"answer": "x", "escalate": false}'})
        self.p.send(ANA, "hello")
        wait_for(lambda: self.replies(), 10, what="reply")
        self.assertTrue(self.replies()[0].startswith("Sorry"), self.replies())


class TestAIFailure(FlexCase):
    env = {"BATON_LLM_RETRIES": "1"}

    def test_ai_failing_for_good_escalates_with_ai_unavailable(self):
        self.p.fake_post("llm", "/_fake/fail", {"path_contains": "/v1/", "status": 500, "count": -1})
        self.p.send(ANA, "Where is the clinic?")
        self.wait_handoff()
        self.assertEqual(self.replies(), [HOLD])
        form = self.p.fake_get("twilio", "/_fake/requests?path_contains=/v1/Interactions")[0]["form"]
        attrs = json.loads(form["Routing"][0])["properties"]["attributes"]
        self.assertEqual(attrs["escalationTrigger"], "ai_failure")
        self.assertEqual(attrs["handoffReason"], "ai_unavailable")


class TestAIFailureApologize(FlexCase):
    env = {"BATON_LLM_RETRIES": "0", "BATON_AI_ON_FAILURE": "apologize"}

    def test_apologize_policy(self):
        self.p.fake_post("llm", "/_fake/fail", {"path_contains": "/v1/", "status": 503, "count": -1})
        self.p.send(ANA, "Where is the clinic?")
        wait_for(lambda: self.replies(), 10, what="apology")
        self.assertTrue(self.replies()[0].startswith("Sorry, I could not process"))
        self.assertFalse(self.p.log_contains("router", "escalating"))


class TestHistory(FlexCase):
    env = {"BATON_HANDOFF_HISTORY": "10"}

    def test_last_n_messages_reach_the_agent(self):
        for i in range(7):
            self.p.send(ANA, "Where is the clinic? (%d)" % i)
            wait_for(lambda: len(self.replies()) == i + 1, 10, what="reply %d" % i)
        self.p.send(ANA, "agent please")
        convs, _ = self.wait_handoff()
        thread = self.msgs(self.ours(convs)[0])
        self.assertEqual(len(thread), 10)
        # The newest 10 of 15 turns, oldest first: customer (3), ai, ..., customer (agent please).
        self.assertEqual(thread[0]["body"], "Clínica Sol is at Av. Paulista 1000, São Paulo, 3rd floor, next to Trianon-MASP station. We offer general practice, dermatology, cardiology and pediatrics.")
        self.assertEqual(thread[1]["body"], "Where is the clinic? (3)")
        self.assertEqual(thread[-1]["body"], "agent please")


class TestTranscript(FlexCase):
    env = {"BATON_HANDOFF_INJECT": "transcript"}

    def test_one_transcript_message(self):
        self.p.send(ANA, "Where is the clinic?")
        wait_for(lambda: self.replies(), 10, what="reply")
        self.p.send(ANA, "humano")
        convs, _ = self.wait_handoff()
        thread = self.msgs(self.ours(convs)[0])
        self.assertEqual(len(thread), 1)
        text = thread[0]["body"]
        self.assertIn("Customer (Ana): Where is the clinic?", text)
        self.assertIn("Assistant: Clínica Sol is at", text)
        self.assertIn("Customer (Ana): humano", text)
        self.assertLess(text.index("Where is the clinic"), text.index("humano"))


class TestStaleConversations(FlexCase):
    def test_active_conversations_of_the_customer_are_closed_first(self):
        base = "http://127.0.0.1:%d" % self.p.twilio_port
        auth = {"Authorization": "Basic " + __import__("base64").b64encode(
            ("%s:%s" % (ACCOUNT_SID, AUTH_TOKEN)).encode()).decode(),
                "Content-Type": "application/x-www-form-urlencoded"}
        st, body, _ = http("POST", base + "/v1/Conversations", b"FriendlyName=old", auth)
        self.assertEqual(st, 201, body)
        old = json.loads(body)["sid"]
        form = urllib.parse.urlencode({"MessagingBinding.Address": ANA,
                                       "MessagingBinding.ProxyAddress": BUSINESS}).encode()
        st, body, _ = http("POST", base + "/v1/Conversations/%s/Participants" % old, form, auth)
        self.assertEqual(st, 201, body)
        self.p.send(ANA, "humano")
        convs, _ = self.wait_handoff()
        states = {c["sid"]: c["state"] for c in convs}
        self.assertEqual(states[old], "closed")
        self.assertEqual([c["state"] for c in self.ours(convs)], ["active"])


class TestResumable(FlexCase):
    env = {"BATON_HANDOFF_MAX_ATTEMPTS": "8", "BATON_HANDOFF_RETRY_BASE_MS": "100"}

    def prime(self):
        self.p.send(ANA, "Where is the clinic?")
        wait_for(lambda: self.replies(), 10, what="reply")

    def check_exactly_once(self):
        convs, inter = self.wait_handoff(25)
        mine = self.ours(convs)
        self.assertEqual(len(mine), 1, "one conversation per handoff")
        bodies = [m["body"] for m in self.msgs(mine[0])]
        self.assertEqual(len(bodies), len(set(bodies)), "no history message injected twice")
        self.assertEqual(len(bodies), 3)
        self.assertEqual(len(self._parts(mine[0])), 1)
        self.assertEqual(len(inter), 1, "one interaction per handoff")
        self.assertEqual(self.replies().count(HOLD), 1)
        self.assert_spec_clean()

    def test_a_4xx_at_each_step_is_retried_creating_nothing_twice(self):
        # One failure per step, in pipeline order: each attempt gets one step
        # further, and must reuse what the earlier attempts already created.
        steps = [(r"^/v1/ParticipantConversations$", "GET"), (r"^/v1/Conversations$", "POST"),
                 (r"^/v1/Conversations/[^/]+/Messages$", "POST"),
                 (r"^/v1/Conversations/[^/]+/Participants$", "POST"),
                 (r"^/v1/Interactions$", "POST")]
        for regex, method in steps:
            self.p.fake_post("twilio", "/_fake/fail", {"path_regex": regex, "method": method,
                                                       "status": 400, "code": 20001, "count": 1})
        self.prime()
        self.p.send(ANA, "humano")
        self.check_exactly_once()
        self.assertTrue(self.p.log_contains("router", "handoff attempt"))

    def test_5xx_is_retried_within_the_attempt(self):
        self.p.fake_post("twilio", "/_fake/fail", {"path_contains": "/v1/Interactions",
                                                   "status": 503, "count": 2})
        self.prime()
        self.p.send(ANA, "humano")
        self.check_exactly_once()

    def test_worker_killed_mid_pipeline_resumes_without_duplicates(self):
        # The Interaction call hangs; the worker dies holding the job.
        self.p.fake_post("twilio", "/_fake/fail", {"path_contains": "/v1/Interactions",
                                                   "delay_ms": 3000, "count": 1, "status": 503})
        self.prime()
        self.p.send(ANA, "humano")
        wait_for(lambda: self.p.fake_get("twilio", "/_fake/requests?path_contains=/v1/Interactions"),
                 10, what="interaction call started")
        self.p.stop("flex-worker", signal.SIGKILL)
        self.p.start("flex-worker")
        self.check_exactly_once()


class TestInteractionWindow(FlexCase):
    env = {"BATON_HANDOFF_MAX_ATTEMPTS": "8", "BATON_HANDOFF_RETRY_BASE_MS": "100"}

    def test_worker_killed_after_creating_the_interaction_does_not_create_another(self):
        # The Interaction exists; marking the conversation hangs; the worker dies.
        self.p.fake_post("twilio", "/_fake/fail", {"path_regex": r"^/v1/Conversations/[^/]+$",
                                                   "method": "POST", "delay_ms": 3000,
                                                   "status": 503, "count": 1})
        self.p.send(ANA, "Where is the clinic?")
        wait_for(lambda: self.replies(), 10, what="reply")
        self.p.send(ANA, "humano")
        wait_for(lambda: self.interactions(), 10, what="interaction created")
        self.p.stop("flex-worker", signal.SIGKILL)
        self.p.start("flex-worker")
        self.wait_handoff(25)
        self.assertEqual(len(self.interactions()), 1)
        self.assertTrue(self.p.log_contains("flex-worker", "already exists"))
        self.assert_spec_clean()


class TestGiveUp(FlexCase):
    env = {"BATON_HANDOFF_MAX_ATTEMPTS": "2", "BATON_HANDOFF_RETRY_BASE_MS": "100"}

    def test_after_max_attempts_the_customer_is_told_and_ai_is_back(self):
        self.p.fake_post("twilio", "/_fake/fail", {"path_contains": "/v1/Interactions",
                                                   "status": 400, "code": 20001, "count": -1})
        self.p.send(ANA, "humano")
        fail_msg = "Sorry, we could not reach our team right now. I am still here to help."
        wait_for(lambda: fail_msg in self.replies(), 20, what="failure message")
        self.assertEqual(self.replies(), [HOLD, fail_msg])
        self.assertTrue(self.p.log_contains("router", "handoff failed for good"))
        self.p.fake_post("twilio", "/_fake/reset", {})
        self.p.send(ANA, "Where is the clinic?")
        wait_for(lambda: self.replies(), 10, what="AI answers again")
        self.assertTrue(self.replies()[0].startswith("Clínica Sol is at"))


class TestDuringEscalation(FlexCase):
    latency = 300

    def test_messages_while_escalating_reach_the_agent_in_order(self):
        self.p.fake_post("twilio", "/_fake/fail", {"path_contains": "/v1/Interactions",
                                                   "delay_ms": 1500, "count": 1})
        self.p.send(ANA, "humano")
        wait_for(lambda: self.p.log_contains("router", "escalating"), 10, what="escalating")
        for text in ("one", "two", "three"):
            self.p.send(ANA, "more details: " + text)
        convs, _ = self.wait_handoff()
        conv = self.ours(convs)[0]
        wait_for(lambda: len(self.msgs(self.ours(self.conversations())[0])) >= 4, 10,
                 what="forwarded messages")
        bodies = [m["body"] for m in self.msgs(self.ours(self.conversations())[0])]
        self.assertEqual(bodies, ["humano", "more details: one", "more details: two",
                                  "more details: three"])
        authors = {m["author"] for m in self.msgs(self.ours(self.conversations())[0])}
        self.assertEqual(authors, {ANA})
        self.assertEqual(self.replies(), [HOLD])
        self.assertEqual(self.p.llm_requests(), [])
        self.assertIsNotNone(conv)

    def test_burst_around_the_escalation_gets_no_ai_reply_after_it(self):
        # An AI call is in flight when the escalating message lands: its answer
        # must be dropped, and nothing after the escalation reaches the AI.
        self.p.send(ANA, "Where is the clinic?")
        self.p.send(ANA, "humano")
        for i in range(5):
            self.p.send(ANA, "still there? %d" % i)
        self.wait_handoff()
        self.p.wait_idle()  # the AI answer in flight is back (and dropped), nothing left to send
        self.assertEqual(self.replies(), [HOLD])
        self.assertLessEqual(len(self.p.llm_requests()), 1)
        self.assertTrue(self.p.log_contains("router", "dropped AI reply"))


if __name__ == "__main__":
    unittest.main()
