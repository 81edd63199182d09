"""Issue 17 §6: each message's delay warning has a timer of its own (no
5-minute sweep), and its text says the configured time ("3 seconds",
"5 days"), not the seconds waited.  The daemon runs for real; the message
waits for a queue run (a smart host route, no link manager) and asks
NOTIFY=DELAY; its sender is local, so the warning lands in a Maildir."""

from __future__ import annotations

import pytest

from daemon_harness import cli, start
from test_delivery import maildir_new, wait_until

pytestmark = pytest.mark.timeout(60)


def test_delay_warning_goes_out_at_queuewarn_and_says_it_in_words(tmp_path):
    daemon = start(tmp_path, {"Timeout": {"queuewarn": "3s", "queuereturn": "5d"}})
    try:
        mail = b"From: a@edge.example\nTo: far@remote.test\nSubject: slow\n\nbody\n"
        sent = cli(daemon, "sendmail", "-t", "-f", "a@edge.example", "-N", "delay,failure", input=mail)
        assert sent.returncode == 0, sent.stderr
        wait_until(lambda: maildir_new(tmp_path, "a"), timeout=30)   # seconds, not the sweep's 5 minutes
        (warning,) = maildir_new(tmp_path, "a")
        text = warning.read_bytes()
        assert b"Subject: Warning: could not send message for past 3 seconds\n" in text, text
        assert b"Warning: message still undelivered after 3 seconds" in text
        assert b"Will keep trying until message is 5 days old" in text
        assert b"Action: delayed" in text and b"far@remote.test" in text
    finally:
        daemon.stop()
    assert "dsn=delay" in daemon.log.read_text()
