"""transports - how a routed recipient is delivered.

One module per route kind that needs code of its own:

* ``maildir`` - local delivery into a Maildir (routes ``local`` and
  ``maildir:PATH``); file work runs off the event loop.
* ``lmtp`` - LMTP to a LAN mail store (route ``lmtp:HOST:PORT``), on the
  SMTP client core in LMTP mode (edgemail.smtpc), when that exists.

The ``relay``, ``smarthost`` and ``mx`` kinds are delivered by the SMTP client
(edgemail.smtpc) from the runner; ``hold`` waits for a filtered run or ETRN;
``error`` is decided by routing.  Each transport reports per recipient as
``envelope.Attempt`` on success and raises ``errors.TempFail`` /
``errors.PermFail`` (with a scope and a DSN code) on failure.
"""
