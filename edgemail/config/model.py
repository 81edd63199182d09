"""config/model.py - what a configuration is: frozen dataclasses and the
words they allow.

Owns: Config and its sections (Listener, Timeouts, Route, SmtpdConfig,
LocalConfig, DnsConfig, RetryConfig, LinkConfig with OdmrClient, Customer)
with their defaults, and
the closed vocabularies (route kinds, queue sort orders, PrivacyOptions
words, link modes, urgencies).  config/loader.py builds these from the TOML file
and re-exports every name, so ``from edgemail.config import Config`` is the
way to use them.

Never: reads a file or validates a value (config/values.py and config/loader.py do).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from edgemail.config.privacy import (  # noqa: F401  (re-exported: the words belong to the model)
    PRIVACY_EFFECT, PRIVACY_GOAWAY, PRIVACY_NOT_CARRIED, PRIVACY_WORDS)

URGENCIES = ("urgent", "normal", "non-urgent")
ROUTE_KINDS = ("local", "maildir", "lmtp", "relay", "smarthost", "mx", "hold", "error")
QUEUE_SORT_ORDERS = ("priority", "time", "host", "filename", "random")
LINK_MODES = ("none", "modem", "external")


@dataclass(frozen=True)
class Listener:
    """One SMTP listening socket."""

    name: str
    address: str
    port: int
    #: Internet/ISP-facing: reject bare CR, bare LF and NUL (550 5.6.0), bare
    #: LF ending a command (500 5.5.2), and pipelining where RFC 2920 forbids
    #: it (554 5.5.0).  LAN listeners (strict = false) normalise line ends.
    strict: bool = False
    #: sendmail's greet_pause: seconds before the 220; a client that talks
    #: first gets 554 5.5.0 (default 0.5 on strict listeners, 0 elsewhere)
    greet_pause: float = 0.0
    #: STARTTLS (RFC 3207): PEM certificate chain and its key ("" = no TLS)
    tls_cert: str = ""
    tls_key: str = ""
    #: nothing but EHLO/HELO, STARTTLS, NOOP, RSET, QUIT before TLS (530 5.7.0)
    require_tls: bool = False
    #: AUTH offered (default: where [smtpd] auth_file is set)
    auth: bool = False
    #: AUTH offered before TLS too (the password then crosses in clear)
    auth_plaintext: bool = False
    #: CRAM-MD5 (only) offered before TLS too: the secret never crosses, but
    #: the session is in clear (fetchmail's ODMR has no STARTTLS)
    cram_plaintext: bool = False
    #: RFC 6409 submission (port 587): AUTH before MAIL, the sender checked
    submission: bool = False
    #: an ODMR listener (RFC 2645, port 366): customers AUTH and ATRN here
    odmr: bool = False

    @property
    def tls(self) -> bool:
        """STARTTLS is offered."""
        return bool(self.tls_cert)


@dataclass(frozen=True)
class Timeouts:
    """sendmail's Timeout.* options, in seconds."""

    connect: float = 60.0
    iconnect: float = 30.0
    initial: float = 300.0
    helo: float = 300.0
    mail: float = 600.0
    rcpt: float = 3600.0
    datainit: float = 300.0
    datablock: float = 3600.0
    datafinal: float = 3600.0
    rset: float = 300.0
    quit: float = 120.0
    misc: float = 120.0
    #: server side: the wait for the next command or the next DATA read
    command: float = 300.0
    control: float = 120.0
    hoststatus: float = 1800.0
    #: per urgency ("urgent", "normal", "non-urgent")
    queuewarn: dict[str, float] = field(default_factory=lambda: dict.fromkeys(URGENCIES, 4 * 3600.0))
    queuereturn: dict[str, float] = field(default_factory=lambda: dict.fromkeys(URGENCIES, 5 * 86400.0))


@dataclass(frozen=True)
class Route:
    """A line of the route table: domain pattern -> transport."""

    #: "example.org", ".example.org" (subdomains), or "*"
    pattern: str
    #: one of ROUTE_KINDS
    kind: str
    #: maildir path, "host:port" for lmtp/relay, "CODE text" for error; "" otherwise
    target: str = ""
    #: needs the link (sendmail F=e + HoldExpensive)
    expensive: bool = False
    #: DialDelay applies on a failed first connect (sendmail F=Z)
    dialdelay: bool = False


def match_route(routes: tuple[Route, ...], domain: str, *, wildcard: bool = True) -> Route | None:
    """Longest match: exact domain, then the longest ".suffix", then "*"
    (unless not WILDCARD: a local domain's own entry, never the default)."""
    best: tuple[int, Route] | None = None
    for r in routes:
        if r.pattern == domain:
            rank = 10_000
        elif r.pattern.startswith(".") and domain.endswith(r.pattern):
            rank = len(r.pattern)
        elif r.pattern == "*" and wildcard:
            rank = 0
        else:
            continue
        if best is None or rank > best[0]:
            best = (rank, r)
    return best[1] if best else None


def literal_ip(literal: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """"[192.0.2.1]" / "[IPv6:2001:db8::1]" -> the address; None if it is none."""
    inner = literal.strip("[]")
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    try:
        return ipaddress.ip_address(inner)
    except ValueError:
        return None


@dataclass(frozen=True)
class SmtpdConfig:
    max_sessions: int = 100
    max_sessions_per_client: int = 20
    #: connections per client address within connection_rate_time_unit (0: no
    #: limit); 421 4.7.0 beyond.  Trusted clients (LAN, loopback) are exempt
    #: (smtpd/policy.py ConnectionRate says why)
    client_connection_rate_limit: int = 60
    connection_rate_time_unit: float = 60.0
    max_bad_commands: int = 10
    #: a whole session's time limit (421 4.4.2 beyond; Timeout.command bounds each read and line)
    max_session_time: float = 3600.0
    #: recipients per message (452 4.5.3 beyond)
    MaxRecipientsPerMessage: int = 100
    #: SMTP AUTH's credentials: ``user:hash`` lines (smtpd/credentials.py)
    auth_file: str = ""
    #: CRAM-MD5's secrets: ``user:secret`` lines, mode 0600/0640 (smtpd/cram.py)
    cram_secrets: str = ""
    #: failed AUTH attempts per client address within auth_failure_window
    #: before 421 4.7.0
    max_auth_failures: int = 3
    auth_failure_window: float = 900.0
    #: password checks in progress at once (one runs, the others wait), and
    #: from one client address; beyond: 454 4.7.0 (smtpd/credentials.py)
    auth_max_pending: int = 16
    auth_max_pending_per_client: int = 4
    #: who may send as whom once authenticated (Postfix smtpd_sender_login_maps):
    #: user -> addresses ("a@example.org") and domains ("@example.org"); a user
    #: not listed may send as USER@ each local domain
    sender_login: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class LocalConfig:
    """Local delivery: aliases and mailboxes."""

    aliases: str = ""
    #: Maildir for local users; %u is replaced by the user name
    maildir: str = "/var/mail/%u/Maildir"
    #: who exists locally, so that RCPT refuses anyone else with 550 5.1.1
    #: (delivery/users.py): the alias names, "postmaster", these names, the
    #: names in users_file (one a line, '#' comments) and, with system_users,
    #: every account in the system's passwd (read at start and on SIGHUP)
    users: tuple[str, ...] = ()
    users_file: str = ""
    system_users: bool = True
    #: accept any safe local part and make its Maildir on first delivery
    #: (the old behaviour; off: unknown users are refused at RCPT)
    create_mailboxes: bool = False
    allow_program_targets: bool = False
    allow_file_targets: bool = False
    #: Maildir delivery shared with Dovecot (README "Dovecot"): the owner and
    #: group of every folder and file edgemail creates in a Maildir ("" = the
    #: daemon's own; an owner needs root or CAP_CHOWN, a group needs the daemon's
    #: user in it), and the files' mode (folders: the same with x where r, and
    #: setgid with a group, so what Dovecot creates keeps the group)
    maildir_owner: str = ""
    maildir_group: str = ""
    maildir_mode: int = 0o600


@dataclass(frozen=True)
class DnsConfig:
    #: explicit nameservers; empty = from the link's peer DNS file, then /etc/resolv.conf
    nameservers: tuple[str, ...] = ()
    #: pppd's usepeerdns output, re-read on every link-up
    peer_dns_file: str = "/etc/ppp/resolv.conf"
    port: int = 53
    timeout: float = 10.0


@dataclass(frozen=True)
class RetryConfig:
    min_backoff: float = 300.0
    max_backoff: float = 4 * 3600.0
    #: count only time with the link up towards queuewarn/queuereturn
    count_link_up_time_only: bool = False
    #: false: queuewarn/queuereturn count only time the line was up or could have been
    #: (a call, or a dial that reached the network: BUSY, NO CARRIER; spool/linetime.py)
    count_offline_time: bool = True
    #: (count_offline_time = false) how long a call or such a dial vouches for the line
    offline_after: float = 2 * 3600.0


@dataclass(frozen=True)
class OdmrClient:
    """[link] odmr: where the call asks for our mail with ATRN (RFC 2645)."""

    #: the ISP's ODMR server: an IP address (or a name, looked up during the call)
    host: str
    port: int = 366
    user: str = ""
    #: the password, alone on one line; readable by root and edgemail only
    secret_file: str = ""
    #: the domains ATRN asks for; empty = link.etrn_domains, else local_domains
    domains: tuple[str, ...] = ()
    #: CA file the server's certificate is checked against ("" = the system CAs)
    cafile: str = ""
    #: check the certificate (false only for an ISP with a self-signed one)
    tls_verify: bool = True


@dataclass(frozen=True)
class Customer:
    """[[customer]] (ISP mode): domains whose mail we hold until the customer asks."""

    #: its named queue: ``ETRN #name``
    name: str
    #: "example.org" (that domain) or ".example.org" (its subdomains)
    domains: tuple[str, ...]
    #: clients in these networks may ETRN its domains
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    #: the AUTH user that may ETRN and ATRN its domains ("" = none)
    user: str = ""
    #: where a flush after ETRN delivers: (host, port), or None: the domain's MX hosts
    deliver: tuple[str, int] | None = None

    def holds(self, domain: str) -> bool:
        """Is DOMAIN (lower case, no trailing dot) one of ours to hold?"""
        return any(domain == d or (d[0] == "." and domain.endswith(d)) for d in self.domains)


@dataclass(frozen=True)
class LinkConfig:
    """The link manager's settings (link package).  Policy lives in its own file."""

    mode: str = "none"
    interface: str = "ppp0"
    #: network namespace the interface lives in (hardware-sim); "" = ours
    netns: str = ""
    policy: str = ""
    #: the ISP's SMTP host for ETRN: "host" or "host:port"
    etrn_host: str = ""
    #: domains to ETRN for; empty = local_domains
    etrn_domains: tuple[str, ...] = ()
    #: ask with ODMR (ATRN) instead of ETRN: the ISP pushes over our own connection
    odmr: OdmrClient | None = None
    # modem mode
    device: str = "/dev/ttyS0"
    speed: int = 115200
    init: tuple[str, ...] = ("ATZ", "ATE0V1Q0")
    numbers: tuple[str, ...] = ()
    dial_timeout: float = 60.0
    dial_retries: int = 3
    #: AT command reply timeout
    command_timeout: float = 3.0
    #: first wait between dial rounds; doubles each round
    dial_backoff: float = 5.0
    #: how long B0 is held for a DTR hang-up
    dtr_drop: float = 0.5
    #: +++ escape guard time
    escape_guard: float = 1.0
    #: addresses pppd uses in demand mode before a call: not "connected"
    demand_placeholders: tuple[str, ...] = ("10.64.64.64", "10.112.112.112")
    pppd: str = "/usr/sbin/pppd"
    pppd_args: tuple[str, ...] = ("call", "edgemail")
    # external mode
    up_command: tuple[str, ...] = ()
    down_command: tuple[str, ...] = ()
    #: where per-call accounting is kept across restarts
    state_file: str = ""


@dataclass(frozen=True)
class Config:
    """The whole effective configuration."""

    path: str
    hostname: str
    local_domains: tuple[str, ...]
    lan_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    listeners: tuple[Listener, ...]
    spool_dir: str
    control_socket: str
    routes: tuple[Route, ...]
    DeliveryMode: str = "deferred"
    SmartHost: str = ""
    SmartHostAuthFile: str = ""
    #: verify the smart host's TLS certificate (false for an ISP relay with a self-signed cert)
    SmartHostTLSVerify: bool = True
    #: CA file for that verification ("" = the system CAs)
    SmartHostCAFile: str = ""
    DialDelay: float = 10.0
    MinQueueAge: float = 0.0
    MaxQueueRunSize: int = 0
    QueueSortOrder: str = "priority"
    MaxMessageSize: int = 10 * 1024 * 1024
    MinFreeBlocks: int = 100
    ConnectionCacheSize: int = 2
    ConnectionCacheTimeout: float = 300.0
    RecipientFactor: int = 30000
    ClassFactor: int = 1800
    RetryFactor: int = 90000
    LogLevel: int = 9
    PrivacyOptions: frozenset[str] = frozenset({"authwarnings"})
    #: sendmail's RunAsUser: started as root, become this user after binding ("" = stay)
    RunAsUser: str = ""
    #: queue-run time budget: stop starting deliveries after this many seconds (0 = none)
    queue_run_budget: float = 0.0
    #: [spool] commit_helpers: processes that write and fsync new queue files (0 = threads)
    commit_helpers: int = 1
    Timeout: Timeouts = field(default_factory=Timeouts)
    smtpd: SmtpdConfig = field(default_factory=SmtpdConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    link: LinkConfig = field(default_factory=LinkConfig)
    #: ISP mode: the customers whose domains we hold ([[customer]])
    customers: tuple[Customer, ...] = ()
    #: this host's interface addresses, when a listener is bound to a wildcard:
    #: filled by the daemon at start (daemon/hostaddrs.py), never from the file
    host_addresses: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address] = frozenset()

    def is_local_domain(self, domain: str) -> bool:
        """Is DOMAIN this host (sendmail's class w, Postfix's mydestination
        plus $inet_interfaces)?  local_domains, our own ``hostname``,
        ``localhost``, and an address literal of ours (``is_own_address``)."""
        domain = domain.lower().rstrip(".")
        if domain.startswith("["):
            return self.is_own_address(literal_ip(domain))
        return domain in self.local_domains or domain in (self.hostname.lower(), "localhost")

    def is_own_address(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        """IP is this host's: loopback, an address a listener is bound to
        (RFC 5321 4.1.3), or for a wildcard listener one of host_addresses."""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if ip is None:
            return False
        return ip.is_loopback or ip in self.listener_addresses or ip in self.host_addresses

    @property
    def listener_addresses(self) -> frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        """The addresses the listeners are bound to (wildcards left out)."""
        out = set()
        for lst in self.listeners:
            try:
                ip = ipaddress.ip_address(lst.address.split("%")[0])
            except ValueError:
                continue
            if not ip.is_unspecified:
                out.add(ip)
        return frozenset(out)

    def customer_of(self, domain: str) -> Customer | None:
        """The customer that holds DOMAIN, or None."""
        domain = domain.lower().rstrip(".")
        return next((c for c in self.customers if c.holds(domain)), None)

    def holds_mail_for(self, domain: str) -> bool:
        """Is DOMAIN held here for someone's ETRN or ATRN (a customer's, or a
        ``hold`` route)?  Anyone may send to it (DESIGN invariant 4)."""
        domain = domain.lower().rstrip(".")
        if self.customer_of(domain) is not None:
            return True
        route = match_route(self.routes, domain)
        return route is not None and route.kind == "hold"
