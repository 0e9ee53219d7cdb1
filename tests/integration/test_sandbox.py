"""make sandbox: the page you talk to baton with, driven in headless Chromium
through a whole handoff and hand-back. Everything it does goes through the
real processes (signed webhooks into ingress, the simulated Flex agent's
TaskRouter and Conversations webhooks back)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest
import urllib.request

import webdriver
from baton_harness import ROOT

ARTIFACTS = os.environ.get("BATON_TEST_ARTIFACTS", os.path.join(ROOT, "build", "test-artifacts"))


@unittest.skipIf(webdriver.available(), "browser test: %s" % webdriver.available())
class TestSandboxPage(unittest.TestCase):
    def setUp(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        env["BATON_BIN"] = os.environ.get("BATON_BIN", os.path.join(ROOT, "build", "bin"))
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "scripts", "sandbox.py"),
                                      "--port", "0"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.addCleanup(self.stop)
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        self.assertTrue(m, line + self.proc.stdout.read() if not m else "")
        self.url = "http://127.0.0.1:%s/" % m.group(1)
        d = re.search(r"state in (\S+);", line)
        self.state_dir = d.group(1) if d else None

    def keep_logs(self):
        """On a failure: the processes' logs to the artifacts, and what baton
        refused or ignored to the output (CI shows nothing else)."""
        if not self.state_dir or not os.path.isdir(self.state_dir):
            return
        kept = os.path.join(ARTIFACTS, "sandbox-failed-logs")
        os.makedirs(kept, exist_ok=True)
        for name in sorted(os.listdir(self.state_dir)):
            if not name.endswith(".log"):
                continue
            shutil.copy(os.path.join(self.state_dir, name), kept)
            with open(os.path.join(self.state_dir, name), errors="replace") as f:
                for line in f:
                    if re.search(r'"level":"(warn|error)"|ignored|refused', line) and \
                            "SANDBOX MODE" not in line:
                        print("%s: %s" % (name, line.rstrip()[:400]))
        # What the simulated Flex sent baton, and what baton answered.
        try:
            with open(os.path.join(self.state_dir, "fake_twilio.out")) as f:
                port = json.loads(f.readline())["port"]
            with urllib.request.urlopen("http://127.0.0.1:%d/_fake/webhooks" % port, timeout=10) as r:
                for w in json.loads(r.read()):
                    params = w.get("params") or {}
                    print("webhook %s %s %s -> %s %s" % (
                        time.strftime("%H:%M:%S", time.localtime(w.get("time", 0))), w.get("path"),
                        params.get("EventType", ""), w.get("status"), w.get("error") or ""))
        except (OSError, ValueError, KeyError) as e:
            print("sandbox: no webhook record (%s)" % e)
        print("sandbox logs: " + kept)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        self.assertEqual(self.proc.returncode, 0, out)
        self.assertIn("stopped", out)

    def chat(self, b):
        return b.js("return [...document.querySelectorAll('#chat li')].map(li => "
                    "[li.dataset.who, li.textContent])")

    def type(self, b, box, button, text):
        el = b.find(box)
        el.clear()
        el.send_keys(text)
        b.click(button)

    def test_a_whole_handoff_and_hand_back_in_the_browser(self):
        b = webdriver.Browser()
        self.addCleanup(b.close)
        try:
            self.drive(b)
        except Exception:
            try:
                print("sandbox failure: " + b.screenshot(os.path.join(ARTIFACTS, "sandbox-failed.png")))
            except Exception:
                pass
            self.keep_logs()
            raise

    def drive(self, b):
        b.get(self.url)
        b.wait(lambda: b.find("#mode").text in ("-", ""), what="the page")
        self.type(b, "#text", "#send-btn", "Where is the clinic?")
        b.wait(lambda: any("Av. Paulista" in t for w, t in self.chat(b)), 20, what="the AI's answer")
        self.assertEqual(b.find("#mode").text, "ai")
        self.type(b, "#text", "#send-btn", "I want to speak with a human")
        b.wait(lambda: b.find("#mode").text in ("escalating", "human"), 20, what="the handoff")
        b.wait(lambda: "pending" in b.find("#task-state").text, 20, what="the task in Flex")
        b.click("#accept")
        b.wait(lambda: b.find("#task-state").text == "active", 20, what="the agent joined")
        self.type(b, "#agent-text", "#agent-send-btn", "Hi Ana, Marta here. How can I help?")
        b.wait(lambda: any(w == "Marta" and "Marta here" in t for w, t in self.chat(b)), 20,
               what="the agent's reply on the phone")
        self.type(b, "#text", "#send-btn", "An appointment on Tuesday, please")
        b.wait(lambda: any("Tuesday" in li.text for li in b.find_all("#thread li")), 20,
               what="the customer's message in the agent's thread")
        llm_before = int(re.sub(r"\D", "", b.find("#llm-count").text) or 0)
        b.click("#close")
        b.wait(lambda: b.find("#mode").text == "ai", 20, what="the hand-back")
        timeline = b.js("return document.getElementById('timeline').textContent")
        for event in ("escalated", "task_created", "accepted", "first_agent_reply", "handed_back"):
            self.assertIn(event, timeline)
        self.type(b, "#text", "#send-btn", "Thanks! When is my appointment?")
        b.wait(lambda: any("Tuesday, as our team confirmed" in t for w, t in self.chat(b)), 20,
               what="the AI again after the hand-back")
        llm_after = int(re.sub(r"\D", "", b.find("#llm-count").text) or 0)
        self.assertEqual(llm_after, llm_before + 1, "no LLM call while a person had it")
        path = b.screenshot(os.path.join(ARTIFACTS, "sandbox.png"))
        print("sandbox screenshot: " + path)
