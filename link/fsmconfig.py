"""fsmconfig.py - the link FSM's settings from [link] and the dial policy (pure).

NAME
    fsmconfig - fsm_config(cfg, policy, etrn_domains, **overrides) -> FsmConfig;
    hangup_plan(policy, clock): the policy's chargehup on the FSM's monotonic clock

DESCRIPTION
    The manager (link/manager.py) builds its LinkFSM from these, and sets
    them again on a reload (replace_policy).  The dial timeout covers every
    number, every modem retry and its backoffs; failed_dial_backoff is the
    FSM's first backoff (at least 1 s); hangup_plan is None unless the policy
    has chargehup and a unit tariff.

NEVER
    Reads a clock but through the plan it returns (each use reads it afresh).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone

from link.fsm import FsmConfig
from link.policy import Policy
from link.port import Clock


def fsm_config(cfg, policy: Policy, etrn_domains: tuple[str, ...], **overrides) -> FsmConfig:
    """The FSM's settings from [link] and the policy's settings."""
    s = policy.settings
    numbers = max(len(cfg.numbers), 1)
    per_try = cfg.dial_timeout + 2 * cfg.command_timeout + cfg.dtr_drop
    backoffs = sum(cfg.dial_backoff * 2 ** k for k in range(max(cfg.dial_retries - 1, 0)))
    dial_timeout = numbers * max(cfg.dial_retries, 1) * per_try + backoffs + 10.0
    odmr = getattr(cfg, "odmr", None)
    base = FsmConfig(etrn_domains=tuple(etrn_domains), pull="odmr" if odmr else "etrn", idle_hangup_s=s.idle_hangup_s,
                     max_connect_s=s.max_connect_s, dial_timeout_s=dial_timeout,
                     backoff_base_s=max(s.failed_dial_backoff_s, 1.0))
    return replace(base, **overrides)


def hangup_plan(policy: Policy, clock: Clock) -> Callable[[float, float], float] | None:
    """The policy's chargehup (hangup_at) on the FSM's monotonic clock; None without it."""
    if not (policy.settings.chargehup and policy.tariff.has_units):
        return None

    def plan(up: float, quiet: float) -> float:
        offset = clock.wall() - clock.monotonic()          # monotonic -> wall, read at each use
        wall = lambda t: datetime.fromtimestamp(t + offset, timezone.utc)
        return policy.hangup_at(wall(up), wall(quiet)).timestamp() - offset
    return plan
