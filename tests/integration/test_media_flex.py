"""What the agent sees of a customer's media (issue 16): photos, voice notes
and documents reach the Flex conversation as Conversations messages with a
MediaSid, uploaded to the Media Content Service of the conversation's chat
service; what cannot be fetched or uploaded is a note; a retried pipeline
attaches each item once.

The fake Twilio serves the customer's media behind basic auth
(tests/fakes/twilio_media.py), keeps what baton uploads to MCS, and refuses
a MediaSid that was not uploaded to the conversation's service or that is
attached twice (50510, 50508).
"""

import hashlib
import json
import unittest

from baton_harness import (ACCOUNT_SID, MEDIA_JPEG, MEDIA_MISSING, MEDIA_OGG, MEDIA_PDF, Pipeline,
                           media_fixture, wait_for)

ANA = "whatsapp:+5511988887777"
HOLD = "Your conversation is being transferred to our team."
MCS_UPLOAD = r"^/v1/Services/[^/]+/Media$"
MESSAGES = r"^/v1/Conversations/[^/]+/Messages$"


def sha(name):
    return hashlib.sha256(media_fixture(name)).hexdigest()


class MediaFlexCase(unittest.TestCase):
    env = {}

    def setUp(self):
        # The AI reads photos as text here, so that every download of one
        # the fake records is the flex-worker's.
        self.p = Pipeline(env=dict({"BATON_AI_IMAGES": "false"}, **self.env))
        self.addCleanup(self.p.close)
        self.p.start_all()

    # --- helpers ---
    def replies(self):
        return [m["Body"] for m in self.p.sent_messages(ANA)]

    def ours(self):
        convs = self.p.fake_get("twilio", "/_fake/state")["conversations"]
        if isinstance(convs, dict):
            convs = list(convs.values())
        return [c for c in convs if (c.get("unique_name") or "").startswith("baton-")]

    def thread(self):
        mine = self.ours()
        self.assertEqual(len(mine), 1, "one conversation per handoff")
        return mine[0], mine[0]["messages"]

    def escalate_after(self, send):
        """send() one customer message, wait for the AI's answer, then escalate."""
        send()
        wait_for(lambda: self.replies(), 10, what="the AI's answer")
        self.p.send(ANA, "humano")
        wait_for(lambda: self.p.log_contains("router", "handoff done"), 20, what="handoff done")

    def media_metric(self, outcome):
        return self.p.metrics().sum("baton_flex_media_total", "flex-worker", outcome=outcome)

    def wait_media_metric(self, outcome, n):
        self.p.wait_metrics(lambda m: m.sum("baton_flex_media_total", "flex-worker",
                                            outcome=outcome) == n,
                            proc="flex-worker", what="baton_flex_media_total{%s} %d" % (outcome, n))

    def assert_spec_clean(self):
        self.assertEqual(self.p.fake_get("twilio", "/_fake/spec_violations"), [])

    def upload_requests(self):
        return [r for r in self.p.fake_get("twilio", "/_fake/requests")
                if r["method"] == "POST" and r["path"].startswith("/v1/Services/")]


class TestHistoryMedia(MediaFlexCase):
    def test_a_photo_sent_before_the_escalation_reaches_the_agent(self):
        self.escalate_after(lambda: self.p.send_media(ANA, MEDIA_JPEG, body="Look at this rash"))
        conv, msgs = self.thread()
        # The photo's turn is one message: the caption as Body, the photo as its media.
        first = msgs[0]
        self.assertEqual(first["author"], ANA)
        self.assertEqual(first["body"], "Look at this rash")
        self.assertEqual(len(first["media"]), 1)
        self.assertEqual(first["media"][0]["content_type"], "image/jpeg")
        self.assertEqual(json.loads(first["attributes"])["baton_turn"], 0)
        self.assertEqual([m["body"] for m in msgs[1:]][-1], "humano")
        self.assertEqual(sum(1 for m in msgs if m.get("media")), 1)
        # MCS got the exact bytes, with their type, in the conversation's service.
        ups = self.p.mcs_uploads()
        self.assertEqual(len(ups), 1)
        self.assertEqual(ups[0]["sha256"], sha("rash.jpg"))
        self.assertEqual(ups[0]["content_type"], "image/jpeg")
        self.assertEqual(ups[0]["service_sid"], conv["chat_service_sid"])
        self.assertEqual(ups[0]["sid"], first["media"][0]["sid"])
        self.assertEqual(ups[0]["message_sid"], first["sid"])
        self.assertEqual(ups[0]["channel_sid"], conv["sid"])
        req = self.upload_requests()
        self.assertEqual(len(req), 1)
        self.assertEqual(req[0]["auth_user"], ACCOUNT_SID)
        self.assertEqual(req[0]["headers"]["content-type"], "image/jpeg")
        # Fetched once from Twilio, with the account's credentials.
        fetches = self.p.media_fetches(MEDIA_JPEG)
        self.assertEqual(len(fetches), 1)
        self.assertEqual(fetches[0]["auth_user"], ACCOUNT_SID)
        self.wait_media_metric("attached", 1)
        self.assertEqual(self.media_metric("fetch_failed") + self.media_metric("upload_failed"), 0)
        self.assert_spec_clean()

    def test_several_items_are_one_message_each_with_the_text_on_the_first(self):
        self.escalate_after(lambda: self.p.send_rich(ANA, "image", body="my exam and the rash",
                                                     media=[MEDIA_PDF, MEDIA_JPEG]))
        _, msgs = self.thread()
        media = [m for m in msgs if m.get("media")]
        self.assertEqual(len(media), 2)
        self.assertEqual(media[0]["body"], "my exam and the rash")
        self.assertEqual(media[0]["media"][0]["content_type"], "application/pdf")
        self.assertIsNone(media[1]["body"])
        self.assertEqual(media[1]["media"][0]["content_type"], "image/jpeg")
        self.assertEqual(msgs.index(media[1]), msgs.index(media[0]) + 1, "in order, together")
        attrs = [json.loads(m["attributes"]) for m in media]
        self.assertEqual([a["baton_turn"] for a in attrs], [0, 0])
        self.assertNotIn("baton_item", attrs[0])
        self.assertEqual(attrs[1]["baton_item"], 1)
        self.assertEqual(sorted(u["sha256"] for u in self.p.mcs_uploads()),
                         sorted([sha("exam.pdf"), sha("rash.jpg")]))
        self.wait_media_metric("attached", 2)
        self.assert_spec_clean()


class TestTranscriptMedia(MediaFlexCase):
    env = {"BATON_HANDOFF_INJECT": "transcript"}

    def test_media_follow_the_transcript_as_messages_of_their_own(self):
        self.escalate_after(lambda: self.p.send_media(ANA, MEDIA_JPEG, body="Look at this rash"))
        _, msgs = self.thread()
        self.assertEqual(len(msgs), 2)
        # The transcript names the photo where it was sent...
        self.assertIn("Customer (Ana): Look at this rash\n[photo (image/jpeg)]", msgs[0]["body"])
        self.assertIsNone(msgs[0]["media"])
        # ... and the photo follows, captioned with the same note.
        self.assertEqual(msgs[1]["body"], "[photo (image/jpeg)]")
        self.assertEqual(msgs[1]["author"], ANA)
        self.assertEqual(msgs[1]["media"][0]["content_type"], "image/jpeg")
        self.assertEqual(json.loads(msgs[1]["attributes"])["baton_item"], 1)
        self.assertEqual(self.p.mcs_uploads()[0]["sha256"], sha("rash.jpg"))
        self.assert_spec_clean()


class TestFailures(MediaFlexCase):
    def test_an_upload_refused_by_mcs_is_a_note_and_the_handoff_completes(self):
        self.p.fake_post("twilio", "/_fake/fail", {"path_regex": MCS_UPLOAD, "method": "POST",
                                                   "status": 500, "count": -1})
        self.escalate_after(lambda: self.p.send_media(ANA, MEDIA_JPEG, body="Look at this rash"))
        conv, msgs = self.thread()
        self.assertEqual(msgs[0]["body"],
                         "Look at this rash\n[photo (image/jpeg): could not be attached]")
        self.assertIsNone(msgs[0]["media"])
        self.assertEqual(msgs[-1]["body"], "humano")
        self.assertEqual(self.p.mcs_uploads(), [])
        self.assertEqual(len(self.upload_requests()), 1, "an upload is tried once")
        self.assertEqual(len(self.p.fake_get("twilio", "/_fake/state")["interactions"]), 1)
        self.wait_media_metric("upload_failed", 1)
        self.assertEqual(self.media_metric("attached"), 0)
        self.assertTrue(self.p.log_contains("flex-worker", "not attached to Flex conversation %s"
                                            % conv["sid"]))
        self.assertEqual(self.replies().count(HOLD), 1)

    def test_a_message_refused_with_its_media_goes_again_with_the_note(self):
        self.p.fake_post("twilio", "/_fake/fail", {"path_regex": MESSAGES, "method": "POST",
                                                   "status": 400, "code": 20001, "count": 1})
        self.escalate_after(lambda: self.p.send_media(ANA, MEDIA_PDF, body="my exam"))
        _, msgs = self.thread()
        self.assertEqual(msgs[0]["body"], "my exam\n[PDF document (application/pdf): could not be "
                         "attached]")
        self.assertIsNone(msgs[0]["media"])
        self.assertEqual(msgs[-1]["body"], "humano")
        self.assertEqual(len(self.p.mcs_uploads()), 1, "uploaded once, never attached")
        self.assertIsNone(self.p.mcs_uploads()[0]["message_sid"])
        self.wait_media_metric("refused", 1)
        self.assertEqual(self.media_metric("attached"), 0)
        self.assertEqual(len(self.p.fake_get("twilio", "/_fake/state")["interactions"]), 1)
        self.assert_spec_clean()

    def test_a_refusal_that_cannot_be_checked_still_ends_with_the_note(self):
        # Conversations refuses the message, and MCS will not say whether it
        # went: posting the MediaSid again would be refused again.
        self.p.fake_post("twilio", "/_fake/fail", {"path_regex": MESSAGES, "method": "POST",
                                                   "status": 400, "code": 20001, "count": 1})
        self.p.fake_post("twilio", "/_fake/fail", {"path_regex": r"^/v1/Services/[^/]+/Media/[^/]+$",
                                                   "method": "GET", "status": 403, "code": 20003,
                                                   "count": -1})
        self.escalate_after(lambda: self.p.send_media(ANA, MEDIA_JPEG))
        _, msgs = self.thread()
        self.assertEqual(msgs[0]["body"], "[photo (image/jpeg): could not be attached]")
        self.assertIsNone(msgs[0]["media"])
        self.assertTrue(self.p.log_contains("flex-worker", "posting the note"))
        self.wait_media_metric("refused", 1)

    def test_media_that_cannot_be_fetched_are_notes(self):
        # A 404 at Twilio, and a URL on a host not in media.allow_hosts (never fetched).
        elsewhere = self.p.media_url(MEDIA_JPEG).replace("127.0.0.1", "localhost")
        self.escalate_after(lambda: self.p.send_rich(
            ANA, "image", body="two photos", media=[MEDIA_MISSING, (elsewhere, "image/png")]))
        _, msgs = self.thread()
        self.assertEqual(msgs[0]["body"],
                         "two photos\n[photo (image/jpeg): could not be attached]")
        self.assertEqual(msgs[1]["body"], "[photo (image/png): could not be attached]")
        self.assertEqual(json.loads(msgs[1]["attributes"])["baton_item"], 1)
        self.assertFalse(any(m.get("media") for m in msgs))
        self.assertEqual(msgs[-1]["body"], "humano")
        self.assertEqual(len(self.p.media_fetches(MEDIA_MISSING)), 1)
        self.assertEqual(self.p.mcs_uploads(), [])
        m = self.p.wait_metrics(lambda m: m.sum("baton_flex_media_total", "flex-worker",
                                                outcome="fetch_failed") == 2,
                                proc="flex-worker", what="two fetch failures")
        self.assertEqual(m.sum("baton_media_fetches_total", "flex-worker", outcome="http"), 1)
        self.assertEqual(m.sum("baton_media_fetches_total", "flex-worker", outcome="host"), 1)
        self.assertTrue(self.p.log_contains("flex-worker", "its URL is not on an allowed host"))
        self.assert_spec_clean()


class TestExactlyOnce(MediaFlexCase):
    env = {"BATON_HANDOFF_MAX_ATTEMPTS": "8", "BATON_FLEX_TIMEOUT_MS": "1000"}

    def lost_answers(self):
        return [r for r in self.p.fake_get("twilio", "/_fake/requests")
                if r.get("answer_lost") or r.get("status") is None]

    def check_once(self, msgs):
        self.assertEqual(len(msgs), 4, "no message written twice")
        media = [m for m in msgs if m.get("media")]
        self.assertEqual([m["media"][0]["content_type"] for m in media],
                         ["image/jpeg", "application/pdf"])
        # The third is the AI's answer, as the customer got it.
        self.assertEqual([m["body"] for m in msgs], ["the rash", None,
                                                     self.replies()[0], "humano"])
        self.assertEqual(len(self.p.fake_get("twilio", "/_fake/state")["interactions"]), 1)
        self.assert_spec_clean()

    def test_a_lost_answer_and_a_second_attempt_attach_each_item_once(self):
        # The photo's message is created but its answer is lost (curl sends
        # the POST again by itself on a fresh connection; Twilio refuses the
        # MediaSid the second time), and the Interaction is refused once (a
        # second attempt runs the whole pipeline again).
        self.p.fake_post("twilio", "/_fake/fail", {"path_regex": MESSAGES, "method": "POST",
                                                   "lose_answer": True, "count": 1})
        self.p.fake_post("twilio", "/_fake/fail", {"path_contains": "/v1/Interactions",
                                                   "status": 400, "code": 20001, "count": 1})
        self.escalate_after(lambda: self.p.send_rich(ANA, "image", body="the rash",
                                                     media=[MEDIA_JPEG, MEDIA_PDF]))
        self.assertTrue(self.p.log_contains("router", "handoff attempt"))
        self.assertEqual(len(self.lost_answers()), 1)
        _, msgs = self.thread()
        self.check_once(msgs)
        # Each item uploaded once: the lost answer's message was found, not re-posted.
        self.assertTrue(self.p.log_contains("flex-worker", "not posted again"))
        self.assertEqual(len(self.p.mcs_uploads()), 2)
        self.assertEqual(len(self.p.media_fetches(MEDIA_JPEG)), 1)

    def test_a_post_answered_too_late_is_not_posted_again(self):
        # Done at once, answered after flex.timeout_ms: the worker finds the
        # message in the conversation's list before posting again, and keeps
        # the MediaSid it had for the post it still has to make.
        self.p.fake_post("twilio", "/_fake/fail", {"path_regex": MESSAGES, "method": "POST",
                                                   "answer_delay_ms": 2500, "count": 1})
        self.escalate_after(lambda: self.p.send_rich(ANA, "image", body="the rash",
                                                     media=[MEDIA_JPEG, MEDIA_PDF]))
        self.assertTrue(self.p.log_contains("flex-worker", "'inject history' failed"))
        _, msgs = self.thread()
        self.check_once(msgs)
        self.assertEqual(len(self.p.mcs_uploads()), 2, "the MediaSid was kept for the retry")
        self.assertEqual(len(self.p.media_fetches(MEDIA_JPEG)), 1)


class TestForwarded(MediaFlexCase):
    def test_a_photo_and_a_voice_note_in_human_mode_reach_the_agent(self):
        self.p.send(ANA, "humano")
        wait_for(lambda: self.p.log_contains("router", "handoff done"), 20, what="handoff done")
        self.p.send_media(ANA, MEDIA_JPEG, body="here it is")
        self.p.send_media(ANA, MEDIA_OGG)
        wait_for(lambda: len(self.p.conversation_media()) == 2, 15, what="two media messages")
        conv, msgs = self.thread()
        media = self.p.conversation_media(conv["sid"])
        self.assertEqual([(m["author"], m["body"]) for m in media],
                         [(ANA, "here it is"), (ANA, None)])
        self.assertEqual([m["media"][0]["content_type"] for m in media],
                         ["image/jpeg", "audio/ogg"])
        by_sid = {u["sid"]: u for u in self.p.mcs_uploads()}
        self.assertEqual(by_sid[media[0]["media"][0]["sid"]]["sha256"], sha("rash.jpg"))
        voice = by_sid[media[1]["media"][0]["sid"]]
        self.assertEqual(voice["sha256"], sha("voice.ogg"))
        self.assertEqual(voice["content_type"], "audio/ogg")
        self.assertTrue(all("baton_seq" in json.loads(m["attributes"]) for m in msgs[1:]))
        self.wait_media_metric("attached", 2)
        self.p.wait_idle(15)
        self.assertEqual(self.p.transcriptions(), [], "the flex-worker does not transcribe")
        self.assertEqual(self.replies(), [HOLD])
        self.assert_spec_clean()

    def test_a_forward_whose_answer_was_lost_is_not_doubled(self):
        self.p.send(ANA, "humano")
        wait_for(lambda: self.p.log_contains("router", "handoff done"), 20, what="handoff done")
        self.p.fake_post("twilio", "/_fake/fail", {"path_regex": MESSAGES, "method": "POST",
                                                   "lose_answer": True, "count": 1})
        self.p.send_rich(ANA, "image", body="two", media=[MEDIA_JPEG, MEDIA_PDF])
        wait_for(lambda: len(self.p.conversation_media()) == 2, 15, what="two media messages")
        self.p.wait_idle(15)
        self.assertTrue(self.p.log_contains("flex-worker", "not posted again"))
        _, msgs = self.thread()
        self.assertEqual([m["body"] for m in msgs], ["humano", "two", None])
        self.assertEqual(len(self.p.mcs_uploads()), 2)
        attrs = [json.loads(m["attributes"]) for m in msgs[1:]]
        self.assertEqual(attrs[0]["baton_seq"], attrs[1]["baton_seq"])
        self.assertEqual(attrs[1]["baton_item"], 1)


if __name__ == "__main__":
    unittest.main()
