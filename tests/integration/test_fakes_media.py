"""The media fakes (issue 16), straight over HTTP: no baton process runs.

The fake Twilio serves customers' media behind basic auth, takes MCS uploads
and attaches them to Conversations messages; the fake LLM validates and
records image and document blocks and transcribes Ogg voice notes.
"""

import base64
import json
import unittest
import urllib.parse
import uuid

from baton_harness import (ACCOUNT_SID, AUTH_TOKEN, LLM_KEY, MEDIA_CORRUPT_OGG, MEDIA_JPEG,
                           MEDIA_LYING, MEDIA_MISSING, MEDIA_OGG, MEDIA_OVERSIZED, MEDIA_PDF,
                           MEDIA_REDIRECT, MEDIA_SLOW, Pipeline, http, media_fixture)


def basic(user=ACCOUNT_SID, password=AUTH_TOKEN):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


AUTH = {"Authorization": basic()}


def form(**kw):
    return urllib.parse.urlencode(kw).encode(), dict(AUTH, **{
        "Content-Type": "application/x-www-form-urlencoded"})


def multipart(fields, files):
    boundary = uuid.uuid4().hex
    out = b""
    for name, value in fields.items():
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                % (boundary, name, value)).encode()
    for name, (filename, ctype, data) in files.items():
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                "Content-Type: %s\r\n\r\n" % (boundary, name, filename, ctype)).encode()
        out += data + b"\r\n"
    out += ("--%s--\r\n" % boundary).encode()
    return out, "multipart/form-data; boundary=" + boundary


class TestFakesMedia(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = Pipeline()
        cls.p.start_fakes()
        cls.tw = cls.p.twilio_url
        cls.llm = cls.p.llm_url

    @classmethod
    def tearDownClass(cls):
        cls.p.close()

    def setUp(self):
        self.p.fake_post("twilio", "/_fake/reset", {})
        self.p.fake_post("llm", "/_fake/reset", {})

    def get_bytes(self, url, headers=None):
        import urllib.request
        import urllib.error
        req = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    # ---- Messaging media --------------------------------------------------

    def test_media_needs_basic_auth_and_serves_the_bytes(self):
        url = self.p.media_url(MEDIA_JPEG, "MM" + "a" * 32)
        st, body, _ = self.get_bytes(url)
        self.assertEqual(st, 401)
        self.assertEqual(json.loads(body)["code"], 20003)
        st, body, _ = self.get_bytes(url, {"Authorization": basic(password="wrong")})
        self.assertEqual(st, 401)
        st, body, h = self.get_bytes(url, AUTH)
        self.assertEqual(st, 200)
        self.assertEqual(h["Content-Type"], "image/jpeg")
        self.assertEqual(body, media_fixture("rash.jpg"))
        for sid, ctype, name in ((MEDIA_OGG, "audio/ogg", "voice.ogg"),
                                 (MEDIA_PDF, "application/pdf", "exam.pdf")):
            st, body, h = self.get_bytes(self.p.media_url(sid), AUTH)
            self.assertEqual((st, h["Content-Type"], body), (200, ctype, media_fixture(name)))
        fetches = self.p.media_fetches(MEDIA_JPEG)
        self.assertEqual([f["auth_user"] for f in fetches], [None, ACCOUNT_SID, ACCOUNT_SID])
        self.assertEqual([f["status"] for f in fetches], [401, 401, 200])
        self.assertEqual(fetches[-1]["media_bytes"], len(media_fixture("rash.jpg")))
        st, body, _ = self.get_bytes(url + ".json", AUTH)
        self.assertEqual(json.loads(body)["content_type"], "image/jpeg")

    def test_bad_media(self):
        st, body, _ = self.get_bytes(self.p.media_url(MEDIA_MISSING), AUTH)
        self.assertEqual((st, json.loads(body)["code"]), (404, 20404))
        st, body, h = self.get_bytes(self.p.media_url(MEDIA_OVERSIZED), AUTH)
        self.assertEqual((st, h["Content-Type"], len(body)), (200, "image/jpeg", 6 * 1024 * 1024))
        st, body, h = self.get_bytes(self.p.media_url(MEDIA_LYING), AUTH)
        self.assertEqual(h["Content-Type"], "image/jpeg")
        self.assertTrue(body.startswith(b"<!DOCTYPE html>"))
        st, body, h = self.get_bytes(self.p.media_url(MEDIA_CORRUPT_OGG), AUTH)
        self.assertEqual(h["Content-Type"], "audio/ogg")
        self.assertFalse(body.startswith(b"OggS"))
        # Slow: configurable; here 300 ms, and a client with a 0.1 s timeout gives up.
        self.p.media_config(slow_ms=300)
        st, _, _ = http("GET", self.p.media_url(MEDIA_SLOW), headers=AUTH, timeout=5)
        self.assertEqual(st, 200)
        with self.assertRaises(OSError):
            http("GET", self.p.media_url(MEDIA_SLOW), headers=AUTH, timeout=0.1)

    def test_redirect_and_runtime_media(self):
        # urllib follows the 307 (dropping nothing: the CDN needs no auth).
        st, body, h = self.get_bytes(self.p.media_url(MEDIA_REDIRECT), AUTH)
        self.assertEqual((st, body), (200, media_fixture("rash.jpg")))
        recs = self.p.media_fetches(MEDIA_REDIRECT)
        self.assertEqual([r["status"] for r in recs], [307, 200])
        self.assertEqual(recs[1]["path"], "/cdn/" + MEDIA_REDIRECT)
        sid = self.p.add_media("image/png", b"\x89PNG\r\n\x1a\nxyz", filename="a.png")
        st, body, h = self.get_bytes(self.p.media_url(sid), AUTH)
        self.assertEqual((st, h["Content-Type"], body), (200, "image/png", b"\x89PNG\r\n\x1a\nxyz"))
        self.p.add_media("image/png", b"", sid=sid, status=503)
        st, _, _ = self.get_bytes(self.p.media_url(sid), AUTH)
        self.assertEqual(st, 503)

    def test_webhook_params(self):
        params = dict(self.p.rich_webhook_params("whatsapp:+5511999990000", "image", "my arm",
                                                 media=[MEDIA_JPEG]))
        self.assertEqual(params["NumMedia"], "1")
        self.assertEqual(params["MessageType"], "image")
        self.assertEqual(params["MediaContentType0"], "image/jpeg")
        self.assertTrue(params["MessageSid"].startswith("MM"))
        self.assertEqual(params["MediaUrl0"], self.p.media_url(MEDIA_JPEG, params["MessageSid"]))
        loc = dict(self.p.rich_webhook_params("whatsapp:+5511999990000", "location",
                                              location=(-23.56, -46.65, "Av. Paulista", "Work")))
        self.assertEqual((loc["Latitude"], loc["Label"], loc["NumMedia"]), ("-23.56", "Work", "0"))
        btn = dict(self.p.rich_webhook_params("whatsapp:+5511999990000", "button", "Yes",
                                              button=("Yes", "book_yes")))
        self.assertEqual((btn["ButtonText"], btn["ButtonPayload"]), ("Yes", "book_yes"))

    def test_simulated_customer_sends_media(self):
        # No webhook destination: the delivery is only recorded (status null).
        r = self.p.fake_post("twilio", "/_fake/inbound", {
            "from": "whatsapp:+5511999990000", "to": "whatsapp:+14155238886", "body": "",
            "media": [MEDIA_OGG]})
        self.assertTrue(r["sid"].startswith("MM"))
        params = self.p.fake_get("twilio", "/_fake/webhooks")[-1]["params"]
        self.assertEqual((params["NumMedia"], params["MessageType"], params["MediaContentType0"]),
                         ("1", "audio", "audio/ogg"))
        self.assertEqual(params["MediaUrl0"], self.p.media_url(MEDIA_OGG, r["sid"]))
        self.p.fake_post("twilio", "/_fake/inbound", {
            "from": "whatsapp:+5511999990000", "to": "whatsapp:+14155238886", "body": "Yes",
            "message_type": "button", "params": {"ButtonText": "Yes", "ButtonPayload": "b1"}})
        params = self.p.fake_get("twilio", "/_fake/webhooks")[-1]["params"]
        self.assertEqual((params["MessageType"], params["ButtonPayload"], params["NumMedia"]),
                         ("button", "b1", "0"))

    # ---- MCS and Conversations media ---------------------------------------

    def test_mcs_upload_then_message_with_media(self):
        st, text, _ = http("POST", self.tw + "/v1/Conversations", *form(FriendlyName="x"))
        self.assertEqual(st, 201, text)
        conv = json.loads(text)
        service = conv["chat_service_sid"]
        jpeg = media_fixture("rash.jpg")
        mcs = "%s/v1/Services/%s/Media" % (self.tw, service)
        st, text, _ = http("POST", mcs, jpeg, {"Content-Type": "image/jpeg"})
        self.assertEqual(st, 401)
        st, text, _ = http("POST", mcs, b"", dict(AUTH, **{"Content-Type": "image/jpeg"}))
        self.assertEqual(st, 400, text)
        st, text, _ = http("POST", mcs + "?Filename=rash.jpg", jpeg,
                           dict(AUTH, **{"Content-Type": "image/jpeg"}))
        self.assertEqual(st, 201, text)
        media = json.loads(text)
        self.assertRegex(media["sid"], "^ME[0-9a-f]{32}$")
        self.assertEqual((media["size"], media["content_type"], media["filename"],
                          media["service_sid"], media["category"]),
                         (len(jpeg), "image/jpeg", "rash.jpg", service, "media"))
        self.assertIsNone(media["message_sid"])
        # The temporary URL serves the bytes without auth.
        st, body, _ = self.get_bytes(media["links"]["content_direct_temporary"])
        self.assertEqual((st, body), (200, jpeg))

        msgs = "%s/v1/Conversations/%s/Messages" % (self.tw, conv["sid"])
        st, text, _ = http("POST", msgs, *form(Author="whatsapp:+5511999990000",
                                                MediaSid="ME" + "f" * 32))
        self.assertEqual((st, json.loads(text)["code"]), (400, 50510))
        st, text, _ = http("POST", msgs, *form(Author="whatsapp:+5511999990000",
                                                MediaSid=media["sid"]))
        self.assertEqual(st, 201, text)
        msg = json.loads(text)
        self.assertIsNone(msg["body"])
        self.assertEqual(msg["media"], [{"sid": media["sid"], "content_type": "image/jpeg",
                                         "filename": "rash.jpg", "size": len(jpeg)}])
        st, text, _ = http("POST", msgs, *form(Body="again", MediaSid=media["sid"]))
        self.assertEqual((st, json.loads(text)["code"]), (400, 50508))
        st, text, _ = http("GET", "%s/%s" % (mcs, media["sid"]), headers=AUTH)
        self.assertEqual((st, json.loads(text)["message_sid"]), (200, msg["sid"]))
        self.assertEqual(self.p.fake_get("twilio", "/_fake/spec_violations"), [])
        uploads = self.p.mcs_uploads()
        self.assertEqual([(u["sid"], u["size"], u["message_sid"]) for u in uploads],
                         [(media["sid"], len(jpeg), msg["sid"])])
        self.assertEqual(self.p.conversation_media(conv["sid"])[0]["media"], msg["media"])

        # Multipart upload, and a failure rule on the MCS path.
        body, ctype = multipart({}, {"media": ("voice.ogg", "audio/ogg", media_fixture("voice.ogg"))})
        st, text, _ = http("POST", mcs, body, dict(AUTH, **{"Content-Type": ctype}))
        self.assertEqual(st, 201, text)
        self.assertEqual((json.loads(text)["content_type"], json.loads(text)["filename"]),
                         ("audio/ogg", "voice.ogg"))
        self.p.fake_post("twilio", "/_fake/fail", {"path_regex": "/Services/[^/]+/Media$",
                                                   "status": 503})
        st, text, _ = http("POST", mcs, jpeg, dict(AUTH, **{"Content-Type": "image/jpeg"}))
        self.assertEqual(st, 503)

    # ---- fake LLM -----------------------------------------------------------

    def anthropic(self, content):
        req = {"model": "claude-x", "max_tokens": 100,
               "messages": [{"role": "user", "content": content}]}
        return http("POST", self.llm + "/v1/messages", json.dumps(req).encode(),
                    {"x-api-key": LLM_KEY, "anthropic-version": "2023-06-01",
                     "Content-Type": "application/json"})

    def test_llm_image_and_document_blocks(self):
        jpeg, pdf = media_fixture("rash.jpg"), media_fixture("exam.pdf")
        b64 = base64.b64encode(jpeg).decode()
        st, text, _ = self.anthropic([
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                         "data": b64}},
            {"type": "text", "text": "what is this on my arm?"}])
        self.assertEqual(st, 200, text)
        self.assertIn("photo of the rash", json.loads(text)["content"][0]["text"])
        # The human rule still comes first.
        st, text, _ = self.anthropic([
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                         "data": b64}},
            {"type": "text", "text": "I want a human"}])
        self.assertIn("[ESCALAR]", json.loads(text)["content"][0]["text"])
        # Wrong media type for the bytes, bad base64, a PDF document.
        st, text, _ = self.anthropic([{"type": "image", "source": {
            "type": "base64", "media_type": "image/png", "data": b64}}])
        self.assertEqual(st, 400)
        self.assertEqual(json.loads(text)["error"]["type"], "invalid_request_error")
        st, _, _ = self.anthropic([{"type": "image", "source": {
            "type": "base64", "media_type": "image/jpeg", "data": "not base64!"}}])
        self.assertEqual(st, 400)
        st, text, _ = self.anthropic([{"type": "document", "source": {
            "type": "base64", "media_type": "application/pdf",
            "data": base64.b64encode(pdf).decode()}}, {"type": "text", "text": "my exam"}])
        self.assertEqual(st, 200, text)
        blocks = self.p.llm_media_blocks()
        self.assertEqual([(b["type"], b["media_type"], b["bytes"], b["status"]) for b in blocks],
                         [("image", "image/jpeg", len(jpeg), 200),
                          ("image", "image/jpeg", len(jpeg), 200),
                          ("image", "image/png", len(jpeg), 400),
                          ("image", "image/jpeg", None, 400),
                          ("document", "application/pdf", len(pdf), 200)])
        # The record keeps no base64.
        rec = self.p.llm_requests()[0]["json"]["messages"][0]["content"][0]["source"]["data"]
        self.assertEqual(rec, "<%d base64 chars>" % len(b64))

        # OpenAI-compatible image_url.
        req = {"model": "gpt-x", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + b64}}]}]}
        st, text, _ = http("POST", self.llm + "/v1/chat/completions", json.dumps(req).encode(),
                           {"Authorization": "Bearer " + LLM_KEY,
                            "Content-Type": "application/json"})
        self.assertEqual(st, 200, text)
        self.assertIn("photo of the rash", json.loads(text)["choices"][0]["message"]["content"])
        req["messages"][0]["content"][1]["image_url"]["url"] = "data:image/gif;base64," + b64
        st, text, _ = http("POST", self.llm + "/v1/chat/completions", json.dumps(req).encode(),
                           {"Authorization": "Bearer " + LLM_KEY,
                            "Content-Type": "application/json"})
        self.assertEqual((st, json.loads(text)["error"]["code"]), (400, "invalid_image_format"))
        self.assertEqual(len(self.p.llm_media_blocks("image")), 6)

    def transcribe(self, data, filename="voice.ogg", model="whisper-1", key=LLM_KEY, **fields):
        f = {"model": model} if model else {}
        f.update(fields)
        body, ctype = multipart(f, {"file": (filename, "audio/ogg", data)})
        h = {"Content-Type": ctype}
        if key:
            h["Authorization"] = "Bearer " + key
        return http("POST", self.llm + "/v1/audio/transcriptions", body, h)

    def test_transcription(self):
        ogg = media_fixture("voice.ogg")
        st, text, _ = self.transcribe(ogg)
        self.assertEqual(st, 200, text)
        self.assertIn("rash", json.loads(text)["text"])
        self.assertEqual(self.transcribe(ogg, key=None)[0], 401)
        self.assertEqual(self.transcribe(ogg, model=None)[0], 400)
        st, text, _ = self.transcribe(b"garbage" * 10)
        self.assertEqual(st, 400)
        self.assertIn("Invalid file format", json.loads(text)["error"]["message"])
        self.p.set_transcription(text="Quero marcar uma consulta")
        st, text, _ = self.transcribe(ogg, response_format="text")
        self.assertEqual((st, text), (200, "Quero marcar uma consulta\n"))
        self.p.set_transcription(fail_status=503)
        self.assertEqual(self.transcribe(ogg)[0], 503)
        self.p.set_transcription(fail_status=None)
        calls = self.p.transcriptions()
        self.assertEqual(len(calls), 6)
        self.assertEqual((calls[0]["model"], calls[0]["filename"], calls[0]["content_type"],
                          calls[0]["bytes"], calls[0]["authorization"]),
                         ("whisper-1", "voice.ogg", "audio/ogg", len(ogg), True))
        self.assertEqual([c["status"] for c in calls], [200, 401, 400, 400, 200, 503])


if __name__ == "__main__":
    unittest.main()
