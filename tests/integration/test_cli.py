"""The command-line tools behave: plain errors with a hint, addresses as
people type them, no traceback on a closed pipe, --config everywhere, and
logs that say which worker and do not warn about a planned scale-down."""

import os
import signal
import subprocess
import sys
import unittest

from baton_harness import ROOT, Pipeline, wait_for

ANA = "whatsapp:+5511988887777"


class TestBatonctl(unittest.TestCase):
    def setUp(self):
        self.p = Pipeline()
        self.addCleanup(self.p.close)
        self.p.start_all()

    def test_addresses_as_people_type_them(self):
        p = self.p
        self.assertEqual(p.send(ANA, "Where is the clinic?")[0], 200)
        wait_for(lambda: p.sent_messages(ANA), 10, what="the reply")
        for typed in ("5511988887777", "+5511988887777", ANA, " +5511988887777 ",
                      "+5511988887777|+14155238886"):
            rc, out, err = p.ctl("show", typed)
            self.assertEqual(rc, 0, (typed, err))
            self.assertIn("Where is the clinic?", out)
        rc, out, err = p.ctl("show", "5511000000000")
        self.assertEqual(rc, 3)
        self.assertIn("no conversation with whatsapp:+5511000000000", err)
        self.assertIn("batonctl conversations lists them", err)

    def test_errors_are_sentences_with_a_hint_not_log_lines(self):
        env = self.p.env()
        env["BATON_STATE_DIR"] = os.path.join(self.p.dir, "nowhere")
        r = subprocess.run([os.path.join(self.p.bindir, "batonctl"), "stats"], env=env,
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertNotIn('{"ts"', r.stderr)
        self.assertTrue(r.stderr.startswith("batonctl: "), r.stderr)
        self.assertIn("hint:", r.stderr)
        self.assertIn("/var/lib/baton", r.stderr)


class TestBatonScript(unittest.TestCase):
    def test_config_on_every_command_and_no_traceback_on_a_closed_pipe(self):
        p = Pipeline()
        self.addCleanup(p.close)
        p.start_fakes()
        conf = os.path.join(p.dir, "baton.conf")
        os.makedirs(os.path.join(p.dir, "state"), exist_ok=True)
        with open(conf, "w") as f:
            f.write("state.dir = %s\n" % os.path.join(p.dir, "state"))
        env = p.env()
        env.pop("BATON_STATE_DIR")
        baton = [sys.executable, os.path.join(ROOT, "scripts", "baton"), "--bin", p.bindir]
        for cmd in ("start", "status", "scale", "stop", "check-config", "keygen"):
            r = subprocess.run(baton[:2] + [cmd, "--help"], env=env, capture_output=True, text=True)
            self.assertIn("--config", r.stdout, cmd)
        r = subprocess.run(baton[:2] + ["start", "--config", conf, "--bin", p.bindir], env=env,
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.addCleanup(subprocess.run, baton[:2] + ["stop", "--config", conf, "--bin", p.bindir],
                        env=env, capture_output=True, timeout=90)
        # `baton status | head -1`: the reader leaves early.
        sh = subprocess.run("%s %s status --config %s --bin %s | head -1" % (
            sys.executable, os.path.join(ROOT, "scripts", "baton"), conf, p.bindir),
            shell=True, env=env, capture_output=True, text=True, timeout=30)
        self.assertNotIn("Traceback", sh.stderr)
        self.assertNotIn("BrokenPipe", sh.stderr)
        self.assertTrue(sh.stdout.strip())
        # Scale the ai-workers down: planned, so no warning about silent workers.
        r = subprocess.run(baton[:2] + ["scale", "ai-worker", "2", "--config", conf, "--bin", p.bindir],
                           env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run(baton[:2] + ["scale", "ai-worker", "1", "--config", conf, "--bin", p.bindir],
                           env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        log = os.path.join(p.dir, "state", "run", "router-1.log")
        # The router notices the gone worker (past worker.timeout_ms) and counts one.
        p.wait_metrics(lambda m: m.sum("baton_router_workers", "router", kind="ai") == 1, 10,
                       proc="router", what="the router to count one ai worker")
        with open(log) as f:
            text = f.read()
        self.assertRegex(text, r"ai worker ai-[^ ]+ (left|is stopping)")
        self.assertRegex(text, r"ai worker joined: ai-[^,]+-\d+, capacity")
        self.assertNotIn("silent for", text)
