"""Restart policies (HostConfig.RestartPolicy) as docker's restart manager applies them.

The back-off starts at 100 ms and doubles with every restart up to one minute; it goes back to
100 ms when the container had run for 10 s or more. A user stop or kill cancels restarting
(docker's ExitOnNext), whatever the policy; `unless-stopped` also stays down once it was
stopped by hand. Containers started with --rm never restart.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs ~2 ms at import (the monitor loads this module)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

POLICIES = ("no", "always", "on-failure", "unless-stopped")
FIRST_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0


def parse(value: str) -> dict[str, Any]:
    """`--restart` text -> RestartPolicy, validated as docker's CLI and daemon do."""
    if not value:
        return {"Name": "no", "MaximumRetryCount": 0}
    name, colon, count = value.partition(":")
    if colon and not name:
        raise ValueError("invalid restart policy format: no policy provided before colon")
    retries = 0
    if count:
        try:
            retries = int(count)
        except ValueError:
            raise ValueError(
                "invalid restart policy format: maximum retry count must be an integer"
            ) from None
    policy = {"Name": name, "MaximumRetryCount": retries}
    validate(policy)
    return policy


def validate(policy: Mapping[str, Any]) -> None:
    """docker's container.ValidateRestartPolicy."""
    name, retries = policy.get("Name") or "", int(policy.get("MaximumRetryCount") or 0)
    if name in ("always", "unless-stopped", "no"):
        if retries != 0:
            msg = "invalid restart policy: maximum retry count can only be used with 'on-failure'"
            raise ValueError(msg + (" and cannot be negative" if retries < 0 else ""))
    elif name == "on-failure":
        if retries < 0:
            raise ValueError("invalid restart policy: maximum retry count cannot be negative")
    elif name:
        raise ValueError(
            f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
            "'on-failure', or 'unless-stopped'"
        )


class Backoff:
    """The restart manager's delay: kept by the monitor across the restarts of one start."""

    def __init__(self) -> None:
        self.delay = 0.0

    def next(self, ran_for: float) -> float:
        if ran_for >= RESET_AFTER:
            self.delay = 0.0
        self.delay = FIRST_DELAY if self.delay == 0 else min(self.delay * 2, MAX_DELAY)
        return self.delay


def should_restart(
    policy: Mapping[str, Any] | None,
    exit_code: int,
    *,
    restart_count: int,
    manually_stopped: bool,
    cancelled: bool,
    auto_remove: bool,
) -> bool:
    """Whether the monitor starts the container again after this exit."""
    if cancelled or auto_remove or not policy:
        return False
    name = policy.get("Name") or "no"
    if name == "always":
        return True
    if name == "unless-stopped":
        return not manually_stopped
    if name == "on-failure":
        limit = int(policy.get("MaximumRetryCount") or 0)
        return exit_code != 0 and (limit == 0 or restart_count < limit)
    return False
