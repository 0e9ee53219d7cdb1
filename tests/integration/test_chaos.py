"""The chaos test, CI-sized: 200 messages over 20 conversations while a
process is SIGKILLed every second or two; `make chaos` runs 2,000 over 200."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "chaos"))
import chaos  # noqa: E402


def run_chaos(reconcile):
    c = chaos.Chaos(chaos.main.__globals__["argparse"].Namespace(
        conversations=20, messages=200, escalate_share=0.3, llm_latency_ms=20, seed=11,
        pace=0.5, strict=False, reconcile=reconcile))
    try:
        problems = c.run()
        if problems:
            # The logs say which send or handoff it was: keep them.
            c.p.keep = True
            print("chaos: state and logs kept in %s" % c.p.dir)
    finally:
        c.stop_killer.set()
        c.p.close()
    return c, problems


class TestChaos(unittest.TestCase):
    def test_nothing_lost_nothing_doubled_under_kills(self):
        c, problems = run_chaos(True)
        self.assertGreater(sum(c.stats["kills"].values()), 5, "the killer must have worked")
        self.assertEqual(c.stats["acked"], 200)
        self.assertEqual(problems, [])
        self.assertEqual(c.stats["duplicate_sends"], 0)

    def test_without_reconciliation_only_duplicate_sends_appear(self):
        # The comparison: the same chaos with egress.reconcile = false. Its
        # duplicate sends are printed (they vary with timing); every other
        # invariant still holds.
        c, problems = run_chaos(False)
        self.assertEqual(c.stats["acked"], 200)
        self.assertEqual(problems, [])


if __name__ == "__main__":
    unittest.main()
