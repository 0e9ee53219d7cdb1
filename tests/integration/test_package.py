"""make deb: the Debian package builds, lintian finds no error in it, and
what it installs runs (check-config, batonctl) from an unpacked tree."""

import os
import shutil
import subprocess
import tempfile
import unittest

from baton_harness import ROOT


class TestDebianPackage(unittest.TestCase):
    def test_package_builds_is_lintian_clean_and_runs_unpacked(self):
        for tool in ("dpkg-deb", "dpkg-shlibdeps", "lintian"):
            self.assertTrue(shutil.which(tool), "%s missing: scripts/install-deps installs it" % tool)
        bindir = os.environ.get("BATON_BIN", os.path.join(ROOT, "build", "bin"))
        r = subprocess.run([os.path.join(ROOT, "scripts", "mkdeb"), bindir], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("lintian: no errors", r.stdout)
        deb = [l.split()[-1] for l in r.stdout.splitlines() if l.startswith("built ")][0]
        info = subprocess.run(["dpkg-deb", "--info", os.path.join(ROOT, deb)],
                              capture_output=True, text=True).stdout
        for want in ("Package: baton", "Depends:", "libzmq5", "liblmdb0", "postinst"):
            self.assertIn(want, info)
        files = subprocess.run(["dpkg-deb", "--contents", os.path.join(ROOT, deb)],
                               capture_output=True, text=True).stdout
        for path in ("./usr/bin/baton-router", "./usr/bin/batonctl", "./usr/bin/baton",
                     "./lib/systemd/system/baton-router.service", "./etc/baton/baton.conf"):
            self.assertIn(path, files)
        root = tempfile.mkdtemp(prefix="baton-deb-")
        self.addCleanup(shutil.rmtree, root, True)
        subprocess.run(["dpkg", "-x", os.path.join(ROOT, deb), root], check=True)
        unit = open(os.path.join(root, "lib/systemd/system/baton-router.service")).read()
        self.assertIn("ExecStart=/usr/bin/baton-router", unit)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        # The packaged config is the example: its placeholder SIDs are refused...
        r = subprocess.run([os.path.join(root, "usr/bin/baton"), "check-config", "--config",
                            os.path.join(root, "etc/baton/baton.conf")], env=env,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("is a placeholder, not a real SID", r.stderr)
        # ...and it is otherwise complete: valid in sandbox mode.
        r = subprocess.run([os.path.join(root, "usr/bin/baton"), "check-config", "--config",
                            os.path.join(root, "etc/baton/baton.conf")],
                           env=dict(env, BATON_SANDBOX="true", BATON_TWILIO_ACCOUNT_SID="AC" + "0" * 32,
                                    BATON_FLEX_WORKSPACE_SID="WS" + "0" * 32),
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run([os.path.join(root, "usr/bin/batonctl"), "--help"], env=env,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("batonctl conversations", r.stdout)
