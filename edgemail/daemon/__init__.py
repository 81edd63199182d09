"""daemon - ``edgemail run``: the composition root and what only the daemon does.

Modules:
  run         serve(cfg, ...) and main(): start-up and shutdown order; the only
              module that builds every part
  control     the control socket (JSON lines over a unix socket): the server
  client      its client, as light as a command line needs (socket, json)
  ops         the control ops the daemon answers (submit, queue_list, status, ...)
  reload      SIGHUP and the reload op: aliases, dial policy, what needs a restart
  mtaport     the MTA's side of the link: MtaPort (what the link manager may ask
              of the MTA) and Link (the manager wired to it)
  notify      sd_notify: READY, STATUS, WATCHDOG, STOPPING
  privileges  RunAsUser: bind as root, then become the user
"""
