"""Configuration errors name the setting and exit 2; --check-config masks secrets."""

import os
import subprocess
import tempfile
import time
import unittest

from baton_harness import PROCS

BIN = os.environ.get("BATON_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))


def run(prog, args=(), env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    e.update(env or {})
    return subprocess.run([os.path.join(BIN, prog)] + list(args), env=e, capture_output=True,
                          text=True, timeout=10)


class TestConfig(unittest.TestCase):
    def test_bad_env_values_exit_2_naming_the_setting(self):
        cases = [({"BATON_HTTP_PORT": "eighty"}, "http.port"),
                 ({"BATON_HTTP_PORT": "70000"}, "http.port"),
                 ({"BATON_LLM_PROVIDER": "palm"}, "llm.provider"),
                 ({"BATON_AI_ESCALATION_MODE": "tool"}, "ai.escalation_mode"),
                 ({"BATON_AI_ON_FAILURE": "retry"}, "ai.on_failure"),
                 ({"BATON_HANDOFF_HISTORY": "12"}, "handoff.history"),
                 ({"BATON_HANDOFF_INJECT": "transcripts"}, "handoff.inject"),
                 ({"BATON_HANDOFF_NO_AGENT_POLICY": "human"}, "handoff.no_agent_policy"),
                 ({"BATON_HANDOFF_AFTER_HOURS": "later"}, "handoff.after_hours"),
                 ({"BATON_LOG_LEVEL": "verbose"}, "log.level"),
                 ({"BATON_LLM_BASE_URL": "ftp://x"}, "llm.base_url"),
                 ({"BATON_LMDB_SYNC": "maybe"}, "lmdb.sync"),
                 ({"BATON_TWILIO_ACCOUNT_SID": "XX123"}, "twilio.account_sid")]
        for prog in PROCS.values():
            for env, key in cases:
                r = run(prog, env=env)
                self.assertEqual(r.returncode, 2, (prog, env, r.stderr))
                self.assertIn(key, r.stderr, (prog, env))

    def test_bad_enum_values_name_the_setting_and_every_allowed_value(self):
        # (setting, value written, the values it takes, the hint or None)
        cases = [("llm.provider", "palm", "anthropic, openai", None),
                 ("llm.provider", "OpenAI", "anthropic, openai", "openai"),
                 ("ai.escalation_mode", "tool", "structured, tag", None),
                 ("ai.on_failure", "apologise", "escalate, apologize", "apologize"),
                 ("handoff.history", "12", "10, 15, 20, all", None),
                 ("handoff.inject", "transcripts", "messages, transcript", "transcript"),
                 ("handoff.no_agent_policy", "human", "wait, ai", None),
                 ("handoff.after_hours", "later", "create, queue", None),
                 ("log.level", "warning", "debug, info, notice, warn, error", "warn")]
        d = tempfile.mkdtemp(prefix="baton-enum-")
        self.addCleanup(lambda: subprocess.call(["rm", "-rf", d]))
        conf = os.path.join(d, "baton.conf")
        for key, value, allowed, hint in cases:
            said = "'%s' is not one of %s" % (value, allowed)
            env = "BATON_" + key.upper().replace(".", "_")
            r = run("baton-router", env={env: value})
            self.assertEqual(r.returncode, 2, (key, value, r.stderr))
            self.assertIn("config error: %s: %s" % (key, said), r.stderr)
            self.assertIn("(from environment %s)" % env, r.stderr)
            if hint:
                self.assertIn("(did you mean %s?)" % hint, r.stderr)
            else:
                self.assertNotIn("did you mean", r.stderr)
            with open(conf, "w") as f:
                f.write("# enum\n%s = %s\n" % (key, value))
            r = run("baton-router", ["--config", conf, "--check-config"])
            self.assertEqual(r.returncode, 2, (key, value, r.stderr))
            self.assertIn("%s: %s" % (key, said), r.stderr)
            self.assertIn("(from %s:2)" % conf, r.stderr)
        # A [number] section's value is checked the same way.
        with open(conf, "w") as f:
            f.write("[number whatsapp:+15550001111]\nhandoff.after_hours = Queue\n")
        r = run("baton-router", ["--config", conf, "--check-config"])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("handoff.after_hours: 'Queue' is not one of create, queue", r.stderr)
        self.assertIn("(did you mean queue?)", r.stderr)

    def test_config_file_errors(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("# comment\nhttp.port = 8081\nno.such.setting = 1\n")
        self.addCleanup(os.unlink, f.name)
        r = run("baton-router", ["--config", f.name])
        self.assertEqual(r.returncode, 2)
        self.assertIn("no.such.setting", r.stderr)
        self.assertIn(":3:", r.stderr)
        r = run("baton-router", ["--config", "/nonexistent/baton.conf"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("/nonexistent/baton.conf", r.stderr)

    def test_file_then_env_precedence_and_masked_dump(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write('http.port = 8081\ntwilio.auth_token = "file-secret-123"\n'
                    'ai.apology = "Line one\\nline two"\n')
        self.addCleanup(os.unlink, f.name)
        r = run("baton-ingress", ["--config", f.name, "--check-config"],
                env={"BATON_HTTP_PORT": "9090", "BATON_LLM_API_KEY": "env-secret-456",
                     "BATON_SANDBOX": "true"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("http.port = 9090", r.stdout)
        self.assertIn('ai.apology = "Line one\\nline two"', r.stdout)
        self.assertNotIn("file-secret-123", r.stdout)
        self.assertNotIn("env-secret-456", r.stdout)
        self.assertIn('twilio.auth_token = "********"', r.stdout)

    def test_help_lists_the_settings_the_process_reads_and_help_all_every_one(self):
        r = run("baton-egress", ["--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("BATON_TWILIO_API_BASE", r.stdout)
        self.assertIn("egress.reconcile", r.stdout)
        self.assertNotIn("llm.base_url", r.stdout)      # ai-worker's
        self.assertNotIn("lmdb.map_size_mb", r.stdout)  # the router's
        r = run("baton-egress", ["--help-all"])
        self.assertIn("llm.base_url", r.stdout)
        self.assertIn("lmdb.map_size_mb", r.stdout)
        r = run("baton-ai-worker", ["--help"])
        self.assertIn("llm.api_key", r.stdout)
        self.assertIn("twilio.auth_token ", r.stdout)  # it fetches customers' media
        self.assertNotIn("twilio.conversations_base", r.stdout)

    def test_unknown_option_exit_2(self):
        r = run("baton-ai-worker", ["--frobnicate"])
        self.assertEqual(r.returncode, 2)


if __name__ == "__main__":
    unittest.main()


class TestConfigReference(unittest.TestCase):
    def test_docs_table_matches_the_binaries(self):
        r = run("baton-router", ["--config-reference"])
        self.assertEqual(r.returncode, 0)
        doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "CONFIG.md")).read()
        table = doc.split("<!-- settings:begin -->\n")[1].split("<!-- settings:end -->")[0]
        self.assertEqual(table, r.stdout, "docs/CONFIG.md is stale: run scripts/gen-config-doc")
        for line in r.stdout.splitlines()[2:]:
            self.assertRegex(line, r"^\| `[a-z_.]+` \| `BATON_[A-Z_]+` \| .+ \| .+ \|$")

    def test_check_config_shows_number_sections_with_secrets_masked(self):
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write("twilio.auth_token = tok-very-secret-1\n"
                    "[number whatsapp:+15550001111]\nai.language = es\n")
        self.addCleanup(os.unlink, f.name)
        r = run("baton-router", ["--config", f.name, "--check-config"], env={"BATON_SANDBOX": "true"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("tok-very-secret-1", r.stdout)
        self.assertIn("[number whatsapp:+15550001111]\n", r.stdout)
        self.assertIn('ai.language = "es"', r.stdout)
        bad = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
        bad.write("[number whatsapp:+15550001111]\nlmdb.sync = false\n")
        bad.close()
        self.addCleanup(os.unlink, bad.name)
        r = run("baton-router", ["--config", bad.name, "--check-config"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("lmdb.sync cannot be set per number", r.stderr)

    def test_example_config_wants_real_values_and_then_passes(self):
        example = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "baton.conf.example")
        r = run("baton-router", ["--config", example, "--check-config"])
        self.assertEqual(r.returncode, 2)
        self.assertIn("is a placeholder, not a real SID", r.stderr)
        # With real SIDs and the secrets in files, every process would start.
        text = open(example).read()
        for placeholder in ("AC" + "0" * 32, "WS" + "0" * 32, "WW" + "0" * 32,
                            "WW" + "1" * 32, "WW" + "2" * 32):
            text = text.replace(placeholder, placeholder[:2] + os.urandom(16).hex())
        d = tempfile.mkdtemp()
        self.addCleanup(lambda: subprocess.call(["rm", "-rf", d]))
        conf = os.path.join(d, "baton.conf")
        with open(conf, "w") as f:
            f.write(text)
        env = {}
        for key in ("twilio.auth_token", "llm.api_key"):
            path = os.path.join(d, key)
            with open(path, "w") as f:
                f.write(os.urandom(16).hex() + "\n")
            os.chmod(path, 0o600)
            env["BATON_" + key.upper().replace(".", "_") + "_FILE"] = path
        r = run("baton-router", ["--config", conf, "--check-config"], env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("[number whatsapp:+14155230000]", r.stdout)


def hexsid(prefix, seed):
    return prefix + ("%032x" % (0x1234567890abcdef * (seed + 3)))[-32:]


# A production config every process accepts: real-looking SIDs, secrets in files.
GOOD = {
    "http.public_url": "https://bot.example.com",
    "twilio.account_sid": hexsid("AC", 1),
    "flex.workspace_sid": hexsid("WS", 2),
    "flex.workflow_sid": hexsid("WW", 3),
    "business.hours": "mon-fri 08:00-19:00",
}


class TestCheckConfigIsEveryProcess(unittest.TestCase):
    """check-config runs every process's start-up checks: a config that makes
    any process exit 2 makes check-config exit 2 with the same message."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="baton-cc-")
        self.addCleanup(lambda: subprocess.call(["rm", "-rf", self.dir]))
        self.secrets = {}
        for key in ("twilio.auth_token", "llm.api_key", "console.token"):
            path = os.path.join(self.dir, key)
            with open(path, "w") as f:
                f.write(os.urandom(12).hex())
            os.chmod(path, 0o600)
            self.secrets[key + "_file"] = path

    def write(self, settings, tail=""):
        path = os.path.join(self.dir, "baton.conf")
        with open(path, "w") as f:
            f.write("state.dir = %s\n" % os.path.join(self.dir, "state"))
            for k, v in settings.items():
                if v is not None:
                    f.write('%s = "%s"\n' % (k, v))
            f.write(tail)
        return path

    def outcomes(self, progs, conf, env=None):
        """{prog: (exit code, message)} of starting each prog at once; one
        still running after a moment has passed its checks (it is stopped)."""
        e = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        e.update(env or {})
        procs = {prog: subprocess.Popen([os.path.join(BIN, prog), "--config", conf], env=e,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True) for prog in progs}
        out, deadline = {}, time.monotonic() + 1.5
        for prog, p in procs.items():
            try:
                _, err = p.communicate(timeout=max(0.05, deadline - time.monotonic()))
                out[prog] = (p.returncode, err.strip())
            except subprocess.TimeoutExpired:
                p.kill()   # it passed its checks; that is all this asks
                p.communicate()
                out[prog] = ("started", "")
        return out

    def outcome(self, prog, conf, env=None):
        return self.outcomes([prog], conf, env)[prog]

    def test_every_broken_config_fails_check_config_with_the_process_message(self):
        good = dict(GOOD, **self.secrets)
        broken = [
            ("a missing auth token", dict(good, **{"twilio.auth_token_file": None})),
            ("the sandbox's token", dict(good, **{"twilio.auth_token_file": None,
                                                  "twilio.auth_token": "sandbox_token"})),
            ("a missing LLM key", dict(good, **{"llm.api_key_file": None})),
            ("a placeholder account", dict(good, **{"twilio.account_sid": "AC" + "0" * 32})),
            ("a malformed workspace", dict(good, **{"flex.workspace_sid": "WS123"})),
            ("a placeholder workflow", dict(good, **{"flex.workflow_sid": "WW" + "2" * 32})),
            ("bad hours", dict(good, **{"business.hours": "mon-fri 8-19"})),
            ("a public URL with a path", dict(good, **{"http.public_url": "https://x.example.com/bot"})),
            ("a sender without whatsapp:", dict(good, **{"twilio.whatsapp_from": "+14155238886"})),
            ("signatures off", dict(good, **{"twilio.validate_signature": "false"})),
            ("an API key without its secret", dict(good, **{"twilio.api_key_sid": hexsid("SK", 4)})),
        ]
        tails = [("a number without whatsapp:", "[number +5511999]\nai.language = es\n"),
                 ("a number's bad hours", "[number whatsapp:+5511999990000]\nbusiness.hours = someday\n")]
        cases = [(n, self.write(c)) for n, c in broken] + \
                [(n, self.write(good, t)) for n, t in tails]
        for name, conf in cases:
            results = self.outcomes(PROCS.values(), conf)
            failing = {p: m for p, (rc, m) in results.items() if rc == 2}
            self.assertTrue(failing, "%s: some process must refuse it: %s" % (name, results))
            rc, out, err = self.check(conf)
            self.assertEqual(rc, 2, "%s: check-config accepted it" % name)
            said = err.split("config error: ", 1)[1]
            self.assertIn(said, [m.split("config error: ", 1)[1] for m in failing.values()], name)
        # And the good one: check-config 0, and no process refuses it.
        conf = self.write(good)
        rc, out, err = self.check(conf)
        self.assertEqual(rc, 0, err)
        for prog, (rc, msg) in self.outcomes(PROCS.values(), conf).items():
            self.assertNotEqual(rc, 2, (prog, msg))

    def check(self, conf, env=None):
        e = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        e.update(env or {})
        p = subprocess.run([os.path.join(BIN, "baton-router"), "--config", conf, "--check-config"],
                           env=e, capture_output=True, text=True, timeout=10)
        return p.returncode, p.stdout, p.stderr.strip()

    def test_a_misspelt_variable_is_an_error_with_a_hint(self):
        conf = self.write(dict(GOOD, **self.secrets))
        rc, _, err = self.check(conf, {"BATON_HTTP_PROT": "8080"})
        self.assertEqual(rc, 2)
        self.assertIn("unknown environment variable BATON_HTTP_PROT (did you mean BATON_HTTP_PORT?)",
                      err)
        rc, _, err = self.outcome("baton-ingress", conf, {"BATON_HTTP_PROT": "8080"})[0], None, None
        self.assertEqual(rc, 2)

    def test_help_shows_none_for_secrets_and_sandbox_mode_is_loud(self):
        r = run("baton-ingress", ["--help"])
        self.assertIn("twilio.auth_token", r.stdout)
        self.assertNotIn("sandbox_token", r.stdout)
        self.assertNotIn("(secret)", r.stdout)
        line = [l for l in r.stdout.splitlines() if l.strip().startswith("twilio.auth_token ")][0]
        self.assertIn("(none)", line)
