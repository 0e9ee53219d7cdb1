"""Configuration errors name the setting and exit 2; --check-config masks secrets."""

import os
import subprocess
import tempfile
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
                 ({"BATON_LLM_BASE_URL": "ftp://x"}, "llm.base_url"),
                 ({"BATON_LMDB_SYNC": "maybe"}, "lmdb.sync"),
                 ({"BATON_TWILIO_ACCOUNT_SID": "XX123"}, "twilio.account_sid")]
        for prog in PROCS.values():
            for env, key in cases:
                r = run(prog, env=env)
                self.assertEqual(r.returncode, 2, (prog, env, r.stderr))
                self.assertIn(key, r.stderr, (prog, env))

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
                env={"BATON_HTTP_PORT": "9090", "BATON_LLM_API_KEY": "env-secret-456"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("http.port = 9090", r.stdout)
        self.assertIn('ai.apology = "Line one\\nline two"', r.stdout)
        self.assertNotIn("file-secret-123", r.stdout)
        self.assertNotIn("env-secret-456", r.stdout)
        self.assertIn('twilio.auth_token = "********"', r.stdout)

    def test_help_lists_settings(self):
        r = run("baton-egress", ["--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("BATON_TWILIO_API_BASE", r.stdout)
        self.assertIn("llm.base_url", r.stdout)

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
        r = run("baton-router", ["--config", f.name, "--check-config"])
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

    def test_example_config_is_valid(self):
        example = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "baton.conf.example")
        r = run("baton-router", ["--config", example, "--check-config"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("[number whatsapp:+14155230000]", r.stdout)
