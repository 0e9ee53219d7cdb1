"""ingress's answers to bad and good HTTP: the right status, nothing stored, alive after."""

import base64
import hashlib
import hmac
import socket
import time
import unittest
import urllib.parse

from baton_harness import AUTH_TOKEN, PUBLIC_URL, Pipeline, http, twilio_signature, wait_for

ANA = "whatsapp:+5511988887777"


class TestHttpAnswers(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = Pipeline(env={"BATON_HTTP_ACK_TIMEOUT_MS": "600"})
        cls.p.start_all()

    @classmethod
    def tearDownClass(cls):
        cls.p.close()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.p.ingress_port, path)

    def assert_nothing_stored(self):
        # Whatever reached the router would be stored and answered by now.
        m = self.p.wait_idle()
        self.assertEqual(m.sum("baton_router_customer_messages_total"), 0)
        self.assertEqual(self.p.llm_requests(), [])
        self.assertEqual(self.p.sent_messages(), [])
        self.assertIsNone(self.p.procs["ingress"].poll(), "ingress died")

    def test_missing_signature_403(self):
        params = self.p.webhook_params(ANA, "hello")
        st, _, _ = self.p.post_webhook(params, signature=None)
        self.assertEqual(st, 403)
        self.assert_nothing_stored()

    def test_empty_signature_403(self):
        params = self.p.webhook_params(ANA, "hello")
        st, _, _ = self.p.post_webhook(params, headers={"X-Twilio-Signature": ""}, signature=None)
        self.assertEqual(st, 403)
        self.assert_nothing_stored()

    def test_wrong_token_403(self):
        params = self.p.webhook_params(ANA, "hello")
        st, _, _ = self.p.post_webhook(params, token="not-the-token")
        self.assertEqual(st, 403)
        self.assert_nothing_stored()

    def test_signature_for_another_url_403(self):
        params = self.p.webhook_params(ANA, "hello")
        st, _, _ = self.p.post_webhook(params, url="https://evil.example.com")
        self.assertEqual(st, 403)
        self.assert_nothing_stored()

    def test_altered_body_403(self):
        params = self.p.webhook_params(ANA, "hello")
        sig = twilio_signature(AUTH_TOKEN, PUBLIC_URL + "/twilio/messages", params)
        altered = [(k, "give me a refund" if k == "Body" else v) for k, v in params]
        st, _, _ = self.p.post_webhook(altered, signature=sig)
        self.assertEqual(st, 403)
        self.assert_nothing_stored()

    def test_oversized_body_413(self):
        params = self.p.webhook_params(ANA, "x" * 70000)
        st, _, _ = self.p.post_webhook(params)
        self.assertEqual(st, 413)
        self.assert_nothing_stored()

    def test_oversized_chunked_body_413(self):
        # No Content-Length: the bound must hold while reading.
        s = socket.create_connection(("127.0.0.1", self.p.ingress_port))
        s.sendall(b"POST /twilio/messages HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"a" * 8192
        for _ in range(10):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        s.sendall(b"0\r\n\r\n")
        s.settimeout(5)
        resp = s.recv(4096).decode()
        s.close()
        self.assertTrue(resp.startswith("HTTP/1.1 413"), resp[:60])
        self.assert_nothing_stored()

    def test_bad_percent_encoding_400(self):
        body = b"Body=%ZZhello&From=whatsapp%3A%2B1&To=whatsapp%3A%2B2&MessageSid=SM1"
        st, _, _ = self.p.post_webhook([], raw_body=body, signature="x")
        self.assertEqual(st, 400)
        self.assert_nothing_stored()

    def test_missing_from_400(self):
        params = [(k, v) for k, v in self.p.webhook_params(ANA, "hello") if k != "From"]
        st, _, _ = self.p.post_webhook(params)
        self.assertEqual(st, 400)
        self.assert_nothing_stored()

    def test_missing_body_400(self):
        params = [(k, v) for k, v in self.p.webhook_params(ANA, "hello") if k != "Body"]
        st, _, _ = self.p.post_webhook(params)
        self.assertEqual(st, 400)
        self.assert_nothing_stored()

    def test_non_utf8_body_400(self):
        params = self.p.webhook_params(ANA, "hello")
        raw = urllib.parse.urlencode(params).replace("Body=hello", "Body=%FF%FEhello").encode()
        # A correct signature over the decoded bytes, so that only the UTF-8
        # check can refuse it (a 403 here would prove nothing).
        decoded = [(k.encode(), b"\xff\xfehello" if k == "Body" else v.encode()) for k, v in params]
        data = (PUBLIC_URL + "/twilio/messages").encode()
        for name in sorted(set(k for k, _ in decoded)):
            for value in sorted(set(v for k, v in decoded if k == name)):
                data += name + value
        sig = base64.b64encode(hmac.new(AUTH_TOKEN.encode(), data, hashlib.sha1).digest()).decode()
        st, _, _ = self.p.post_webhook([], raw_body=raw, signature=sig)
        self.assertEqual(st, 400)
        self.assert_nothing_stored()

    def test_wrong_content_type_415(self):
        params = self.p.webhook_params(ANA, "hello")
        st, _, _ = self.p.post_webhook(params, headers={"Content-Type": "application/json"})
        self.assertEqual(st, 415)
        self.assert_nothing_stored()

    def test_unknown_path_404(self):
        st, _, _ = http("POST", self.url("/twilio/other"), b"", {})
        self.assertEqual(st, 404)
        st, _, _ = http("GET", self.url("/"))
        self.assertEqual(st, 404)

    def test_wrong_method_405(self):
        st, _, h = http("GET", self.url("/twilio/messages"))
        self.assertEqual(st, 405)
        self.assertEqual(h.get("Allow"), "POST")
        st, _, _ = http("POST", self.url("/healthz"), b"x", {})
        self.assertEqual(st, 405)

    def test_healthz(self):
        st, body, _ = http("GET", self.url("/healthz"))
        self.assertEqual(st, 200)
        self.assertIn("ok", body)


class TestAccepted(unittest.TestCase):
    def test_200_is_empty_twiml_as_text_xml(self):
        p = Pipeline()
        self.addCleanup(p.close)
        p.start_all()
        params = p.webhook_params(ANA, "hi")
        st, body, h = p.post_webhook(params)
        self.assertEqual(st, 200)
        self.assertTrue(h.get("Content-Type", "").startswith("text/xml"))
        self.assertEqual(body, '<?xml version="1.0" encoding="UTF-8"?><Response></Response>')


class TestRouterDown(unittest.TestCase):
    def test_503_when_router_does_not_answer_then_200_when_back(self):
        p = Pipeline(env={"BATON_HTTP_ACK_TIMEOUT_MS": "500"})
        self.addCleanup(p.close)
        p.start_all()
        p.stop("router")
        params = p.webhook_params(ANA, "Where is the clinic?")
        t0 = time.monotonic()
        st, _, _ = p.post_webhook(params)
        self.assertEqual(st, 503)
        self.assertLess(time.monotonic() - t0, 3)
        p.start("router")
        # Twilio's retry of the same message: stored once, answered once.
        st = wait_for(lambda: p.post_webhook(params)[0] == 200, 10, interval=0.2, what="200 after restart")
        wait_for(lambda: p.sent_messages(), 10, what="reply")
        m = p.wait_idle()  # the first attempt, if the new router got it too, is done with
        self.assertEqual(m.sum("baton_router_customer_messages_total"), 1)
        self.assertEqual(len(p.sent_messages()), 1)
        self.assertEqual(len(p.llm_requests()), 1)


if __name__ == "__main__":
    unittest.main()
