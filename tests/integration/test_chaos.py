"""The chaos test, CI-sized: 200 messages over 20 conversations while a
process is SIGKILLed every second or two; `make chaos` runs 2,000 over 200."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "chaos"))
import chaos  # noqa: E402


class TestChaos(unittest.TestCase):
    def test_nothing_lost_nothing_doubled_under_kills(self):
        c = chaos.Chaos(chaos.main.__globals__["argparse"].Namespace(
            conversations=20, messages=200, escalate_share=0.3, llm_latency_ms=20, seed=11,
            pace=0.5, strict=False))
        try:
            problems = c.run()
        finally:
            c.stop_killer.set()
            c.p.close()
        self.assertGreater(sum(c.stats["kills"].values()), 5, "the killer must have worked")
        self.assertEqual(c.stats["acked"], 200)
        self.assertEqual(problems, [])


if __name__ == "__main__":
    unittest.main()
