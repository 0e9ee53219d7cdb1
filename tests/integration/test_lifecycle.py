"""The handoff lifecycle: human mode, agent takeover, hand-back paths (and
their idempotence), the no-agent policy, business hours, the WhatsApp 24-hour
window, the timeline, and the seed article's whole session.

The fake Twilio plays Twilio's routing (a bound customer's messages go into
the Flex conversation, not to the Messaging webhook) and a simulated agent
who accepts the task, greets, answers and closes, with signed webhooks.
"""

import time
import unittest

from baton_harness import ACCOUNT_SID, BUSINESS, WORKSPACE_SID, Pipeline, wait_for

ANA = "whatsapp:+5511988887777"
BRUNO = "whatsapp:+5511977776666"
HOLD = "Your conversation is being transferred to our team."
GREETING = "Hi, good afternoon, I'm Gonzalo, how can I help you?"
CONFIRM = "Done: your dermatology appointment is on Tuesday at 10:00. Anything else?"
AGENT = dict(identity="Gonzalo", accept_after_ms=150, greeting=GREETING, reply_delay_ms=50,
             replies=[{"match": ["dermatolog", "tuesday"], "reply": CONFIRM, "close_after": True}])


class LifeCase(unittest.TestCase):
    env = {}
    agent = AGENT

    def setUp(self):
        self.p = Pipeline(env=dict(self.env))
        self.addCleanup(self.p.close)
        self.p.start_all()
        if self.agent:
            self.p.agent(**self.agent)

    def wa(self):
        return [m["body"] for m in self.p.whatsapp(ANA)]

    def wait_wa(self, text, timeout=15):
        wait_for(lambda: text in self.wa(), timeout, what="customer to receive %r" % text)

    def mode(self):
        return self.p.show(ANA)["mode"]

    def wait_mode(self, mode, timeout=15):
        wait_for(lambda: self.mode() == mode, timeout, what="mode " + mode)

    def events(self):
        return [e["event"] for e in self.p.show(ANA)["timeline"]]

    def wait_window_closed(self):
        """Until whatsapp.window_s has passed since the customer's last message as
        the router recorded it (the time its window check counts from): nothing
        else shows the window closing before a send is attempted."""
        window_ms = int(self.env["BATON_WHATSAPP_WINDOW_S"]) * 1000
        last_in = self.p.show(ANA)["last_customer_message_ms"]
        wait_for(lambda: time.time() * 1000 >= last_in + window_ms, 10, interval=0.05,
                 what="the WhatsApp window to close")

    def escalate(self):
        self.p.customer(ANA, "Where is the clinic located?")
        wait_for(lambda: len(self.wa()) == 1, 10, what="first AI reply")
        self.p.customer(ANA, "I want to speak with a human")
        self.wait_wa(HOLD)


class TestSeedScenario(LifeCase):
    def test_the_whole_clinic_session(self):
        p = self.p
        p.customer(ANA, "Where is the clinic located?")
        wait_for(lambda: len(self.wa()) == 1, 10, what="address")
        p.customer(ANA, "What specialties do you have, and what are your opening hours?")
        wait_for(lambda: len(self.wa()) == 2, 10, what="schedule")
        p.customer(ANA, "I want to speak with a human")
        self.wait_wa(GREETING)
        self.assertEqual(self.mode(), "human")
        llm_calls = len(p.llm_requests())
        r = p.customer(ANA, "I would like a dermatology appointment on Tuesday")
        self.assertEqual(r["routed"], "conversation", "a bound customer writes into Flex")
        self.wait_wa(CONFIRM)
        self.wait_mode("ai")
        self.assertEqual(len(p.llm_requests()), llm_calls, "no AI call in human mode")
        r = p.customer(ANA, "Thanks! Can you remind me of my appointment day?")
        self.assertEqual(r["routed"], "messaging")
        wait_for(lambda: len(self.wa()) == 6, 10, what="AI after hand-back")
        wa = self.wa()
        self.assertTrue(wa[0].startswith("Clínica Sol is at"))
        self.assertTrue(wa[1].startswith("Our specialties"))
        self.assertEqual(wa[2:5], [HOLD, GREETING, CONFIRM])
        self.assertIn("Tuesday", wa[5])
        self.assertNotIn("transfer", wa[5].lower())

        # The AI saw the human stretch: agent turns and the closing system note.
        msgs = p.llm_requests()[-1]["json"]["messages"]
        text = "\n".join(m["content"] for m in msgs)
        self.assertIn("(human agent) " + GREETING, text)
        self.assertIn("(human agent) " + CONFIRM, text)
        self.assertIn("dermatology appointment on Tuesday", text)
        self.assertIn("[note] The human stretch is over: Gonzalo handled", text)

        show = p.show(ANA)
        events = [e["event"] for e in show["timeline"]]
        for e in ("escalated", "task_created", "accepted", "first_agent_reply", "handed_back"):
            self.assertIn(e, events)
        self.assertLess(events.index("escalated"), events.index("task_created"))
        self.assertLess(events.index("first_agent_reply"), events.index("handed_back"))
        self.assertEqual(events.count("handed_back"), 1, "close + wrapup + completed hand back once")
        roles = [h["role"] for h in show["history"]]
        self.assertEqual(roles.count("agent"), 2)
        self.assertEqual(roles.count("system"), 1)
        agent_turns = [h for h in show["history"] if h["role"] == "agent"]
        self.assertEqual({h["agent"] for h in agent_turns}, {"Gonzalo"})
        rc, out, _ = p.ctl("show", ANA)
        self.assertEqual(rc, 0)
        self.assertIn("handed_back", out)
        self.assertIn("agent (Gonzalo)", out)


class TestHandBackPaths(LifeCase):
    agent = dict(AGENT, replies=[])  # greets, never closes by itself

    def test_conversation_closed_event_hands_back_once(self):
        self.escalate()
        self.wait_wa(GREETING)
        ch = self.p.show(ANA)["flex"]["conversation"]
        params = [("EventType", "onConversationStateUpdated"), ("ConversationSid", ch),
                  ("StateFrom", "active"), ("StateTo", "closed"), ("Reason", "API"),
                  ("AccountSid", ACCOUNT_SID), ("ChatServiceSid", "IS" + "0" * 32)]
        for _ in range(2):
            st, _, _ = self.p.signed("/twilio/conversations", params)
            self.assertEqual(st, 200)
        task = self.p.show(ANA)["flex"]["task"]
        tparams = [("EventType", "task.completed"), ("TaskSid", task), ("AccountSid", ACCOUNT_SID),
                   ("WorkspaceSid", WORKSPACE_SID), ("TaskAttributes", '{"conversationSid":"%s"}' % ch)]
        st, _, h = self.p.signed("/twilio/taskrouter", tparams)
        self.assertEqual(st, 204)
        self.assertTrue(h.get("Content-Type", "").startswith("application/json"))
        self.wait_mode("ai")
        self.assertEqual(self.events().count("handed_back"), 1)

    def test_task_completed_alone_hands_back(self):
        self.escalate()
        self.wait_wa(GREETING)
        task = self.p.show(ANA)["flex"]["task"]
        st, _, _ = self.p.signed("/twilio/taskrouter", [("EventType", "task.wrapup"),
                                                         ("TaskSid", task),
                                                         ("AccountSid", ACCOUNT_SID),
                                                         ("WorkspaceSid", WORKSPACE_SID)])
        self.assertEqual(st, 204)
        self.wait_mode("ai")
        detail = [e["detail"] for e in self.p.show(ANA)["timeline"] if e["event"] == "handed_back"]
        self.assertEqual(detail, ["task_completed"])

    def test_unsigned_conversations_webhook_is_refused(self):
        self.escalate()
        ch = (self.p.show(ANA)["flex"] or {}).get("conversation") or "CH" + "0" * 32
        st, _, _ = self.p.post_webhook([("EventType", "onConversationStateUpdated"),
                                        ("ConversationSid", ch), ("StateTo", "closed")],
                                       path="/twilio/conversations", signature="forged")
        self.assertEqual(st, 403)
        self.p.wait_idle()  # a hand-back would be committed by now
        self.assertNotEqual(self.mode(), "ai")

    def test_operator_handback_and_escalate_with_batonctl(self):
        self.escalate()
        self.wait_wa(GREETING)
        rc, out, err = self.p.ctl("handback", ANA)
        self.assertEqual(rc, 0, err)
        self.wait_mode("ai")
        # baton closes the Flex side so the customer's messages come back to us.
        wait_for(lambda: self.p.log_contains("flex-worker", "Flex side closed"), 10, what="close")
        r = self.p.customer(ANA, "Where is the clinic?")
        self.assertEqual(r["routed"], "messaging")
        wait_for(lambda: self.wa()[-1].startswith("Clínica Sol is at"), 10, what="AI again")
        rc, _, err = self.p.ctl("escalate", ANA, "--reason", "VIP customer")
        self.assertEqual(rc, 0, err)
        wait_for(lambda: self.p.log_text("router").count("handoff done") == 2, 15, what="2nd handoff")
        tl = self.p.show(ANA)["timeline"]
        self.assertIn({"event": "escalated", "detail": "operator: VIP customer"},
                      [{"event": e["event"], "detail": e["detail"]} for e in tl])
        self.assertIn("operator", [e["detail"] for e in tl if e["event"] == "handed_back"])
        rc, _, _ = self.p.ctl("handback", "whatsapp:+19999999999")
        self.assertEqual(rc, 3)

    def test_admin_endpoint_needs_the_token(self):
        from baton_harness import http
        st, _, _ = http("POST", "http://127.0.0.1:%d/admin/handback" % self.p.ingress_port,
                        b'{"address":"%s"}' % ANA.encode(),
                        {"Authorization": "Bearer wrong", "Content-Type": "application/json"})
        self.assertEqual(st, 401)


class TestReviewRaces(LifeCase):
    agent = dict(AGENT, replies=[{"match": ["bye"], "reply": "Bye!", "close_after": True}])

    def test_handback_while_escalating_closes_what_the_pipeline_made(self):
        self.p.agent(enabled=False)
        self.p.fake_post("twilio", "/_fake/fail", {"path_contains": "/v1/Interactions",
                                                   "delay_ms": 1500, "count": 1})
        self.p.customer(ANA, "Where is the clinic located?")
        wait_for(lambda: len(self.wa()) == 1, 10, what="first AI reply")
        self.p.customer(ANA, "humano")
        self.wait_wa(HOLD)
        rc, _, err = self.p.ctl("handback", ANA)
        self.assertEqual(rc, 0, err)
        self.wait_mode("ai")
        wait_for(lambda: self.p.log_contains("router", "late handoff result"), 15, what="late result")
        wait_for(lambda: self.p.log_contains("flex-worker", "Flex side closed"), 15, what="closed")
        state = self.p.fake_get("twilio", "/_fake/state")
        ours = [c for c in state["conversations"] if (c.get("unique_name") or "").startswith("baton-")]
        self.assertTrue(ours and all(c["state"] == "closed" for c in ours))
        r = self.p.customer(ANA, "Where is the clinic?")
        self.assertEqual(r["routed"], "messaging", "the customer is not left bound to an orphan")
        wait_for(lambda: self.wa()[-1].startswith("Clínica Sol is at"), 10, what="AI again")

    def test_an_agent_faster_than_the_interactions_answer_is_recorded(self):
        # An agent who auto-accepts (a Flex plugin does that) takes the task
        # and greets while baton still waits for the Interaction's 201: the
        # reservation and the greeting reach baton before the task's SID.
        self.p.agent(**dict(AGENT, accept_after_ms=0))
        self.p.fake_post("twilio", "/_fake/fail", {"path_contains": "/v1/Interactions",
                                                   "method": "POST", "answer_delay_ms": 1500,
                                                   "count": 1})
        self.escalate()
        self.wait_wa(GREETING)
        self.wait_mode("human")
        wait_for(lambda: {"task_created", "accepted", "first_agent_reply"} <= set(self.events()),
                 15, what="the acceptance and the first reply in the timeline")
        agent_turns = [t for t in self.p.show(ANA)["history"] if t["role"] == "agent"]
        self.assertEqual([t["text"] for t in agent_turns], [GREETING])
        self.assertEqual(self.p.show(ANA)["escalation"]["agent"], "Gonzalo")

    def test_an_old_task_event_does_not_end_a_new_handoff(self):
        self.escalate()
        self.wait_wa(GREETING)
        old_task = self.p.show(ANA)["flex"]["task"]
        self.p.customer(ANA, "ok bye")
        self.wait_mode("ai")
        rc, _, err = self.p.ctl("escalate", ANA, "--reason", "again")
        self.assertEqual(rc, 0, err)
        wait_for(lambda: self.p.log_text("router").count("handoff done") == 2, 15, what="2nd handoff")
        self.assertNotEqual(self.p.show(ANA)["flex"]["task"], old_task)
        st, _, _ = self.p.signed("/twilio/taskrouter", [("EventType", "task.completed"),
                                                         ("TaskSid", old_task),
                                                         ("AccountSid", ACCOUNT_SID),
                                                         ("WorkspaceSid", WORKSPACE_SID)])
        self.assertEqual(st, 204)
        self.p.wait_idle()  # a hand-back (and its Flex close) would be done by now
        self.assertEqual(self.mode(), "human")
        self.assertEqual(self.events().count("handed_back"), 1, "only the first handoff's")


class TestTakeover(LifeCase):
    agent = None

    def test_agent_message_in_ai_mode_takes_over(self):
        self.p.agent(**dict(AGENT, replies=[{"match": ["bye"], "reply": "Bye!", "close_after": True}]))
        self.escalate()
        self.wait_wa(GREETING)
        self.p.customer(ANA, "ok bye")
        self.wait_mode("ai")
        ch = self.p.show(ANA)["flex"]["conversation"]
        # Another desk writes into the (known) conversation while the bot has it.
        st, _, _ = self.p.signed("/twilio/conversations", [
            ("EventType", "onMessageAdded"), ("ConversationSid", ch), ("MessageSid", "IM" + "7" * 32),
            ("Author", "maria"), ("Body", "Hi, Maria here, following up on your case."),
            ("AccountSid", ACCOUNT_SID), ("Source", "SDK")])
        self.assertEqual(st, 200)
        self.wait_mode("human")
        calls = len(self.p.llm_requests())
        self.p.send(ANA, "Thanks Maria, where is the clinic again?")
        self.p.wait_idle()  # an AI turn would have called the LLM by now
        self.assertEqual(len(self.p.llm_requests()), calls, "the bot never talks over a person")
        self.assertIn("agent_takeover", self.events())


class TestReset(LifeCase):
    agent = dict(AGENT, replies=[])

    def test_reset_is_just_a_message_without_the_debug_flag(self):
        self.escalate()
        self.wait_wa(GREETING)
        self.p.customer(ANA, "reset")
        self.p.wait_idle()  # a hand-back would be committed by now
        self.assertEqual(self.mode(), "human")
        self.assertEqual(self.p.show(ANA)["history"][-1]["text"], "reset")


class TestResetDebug(LifeCase):
    env = {"BATON_DEBUG_RESET_WORD": "true"}
    agent = dict(AGENT, replies=[])

    def test_reset_hands_back_with_the_debug_flag(self):
        self.escalate()
        self.wait_wa(GREETING)
        self.p.customer(ANA, "  RESET ")
        self.wait_mode("ai")
        self.assertIn("reset", [e["detail"] for e in self.p.show(ANA)["timeline"]])


class TestInactivity(LifeCase):
    env = {"BATON_HANDOFF_HUMAN_TIMEOUT_S": "1"}
    agent = dict(AGENT, replies=[])

    def test_idle_human_mode_hands_back(self):
        self.escalate()
        self.wait_wa(GREETING)
        self.wait_mode("ai", timeout=10)
        detail = [e["detail"] for e in self.p.show(ANA)["timeline"] if e["event"] == "handed_back"]
        self.assertEqual(detail, ["inactivity_timeout"])
        wait_for(lambda: self.p.log_contains("flex-worker", "Flex side closed"), 10, what="close")


class TestNoAgentWait(LifeCase):
    env = {"BATON_HANDOFF_ACCEPT_TIMEOUT_S": "1"}
    agent = None

    def test_customer_is_told_and_keeps_waiting(self):
        self.escalate()
        msg = "All our agents are busy right now. A person will answer you as soon as possible."
        self.wait_wa(msg, timeout=10)
        # A second customer escalates now: the timer scan that tells them,
        # a whole accept timeout later, looks at Ana's conversation again
        # too, so a repeat (every tick, or every timeout) would come by then.
        self.p.customer(BRUNO, "I want to speak with a human")
        wait_for(lambda: msg in [m["body"] for m in self.p.whatsapp(BRUNO)], 10,
                 what="the second customer told")
        self.p.wait_idle()
        self.assertEqual(self.wa().count(msg), 1, "said once, not every tick")
        self.assertEqual([m["body"] for m in self.p.whatsapp(BRUNO)].count(msg), 1)
        self.assertIn(self.mode(), ("escalating", "human"))
        self.assertIn("no_agent", self.events())


class TestNoAgentBackToAI(LifeCase):
    env = {"BATON_HANDOFF_NO_AGENT_POLICY": "ai"}
    agent = dict(enabled=True, accept_after_ms=None, cancel_after_ms=200)

    def test_task_canceled_returns_to_the_ai(self):
        self.escalate()
        msg = "Our team is not available right now, so I will keep helping you here."
        self.wait_wa(msg)
        self.wait_mode("ai")
        self.assertIn("task_canceled", [e["detail"] for e in self.p.show(ANA)["timeline"]])
        self.p.customer(ANA, "Where is the clinic?")
        wait_for(lambda: self.wa()[-1].startswith("Clínica Sol is at"), 10, what="AI again")


class TestBusinessHours(LifeCase):
    # Open one minute a week, on whichever day is not today: closed now.
    day = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"][(int(time.time() // 86400) + 5) % 7]
    env = {"BATON_BUSINESS_HOURS": day + " 03:00-03:01"}
    agent = None

    def test_holding_message_says_when_a_person_answers(self):
        self.p.customer(ANA, "humano")
        want = "Our team is available %s 03:00-03:01. A person will answer you as soon as we open." % self.day
        self.wait_wa(want)


class TestWindow(LifeCase):
    env = {"BATON_WHATSAPP_WINDOW_S": "1", "BATON_ESCALATION_PHRASES": ""}
    agent = None

    def test_outside_the_window_nothing_is_sent_and_it_is_recorded(self):
        self.p.customer(ANA, "Where is the clinic?")
        wait_for(lambda: len(self.wa()) == 1, 10, what="reply inside the window")
        self.wait_window_closed()
        rc, _, err = self.p.ctl("escalate", ANA, "--reason", "follow-up")
        self.assertEqual(rc, 0, err)
        wait_for(lambda: self.p.show(ANA)["window_closed_ms"], 10, what="window_closed")
        self.assertEqual(len(self.wa()), 1, "no free-form message after the window")
        self.assertIn("window_closed", self.events())


class TestWindowTemplate(LifeCase):
    env = {"BATON_WHATSAPP_WINDOW_S": "1", "BATON_WHATSAPP_TEMPLATE_SID": "HX" + "a" * 32}
    agent = None

    def test_outside_the_window_the_template_is_used(self):
        self.p.customer(ANA, "Where is the clinic?")
        wait_for(lambda: len(self.wa()) == 1, 10, what="reply inside the window")
        self.wait_window_closed()
        self.p.ctl("escalate", ANA, "--reason", "follow-up")
        recs = wait_for(lambda: [r for r in self.p.fake_get("twilio", "/_fake/requests?path_contains=Messages.json")
                                 if "ContentSid" in (r.get("form") or {})], 10, what="template send")
        form = recs[0]["form"]
        self.assertEqual(form["ContentSid"], ["HX" + "a" * 32])
        self.assertNotIn("Body", form)
        self.assertIn(HOLD, form["ContentVariables"][0])


class TestStatusCallback(LifeCase):
    agent = None

    def test_63016_marks_the_window_closed(self):
        self.p.customer(ANA, "Where is the clinic?")
        wait_for(lambda: self.p.sent_messages(ANA), 10, what="reply")
        sid = self.p.sent_messages(ANA)[0]["sid"]
        wait_for(lambda: self.p.log_contains("router", "message sent"), 10, what="sid stored")
        st, _, _ = self.p.signed("/twilio/status", [
            ("MessageSid", sid), ("SmsSid", sid), ("MessageStatus", "undelivered"),
            ("SmsStatus", "undelivered"), ("ErrorCode", "63016"), ("To", ANA), ("From", BUSINESS),
            ("AccountSid", ACCOUNT_SID), ("ApiVersion", "2010-04-01"), ("ChannelPrefix", "whatsapp")])
        self.assertEqual(st, 200)
        wait_for(lambda: self.p.show(ANA)["window_closed_ms"], 10, what="window_closed")
        self.assertEqual(self.p.show(ANA)["last_error"]["code"], 63016)


if __name__ == "__main__":
    unittest.main()
