"""What customers send beyond text, as the AI sees it (issue 16): photos as image
blocks, PDFs as Anthropic document blocks, voice notes transcribed (and the
transcript kept in history), locations and buttons as words, and every bad
media item (host not allowed, 404, timeout, too large, lying type, corrupt
voice note) as a note the model reads while the customer still gets an answer.

The fake Twilio serves the media behind basic auth (tests/fakes/twilio_media.py);
the fake LLM checks and records the blocks and transcribes Ogg voice notes.
"""

import json
import unittest

from baton_harness import (ACCOUNT_SID, MEDIA_CORRUPT_OGG, MEDIA_JPEG, MEDIA_LYING, MEDIA_REDIRECT,
                           MEDIA_MISSING, MEDIA_OGG, MEDIA_OVERSIZED, MEDIA_PDF, MEDIA_SLOW,
                           Pipeline, media_fixture, wait_for)

ANA = "whatsapp:+5511988887777"
PHOTO_REPLY = "Thank you for the photo of the rash."
RASH_REPLY = "A dermatologist can look at your rash."
DEFAULT_REPLY = "I can help with the clinic's address"
TRANSCRIPT = "Hi, I sent a photo of the rash on my arm, can a dermatologist look at it?"
FALLBACK = "(the customer sent a photo)"
UNHEARD = "[voice note (audio/ogg): could not be transcribed]"


def content_text(msg):
    """A message's text, whether its content is a string or a list of blocks."""
    c = msg["content"]
    if isinstance(c, str):
        return c
    return "\n".join(b.get("text", "") for b in c if b.get("type") == "text")


class MediaCase(unittest.TestCase):
    provider = "anthropic"
    env = {}

    def setUp(self):
        self.p = Pipeline(provider=self.provider, env=dict(self.env))
        self.addCleanup(self.p.close)
        self.p.start_all()

    def replies(self, to=ANA):
        return [m["Body"] for m in self.p.sent_messages(to)]

    def wait_replies(self, n, to=ANA, timeout=15):
        return wait_for(lambda: len(self.replies(to)) >= n and self.replies(to), timeout,
                        what="%d replies to %s" % (n, to))

    def chats(self):
        """The fake LLM's requests for answers (not transcriptions)."""
        return [r for r in self.p.llm_requests() if "/audio/" not in r["path"]]

    def last_user_text(self, i=-1):
        """The text of the last user message of the i-th LLM request."""
        msgs = self.chats()[i]["json"]["messages"]
        return content_text([m for m in msgs if m["role"] == "user"][-1])

    def wait_counter(self, name, n=1, **labels):
        return self.p.wait_metrics(lambda m: m.sum(name, **labels) >= n,
                                   what="%s%s >= %d" % (name, labels, n))


class TestAnthropicMedia(MediaCase):
    def test_photo_reaches_the_model_as_an_image_block(self):
        st, _, _ = self.p.send_media(ANA, MEDIA_JPEG, body="Is this serious?")
        self.assertEqual(st, 200)
        replies = self.wait_replies(1)
        self.assertTrue(replies[0].startswith(PHOTO_REPLY), replies)
        blocks = self.p.llm_media_blocks()
        self.assertEqual(len(blocks), 1, blocks)
        b = blocks[0]
        self.assertEqual((b["type"], b["media_type"], b["source"], b["role"]),
                         ("image", "image/jpeg", "base64", "user"))
        self.assertEqual(b["bytes"], len(media_fixture("rash.jpg")))
        self.assertEqual(b["status"], 200)
        # The caption comes after the image, in the same user message; no note.
        self.assertEqual(self.last_user_text(), "Is this serious?")
        fetches = self.p.media_fetches(MEDIA_JPEG)
        self.assertEqual(len(fetches), 1)
        self.assertEqual(fetches[0]["auth_user"], ACCOUNT_SID)
        self.wait_counter("baton_media_fetches_total", outcome="ok")

    def test_older_photos_are_not_fetched_again(self):
        self.p.send_media(ANA, MEDIA_JPEG)
        self.wait_replies(1)
        self.p.send(ANA, "Where is the clinic?")
        self.wait_replies(2)
        self.assertEqual(len(self.p.media_fetches(MEDIA_JPEG)), 1)
        # The second answer reads the photo as a note in the history.
        msgs = self.chats()[1]["json"]["messages"]
        self.assertEqual(msgs[0]["content"], "[photo (image/jpeg)]")
        self.assertEqual(msgs[-1]["content"], "Where is the clinic?")

    def test_pdf_reaches_anthropic_as_a_document_block(self):
        self.p.send_media(ANA, MEDIA_PDF, body="my exam results")
        self.wait_replies(1)
        docs = self.p.llm_media_blocks("document")
        self.assertEqual(len(docs), 1, docs)
        self.assertEqual(docs[0]["media_type"], "application/pdf")
        self.assertEqual(docs[0]["bytes"], len(media_fixture("exam.pdf")))
        self.assertEqual(self.last_user_text(), "my exam results")

    def test_voice_note_is_transcribed_and_kept_in_history(self):
        self.p.send_media(ANA, MEDIA_OGG)
        replies = self.wait_replies(1)
        self.assertTrue(replies[0].startswith(RASH_REPLY), replies)
        calls = self.p.transcriptions()
        self.assertEqual(len(calls), 1, calls)
        c = calls[0]
        self.assertEqual((c["model"], c["filename"], c["content_type"], c["status"]),
                         ("whisper-1", "voice.ogg", "audio/ogg", 200))
        self.assertEqual(c["bytes"], len(media_fixture("voice.ogg")))
        self.assertIs(c["authorization"], True, "sent with transcribe.api_key as its Bearer")
        self.assertEqual(self.last_user_text(), "(voice note transcript) " + TRANSCRIPT)
        self.wait_counter("baton_ai_transcriptions_total", outcome="ok")
        # History keeps the transcript as the turn's text, marked.
        turn = wait_for(lambda: [h for h in self.p.show(ANA)["history"]
                                 if h["role"] == "customer" and h.get("transcript")],
                        10, what="the transcript in history")[0]
        self.assertEqual(turn["text"], TRANSCRIPT)
        # The next answer reads it from history: no second transcription.
        self.p.send(ANA, "Where is the clinic?")
        self.wait_replies(2)
        self.assertEqual(len(self.p.transcriptions()), 1)
        first = self.chats()[1]["json"]["messages"][0]
        self.assertEqual(first["content"], "(voice note transcript) " + TRANSCRIPT)

    def test_location_and_button_become_text(self):
        self.p.send_rich(ANA, "location",
                         location=(-23.5614, -46.6559, "Av. Paulista 1000", "Clinica Sol"))
        self.wait_replies(1)
        self.assertEqual(self.last_user_text(),
                         "shared a location: Clinica Sol, Av. Paulista 1000 (-23.5614, -46.6559)")
        self.p.send_rich(ANA, "button", body="Book it", button=("Book it", "book_tuesday"))
        self.wait_replies(2)
        self.assertEqual(self.last_user_text(), "Book it\ntapped: Book it")


class TestBadMedia(MediaCase):
    """Each bad item: the model is asked anyway, with a note saying why."""

    def check(self, items, note, outcome):
        self.p.send_rich(ANA, "image", body="look", media=items)
        replies = self.wait_replies(1)
        self.assertTrue(replies[0].startswith(DEFAULT_REPLY), replies)
        self.assertEqual(len(self.chats()), 1)
        self.assertEqual(self.p.llm_media_blocks(), [])
        self.assertEqual(self.last_user_text(), "look\n" + note)
        self.wait_counter("baton_media_fetches_total", outcome=outcome)
        self.assertTrue(self.p.log_contains("ai-worker", "not given to the model") or
                        self.p.log_contains("ai-worker", "not transcribed"))

    def test_host_not_allowed(self):
        self.check([("https://media.example.com/rash.jpg", "image/jpeg")],
                   "[photo (image/jpeg): its URL is not on an allowed host]", "host")

    def test_not_found(self):
        self.check([MEDIA_MISSING], "[photo (image/jpeg): it could not be downloaded (HTTP 404)]",
                   "http")

    def test_too_large(self):
        self.check([MEDIA_OVERSIZED], "[photo (image/jpeg): it is too large]", "too_big")

    def test_lying_content_type(self):
        self.check([MEDIA_LYING], "[photo (image/jpeg): its content is not what its type says]",
                   "mismatch")

    def test_corrupt_voice_note(self):
        self.check([MEDIA_CORRUPT_OGG], UNHEARD, "mismatch")
        self.assertEqual(self.p.transcriptions(), [])
        self.wait_counter("baton_ai_transcriptions_total", outcome="no_audio")

    def test_redirect_to_a_host_not_allowed(self):
        # Twilio answers a media URL with a redirect to its storage; a hop to
        # a host off the list is refused like a first URL there would be.
        sid = self.p.add_media("image/jpeg", media_fixture("rash.jpg"),
                               redirect="localhost:%d" % self.p.twilio_port)
        self.check([sid], "[photo (image/jpeg): it redirects to a host that is not allowed]",
                   "host")
        self.assertEqual([f for f in self.p.media_fetches(sid) if f.get("media_bytes")], [])

    def test_redirect_on_the_list_is_followed_without_credentials(self):
        self.p.send_rich(ANA, "image", body="look", media=[MEDIA_REDIRECT])
        replies = self.wait_replies(1)
        self.assertTrue(replies[0].startswith(PHOTO_REPLY), replies)
        blocks = self.p.llm_media_blocks("image")
        self.assertEqual([b["bytes"] for b in blocks], [len(media_fixture("rash.jpg"))])
        hops = self.p.media_fetches(MEDIA_REDIRECT)
        self.assertEqual([h["auth_user"] is not None for h in hops], [True, False], hops)

    def test_good_and_bad_items_of_one_message(self):
        self.p.send_rich(ANA, "image", body="look", media=[MEDIA_MISSING, MEDIA_JPEG])
        replies = self.wait_replies(1)
        self.assertTrue(replies[0].startswith(PHOTO_REPLY), replies)
        blocks = self.p.llm_media_blocks("image")
        self.assertEqual([b["bytes"] for b in blocks], [len(media_fixture("rash.jpg"))])
        self.assertEqual(self.last_user_text(),
                         "look\n[photo (image/jpeg): it could not be downloaded (HTTP 404)]")
        self.wait_counter("baton_media_fetches_total", outcome="http")


class TestRedirectHosts(MediaCase):
    """media.redirect_hosts: where a download may be sent on to (shared storage,
    no credentials), never where a first URL, which gets them, may point."""
    env = {"BATON_MEDIA_REDIRECT_HOSTS": "localhost"}
    check = TestBadMedia.check

    def test_a_redirect_there_is_followed_without_credentials(self):
        sid = self.p.add_media("image/jpeg", media_fixture("rash.jpg"),
                               redirect="localhost:%d" % self.p.twilio_port)
        self.p.send_rich(ANA, "image", body="look", media=[sid])
        replies = self.wait_replies(1)
        self.assertTrue(replies[0].startswith(PHOTO_REPLY), replies)
        hops = self.p.media_fetches(sid)
        self.assertEqual([h["auth_user"] is not None for h in hops], [True, False], hops)
        self.assertEqual([b["bytes"] for b in self.p.llm_media_blocks("image")],
                         [len(media_fixture("rash.jpg"))])

    def test_a_first_url_there_is_not_fetched(self):
        url = self.p.media_url(MEDIA_JPEG).replace("127.0.0.1", "localhost")
        self.assertIn("//localhost:", url)
        self.check([(url, "image/jpeg")],
                   "[photo (image/jpeg): its URL is not on an allowed host]", "host")
        self.assertEqual(self.p.media_fetches(MEDIA_JPEG), [])


class TestMediaTimeout(MediaCase):
    env = {"BATON_MEDIA_TIMEOUT_MS": "300"}

    def test_slow_download_times_out(self):
        self.p.send_media(ANA, MEDIA_SLOW, body="look")
        replies = self.wait_replies(1)
        self.assertTrue(replies[0].startswith(DEFAULT_REPLY), replies)
        self.assertEqual(self.last_user_text(), "look\n[photo (image/jpeg): its download timed out]")
        self.wait_counter("baton_media_fetches_total", outcome="timeout")


class TestTranscriptionFails(MediaCase):
    def test_voice_note_the_api_refuses_is_a_note(self):
        self.p.set_transcription(fail_status=500)
        self.addCleanup(self.p.set_transcription, fail_status=None)
        self.p.send_media(ANA, MEDIA_OGG)
        replies = self.wait_replies(1)
        self.assertTrue(replies[0].startswith(DEFAULT_REPLY), replies)
        self.assertEqual(self.last_user_text(), UNHEARD)
        self.wait_counter("baton_ai_transcriptions_total", outcome="http")
        self.assertFalse(any(h.get("transcript") for h in self.p.show(ANA)["history"]))


class TestOpenAIMedia(MediaCase):
    provider = "openai"

    def test_photo_reaches_the_model_as_an_image_url(self):
        self.p.send_media(ANA, MEDIA_JPEG, body="Is this serious?")
        replies = self.wait_replies(1)
        self.assertTrue(replies[0].startswith(PHOTO_REPLY), replies)
        blocks = self.p.llm_media_blocks()
        self.assertEqual(len(blocks), 1, blocks)
        self.assertEqual((blocks[0]["type"], blocks[0]["media_type"], blocks[0]["role"]),
                         ("image", "image/jpeg", "user"))
        self.assertEqual(blocks[0]["bytes"], len(media_fixture("rash.jpg")))
        req = self.chats()[0]
        self.assertEqual(req["path"], "/v1/chat/completions")
        parts = req["json"]["messages"][-1]["content"]
        self.assertEqual([p["type"] for p in parts], ["image_url", "text"])

    def test_pdf_is_a_note(self):
        self.p.send_media(ANA, MEDIA_PDF, body="my exam results")
        self.wait_replies(1)
        self.assertEqual(self.p.llm_media_blocks(), [])
        self.assertEqual(self.last_user_text(), "my exam results\n[PDF document (application/pdf)]")
        self.assertEqual(self.p.media_fetches(MEDIA_PDF), [], "a PDF the model cannot read is not fetched")


class TestImagesOff(MediaCase):
    env = {"BATON_AI_IMAGES": "false"}

    def test_photo_is_the_fallback_text(self):
        self.p.send_media(ANA, MEDIA_JPEG, body="Is this serious?")
        self.wait_replies(1)
        self.assertEqual(self.p.llm_media_blocks(), [])
        self.assertEqual(self.last_user_text(), "Is this serious?\n" + FALLBACK)
        self.assertEqual(self.p.media_fetches(MEDIA_JPEG), [])


class TestVoiceEscalates(MediaCase):
    env = {"BATON_TRANSCRIBE_BASE_URL": "", "BATON_ESCALATION_ON_VOICE": "escalate"}

    def test_voice_note_without_transcription_goes_to_a_person(self):
        self.p.send_media(ANA, MEDIA_OGG)
        wait_for(lambda: self.p.log_contains("router", "handoff done"), 15, what="handoff done")
        self.assertEqual(self.chats(), [], "the model is not asked")
        self.assertEqual(self.p.transcriptions(), [], "nothing to transcribe with")
        # The one download is the flex-worker's, attaching it for the agent.
        self.assertEqual(len(self.p.media_fetches(MEDIA_OGG)), 1)
        self.assertEqual([u["content_type"] for u in self.p.mcs_uploads()], ["audio/ogg"])
        form = self.p.fake_get("twilio", "/_fake/requests?path_contains=/v1/Interactions")[0]["form"]
        attrs = json.loads(form["Routing"][0])["properties"]["attributes"]
        self.assertEqual(attrs["escalationTrigger"], "voice")
        self.assertEqual(attrs["handoffReason"],
                         "customer sent a voice note that could not be transcribed")
        m = self.wait_counter("baton_router_escalations_total", trigger="voice")
        self.assertEqual(m.sum("baton_ai_transcriptions_total", outcome="off"), 1)
        self.assertEqual(m.sum("baton_ai_results_total", outcome="escalate"), 1)


class TestVoiceEscalatesOnFailure(MediaCase):
    env = {"BATON_ESCALATION_ON_VOICE": "escalate"}

    def test_voice_note_the_api_refuses_goes_to_a_person(self):
        self.p.set_transcription(fail_status=500)
        self.addCleanup(self.p.set_transcription, fail_status=None)
        self.p.send_media(ANA, MEDIA_OGG)
        wait_for(lambda: self.p.log_contains("router", "handoff done"), 15, what="handoff done")
        self.assertEqual(self.chats(), [])
        self.assertEqual(len(self.p.transcriptions()), 1)
        m = self.wait_counter("baton_router_escalations_total", trigger="voice")
        self.assertEqual(m.sum("baton_ai_transcriptions_total", outcome="http"), 1)


if __name__ == "__main__":
    unittest.main()
