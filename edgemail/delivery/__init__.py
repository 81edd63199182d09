"""delivery - everything after the queue; the runner delivers queued mail: cheap routes at once, expensive routes in queue runs.

NAME
    runner - the driver that ties spool, routing, transports, DNS, host status and DSNs together

SYNOPSIS
    runner = Runner(cfg, store, clock=None, router=None, resolver=None, smtp=None,
                    hoststatus=None, link=None, smarthost_tls=SMARTHOST_TLS,
                    hosts_file="/etc/hosts", mx_port=25)
        # smarthost_tls: how the smart host's certificate is checked (tests pass
        # a cafile); hosts_file: where cheap routes look names up; mx_port: the
        # port for mx/hold routes (25; tests and hardware-sim use others)
    runner.on_commit(qid)                 # SMTP listener / control submit / maildrop import
    runner.check_rcpt(address)            # RCPT time: "550 5.1.1 ..." or None
    await runner.etrn("example.org")      # SMTP ETRN: RFC 1985 reply, run started
    await runner.queue_run(filters=("R@example.org",), reason="request", flush=False) -> RunReport
    await runner.link_up(**info) -> RunReport   # clear host status, reload DNS, run
    runner.stop_run() / await runner.link_down()
    runner.hoststat() -> str;  await runner.purgestat(everything=False) -> [hosts]
    runner.pending_jobs(entry) -> (jobs, expansions)   # what is left to deliver, routed
    await runner.run()                    # background: cheap retries, each message's DSN timer
    await runner.idle()                   # tests: wait for background deliveries
    runner.runs, runner.in_flight, len(runner.tasks)   # runs started, deliveries stop_run would cut,
                                          # background tasks

DESCRIPTION
    Cheap routes at once.  ``on_commit`` spawns a background delivery of the
    message's recipients on routes that are not expensive (local/maildir,
    lmtp, relay on the LAN, error routes) right after the commit; the SMTP
    session has already been answered.  No DNS on this path: mx and hold
    routes always count as expensive (they need DNS, whatever the flag
    says), and a relay/lmtp host that is a name is looked up in /etc/hosts
    only (a name missing there defers, saying why).  Deferred cheap
    deliveries are retried by ``run()`` at the entry's next_attempt.

    Queue runs.  ``queue_run`` (control op ``queue_run``: ``sendmail -q``,
    ``edgemail queue run``; ``link_up``; ETRN) selects with
    spool.schedule.select: filters ``R``/``S``/``I`` with ``!`` (sendmail
    semantics), MinQueueAge (ignored by filtered runs), QueueSortOrder /
    priority with RetryFactor per attempt, MaxQueueRunSize.  Messages start
    in that order, two in flight (one transaction per next hop, many
    recipients each; connections reused through the SmtpClient cache, which
    keeps several per host): on a slow line the second connection sends
    while the first waits for a reply, so no round trip leaves the line idle.
    ConnectionCacheSize caps it (1: one at a time, for a smart host that
    allows one connection per client).  The run's first contact with a host
    goes alone; the others wait for its outcome (host status below).
    ``queue_run_budget`` stops starting new messages after that many seconds.  A request
    identical to one already waiting behind the current run joins it: all
    requests made during a run collapse into one follow-up run (Postfix's
    trigger).  ``hold`` routes are delivered only by filtered runs (ETRN,
    ``-qR``): sendmail's ``%`` mailer flag.

    The link.  With ``link`` (a LinkPort) a run holds the line
    (``link.hold``) while it works.  ``link=None`` means no link manager:
    expensive routes wait for an explicit queue run, which then treats the
    link as available.  ``stop_run`` cancels the deliveries in flight: their
    recipients are logged ``Deferred: queue run stopped`` and nothing is
    recorded (no attempt counted, next_attempt not moved, so no backoff
    grows); failures of scope LINK (network unreachable, a DNS timeout) are
    handled the same way and end the run - but only on a route that needs
    the link while a link manager runs it.  Without one (``[link] mode =
    "none"``), or on a cheap route, they are that destination's trouble:
    recorded with the attempt, backed off, and the run goes on.  DialDelay:
    see deliver.py.

    One bad message never blocks the queue (issue 16 §8): whatever a
    queued message contains, an exception while delivering it (the runner,
    the client, a transport) is logged once with its traceback
    (delivery_internal_error), its recipients are deferred 4.3.0 with the
    normal backoff, and the run goes on with every other message.

    Host status: hosts that failed (scope SITE) on expensive routes are
    skipped for the rest of the run and until Timeout.hoststatus; the cache
    (hoststat.json in the spool) is cleared on every link_up.

    What an attempt's results mean is decided by one core,
    outcome.decide: what is recorded, the backoff, the cheap retry, the
    failure report, the delay warning.  Results are stored with
    ``store.update`` (one U record per message attempt); permanent
    failures and returns (Timeout.queuereturn) produce
    RFC 3464 failure reports committed as new messages with the null sender
    (reports.py); Timeout.queuewarn produces one delay report per message
    (the entry's warned flag).  With retry.count_link_up_time_only the ages
    count only link-up time (LinkUpTime, persisted in linkup.json in the
    spool; with no link manager calling link_up, such ages do not grow).

    DSN timers (issue 17 §6): each message's next warn or return decision
    is computed (outcome.dsn_timer) and the background loop wakes for it;
    there is no sweep.  A message is returned (4.4.7, "Cannot send message
    for 5 days") only after a delivery attempt past Timeout.queuereturn
    failed, as sendmail's markfailure does: at its return time its cheap
    jobs get one more attempt, jobs for the link wait for the next queue
    run, and only hold routes (delivered when the customer asks) are
    returned by age alone.  Texts name the configured times in words.

    Clock steps (issue 16 §11): every timer is a monotonic deadline, and
    the clock guard (clockguard.py) looks at both clocks before every
    decision; a step is recorded per queued message (clocksteps.json in the
    spool) and the parts read entries with their wall stamps rebased, so a
    step of +1 year returns nothing and -1 year stalls nothing.

    Aliases: an envelope recipient that expands to several addresses has one
    state per expansion (key "rcpt>address"); the envelope recipient becomes
    final when all of them are.

MODULES
    The queue runner: a Runner that owns its parts, each a class with its
    own state in its own file, built in the Runner's constructor:
    runner.py    Runner: builds and names the parts; on_commit/check_rcpt/
                 etrn, sweep, link_up/link_down, host status
    message.py   MessageDriver (runner.messages): one message's attempt
                 under its lock, record, delay warning, expiry
    queuerun.py  QueueRunDriver (runner.queue_runs): selection, queue_run,
                 stop_run
    retryloop.py RetryLoop (runner.retries): the background loop, cheap
                 retries and DSN timers, on monotonic deadlines
    outcome.py   CORE: what an attempt's results mean (record, backoff,
                 cheap retry, failure report, delay warning, the return
                 past Timeout.queuereturn), internal errors (4.3.0), the
                 DSN timers and what they do
    clocksteps.py CORE: wall-clock steps per queued message, the rebased view
    clockguard.py ClockGuard (runner.guard): notices steps, persists them
    deliver.py   Deliverer (runner.deliverer): one message's jobs to their
                 next hops (DialDelay)
    reports.py   Reporter (runner.reporter): failure and delay reports
                 queued as new messages
    port.py      LinkPort, RunReport, Job and pure helpers (is_cheap,
                 pending_jobs, ...)
    state.py     queue items for the schedule, run tallies, linkup.json,
                 TaskSet (runner.tasks)
    Where a recipient goes and how it gets there:
    delivery/routing.py   CORE: address -> route (never DNS)
    delivery/aliases.py   the aliases file: parse, expand
    delivery/mx.py        MX ordering (core) and the dnspython lookup with its TTL cache
    delivery/hoststatus.py  host status (sendmail's HostStatusDirectory), hoststat.json
    delivery/dsn.py       CORE: RFC 3464 delivery status notifications
    delivery/etrn.py      the ETRN client (asks the ISP to flush our domains)
    maildir.py   local delivery into a Maildir (routes local, maildir:PATH);
                 file work runs off the event loop
    lmtp.py      LMTP to a LAN mail store (route lmtp:HOST:PORT), on the SMTP
                 client core in LMTP mode (edgemail.smtpc)
    The relay, smarthost and mx kinds are delivered by the SMTP client
    (edgemail.smtpc); hold waits for a filtered run or ETRN; error is decided
    by routing.  Each transport reports per recipient as envelope.Attempt on
    success and raises errors.TempFail / errors.PermFail (with a scope and a
    DSN code) on failure.

LOG LINES
    Logger edgemail.runner.  The lines and their formats are in
    edgemail/maillog/ (its docstring lists them): delivery() for every
    attempt, run_start()/run_end(), link_up(), dialdelay(), dsn_queued(),
    dsn_not_queued(), dsn_dropped(), queue_file_unreadable(),
    runner_warning(), runner_internal_error(), delivery_internal_error(),
    clock_stepped().

NEVER
    Makes a DNS query outside a queue run, blocks an SMTP session, or
    records a delivery cut by the link.

FAILURES
    A bug while delivering one message is logged with its traceback and the
    daemon goes on; the message stays queued, deferred 4.3.0 with its
    backoff.  ``queue_run`` raises
    ValueError for a bad filter.
"""
