"""Several WhatsApp numbers in one deployment, and handoffs queued for business hours.

A config file with [number ...] sections gives each business number its own
system prompt, holding message, language and Flex workflow; conversations
are keyed by customer and business number. Outside a number's business
hours with handoff.after_hours=queue, the customer is told when a person
will answer and no Flex task is created until then, across a restart too.
"""

import json
import os
import time
import unittest

from baton_harness import BUSINESS, Pipeline, wait_for

ANA = "whatsapp:+5511988887777"
BRUNO = "whatsapp:+5511977776666"
SHOP = "whatsapp:+15550009999"
SHOP_PROMPT = "You are the assistant of Tienda Luz, a lamp shop."
SHOP_HOLD = "Un momento, te paso con el equipo de la tienda."
SHOP_WORKFLOW = "WW" + "9" * 32
CLOSED = "We answer %h. A person will write to you on %n."


def write_config(p, text):
    path = os.path.join(p.dir, "baton.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


class TestNumbers(unittest.TestCase):
    def setUp(self):
        self.p = Pipeline()
        self.addCleanup(self.p.close)
        conf = write_config(self.p, """
handoff.holding_message = "Transferring you to our clinic team."
[number %s]
ai.system_prompt = "%s"
ai.language = es
handoff.holding_message = "%s"
flex.workflow_sid = %s
""" % (SHOP, SHOP_PROMPT, SHOP_HOLD, SHOP_WORKFLOW))
        self.p.extra_env["BATON_CONFIG"] = conf
        self.p.start_all()

    def test_each_number_has_its_prompt_holding_message_and_workflow(self):
        self.p.send(ANA, "Where is the clinic?")
        self.p.send(ANA, "Do you sell desk lamps?", to=SHOP)
        wait_for(lambda: len(self.p.sent_messages(ANA)) >= 2, 10, what="two replies")
        froms = sorted(m["From"] for m in self.p.sent_messages(ANA))
        self.assertEqual(froms, sorted([BUSINESS, SHOP]), "each reply leaves from its number")
        systems = [r["json"]["system"] for r in self.p.llm_requests()]
        self.assertEqual(sum(SHOP_PROMPT in s for s in systems), 1)
        self.assertEqual(sum("Clinica Sol" in s for s in systems), 1)

        # Two conversations for one customer, one per number.
        shop = self.p.show(ANA + "|" + SHOP)
        clinic = self.p.show(ANA + "|" + BUSINESS)
        self.assertEqual(len(shop["history"]), 2)
        self.assertEqual(len(clinic["history"]), 2)

        self.p.send(ANA, "quiero hablar con una persona", to=SHOP)
        wait_for(lambda: any(m["Body"] == SHOP_HOLD for m in self.p.sent_messages(ANA)), 10,
                 what="the shop's holding message")
        req = wait_for(lambda: self.p.fake_get(
            "twilio", "/_fake/requests?path_contains=/v1/Interactions"), 10, what="interaction")
        routing = json.loads(req[0]["form"]["Routing"][0])["properties"]
        self.assertEqual(routing["workflow_sid"], SHOP_WORKFLOW)
        self.assertEqual(routing["attributes"]["language"], "es")
        self.assertEqual(routing["attributes"]["businessAddress"], SHOP)
        self.assertEqual(self.p.show(ANA + "|" + BUSINESS)["mode"], "ai",
                         "the other number's conversation is untouched")


def closed_hours_now():
    """A one-hour weekly window that starts two hours from now (UTC)."""
    t = time.gmtime(time.time() + 2 * 3600)
    day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][t.tm_wday]
    return "%s %02d:00-%02d:59" % (day, t.tm_hour, t.tm_hour), "%s %02d:00" % (day, t.tm_hour)


class TestAfterHoursQueue(unittest.TestCase):
    def start(self, policy):
        hours, self.opens = closed_hours_now()
        p = Pipeline(env={"BATON_BUSINESS_HOURS": hours, "BATON_HANDOFF_AFTER_HOURS": policy,
                          "BATON_HANDOFF_CLOSED_MESSAGE": CLOSED})
        self.addCleanup(p.close)
        p.start_all()
        self.hours = hours
        return p

    def interactions(self, p):
        return p.fake_get("twilio", "/_fake/requests?path_contains=/v1/Interactions")

    def test_queued_handoff_tells_when_and_creates_no_task_before_opening(self):
        p = self.start("queue")
        p.send(ANA, "quiero hablar con una persona")
        expect = CLOSED.replace("%h", self.hours).replace("%n", self.opens)
        wait_for(lambda: any(m["Body"] == expect for m in p.sent_messages(ANA)), 10,
                 what="the closed message with the next opening")
        show = p.show(ANA)
        self.assertEqual(show["mode"], "escalating")
        events = [e["event"] for e in show["timeline"]]
        self.assertIn("handoff_queued", events)
        # Everything else done, the handoff job stays queued for the opening.
        p.wait_idle(queued={"flex": 1})
        self.assertEqual(self.interactions(p), [], "no task while closed")
        # The queue survives a restart: the recovered job keeps waiting. Bruno's
        # AI turn, stored while no ai-worker runs, is recovered beside it and
        # dispatched when the router's recovery grace is over: his answer
        # shows the restarted router has passed the moment the handoff job
        # would start too if it had lost its opening time.
        p.stop("ai-worker")
        self.assertEqual(p.send(BRUNO, "Where is the clinic?")[0], 200)
        p.stop("router")
        p.start("router")
        p.start("ai-worker")
        p.wait_workers(2)
        wait_for(lambda: p.sent_messages(BRUNO), 10, what="the recovered AI turn answered")
        p.wait_idle(queued={"flex": 1})
        self.assertEqual(self.interactions(p), [], "still no task after a restart")
        # The customer's messages meanwhile are kept for the agent, not answered by the AI.
        llm = len(p.llm_requests())
        p.send(ANA, "are you there?")
        wait_for(lambda: len(p.show(ANA)["history"]) >= 3, 10, what="message stored")
        # It waits behind the handoff (a forward job, for the agent); an AI
        # turn would have called the LLM by now.
        p.wait_idle(queued={"flex": 2})
        self.assertEqual(len(p.llm_requests()), llm)

    def test_create_policy_creates_the_task_at_once(self):
        p = self.start("create")
        p.send(ANA, "quiero hablar con una persona")
        wait_for(lambda: self.interactions(p), 10, what="the task, created at once")
        self.assertNotIn("handoff_queued", [e["event"] for e in p.show(ANA)["timeline"]])
