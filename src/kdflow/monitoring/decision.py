"""The rollback decision, as pure functions of what one check saw (`Evidence`), the controller's
memory (`State`) and its `Policy`. No I/O here, so every branch is unit-tested directly.

Rules of the game:
- a champion the controller did not put there is a promotion; it is watched for `watch_window_s`
  from its promotion time (the `kdflow.promoted_at` tag when present, else first sight);
- an alert is evidence only about the model it names: its `model_name` label must be the watched model's
  (and its `namespace` the controller's, when the controller is given one); version numbers alone are
  shared by every model of a registry;
- a version is rolled back when a rollback-labelled alert fires for it inside that window, to the
  version its `kdflow.previous_champion` tag names (the controller checks that target, or an older
  one, can serve); the version restored is watched from the rollback on, like a promotion;
- one rollback per version (idempotent), none within `cooldown_s` of the last one;
- no alert *and* no evidence (Prometheus down, no data, monitoring blind, or a webhook that carries
  alerts only) is inconclusive, never healthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Alert:
    name: str
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Evidence:
    champion: str | None
    previous: str | None = None          # rollback target: the champion's previous-champion tag
    promoted_at: float | None = None     # epoch seconds, when the registry recorded it
    alerts: tuple[Alert, ...] = ()       # firing alerts (all versions)
    prometheus_error: str | None = None  # set when Prometheus could not be asked
    has_data: bool | None = True         # Prometheus holds live traffic for the champion (None: not asked)
    trigger: str = "poll"                # "poll" | "alertmanager"


@dataclass(frozen=True)
class Policy:
    watch_window_s: float = 3600.0
    cooldown_s: float = 600.0
    dry_run: bool = False
    rollback_label: tuple[str, str] = ("rollback", "true")
    blind_alerts: frozenset[str] = frozenset({"KdflowMonitoringBlind"})
    model_name: str | None = None   # the watched model: alerts must name it (None: unit tests of old payloads)
    namespace: str | None = None    # and, when set, come from this namespace

    def about(self, alert: Alert, version: str) -> bool:
        """Is `alert` about `version` of the watched model?"""
        labels = alert.labels
        return (labels.get("model_version") == version
                and (self.model_name is None or labels.get("model_name") == self.model_name)
                and (self.namespace is None or labels.get("namespace") == self.namespace))


@dataclass(frozen=True)
class State:
    champion: str | None = None
    watch_from: float | None = None       # None: the champion is not under watch
    last_rollback_at: float | None = None
    handled: frozenset[str] = frozenset()  # versions already rolled back (or reported, in dry run)


@dataclass(frozen=True)
class Decision:
    action: str                 # rollback | dry_run | none | inconclusive | blocked
    reason: str
    version: str | None = None
    target: str | None = None
    alerts: tuple[str, ...] = ()
    cause: str | None = None    # inconclusive: prometheus_unreachable | monitoring_blind | no_data | no_evidence
                                #   | registry_unreachable


def observe(state: State, ev: Evidence, now: float) -> State:
    """Follow the champion alias. A change the controller did not make is a promotion."""
    if ev.champion == state.champion:
        return state
    if ev.champion is None:
        return replace(state, champion=None, watch_from=None)
    return replace(state, champion=ev.champion, watch_from=ev.promoted_at if ev.promoted_at is not None else now)


def decide(state: State, ev: Evidence, now: float, policy: Policy) -> Decision:
    v = ev.champion
    if v is None:
        return Decision("none", "no champion alias set")
    key, value = policy.rollback_label
    breaches = tuple(sorted({a.name for a in ev.alerts if policy.about(a, v) and a.labels.get(key) == value}))
    if v in state.handled:
        return Decision("none", f"version {v} was already handled", v)
    if state.watch_from is None:
        return Decision("none", f"version {v} is not under watch (restored by a rollback)", v)
    age = now - state.watch_from
    if age > policy.watch_window_s:
        return Decision("none", f"version {v} promoted {age:.0f}s ago, past the {policy.watch_window_s:.0f}s "
                        "watch window", v, alerts=breaches)
    if not breaches:
        blind = sorted({a.name for a in ev.alerts if a.name in policy.blind_alerts})
        if ev.prometheus_error:
            return Decision("inconclusive", ev.prometheus_error, v, cause="prometheus_unreachable")
        if blind:
            return Decision("inconclusive", f"monitoring is blind ({', '.join(blind)} firing)", v,
                            cause="monitoring_blind")
        if ev.has_data is None:
            return Decision("inconclusive", f"no alert for version {v} in this {ev.trigger} message, and no "
                            "Prometheus evidence either way: health unknown until the next poll", v,
                            cause="no_evidence")
        if not ev.has_data:
            return Decision("inconclusive", f"Prometheus has no traffic data for version {v}", v, cause="no_data")
        return Decision("none", f"version {v} healthy ({age:.0f}s into its watch window)", v)
    why = ", ".join(breaches)
    if ev.previous is None or ev.previous == v:
        return Decision("blocked", f"{why} firing for version {v} but there is no previous champion to "
                        "roll back to", v, alerts=breaches)
    if state.last_rollback_at is not None and now - state.last_rollback_at < policy.cooldown_s:
        left = policy.cooldown_s - (now - state.last_rollback_at)
        return Decision("blocked", f"{why} firing for version {v}, but in cooldown for {left:.0f}s more", v,
                        ev.previous, breaches)
    action = "dry_run" if policy.dry_run else "rollback"
    return Decision(action, why, v, ev.previous, breaches)


def after(state: State, decision: Decision, now: float) -> State:
    """The state once `decision` has been carried out (rollback) or reported (dry run)."""
    if decision.action == "rollback":  # the restored version is watched too: it may be bad in its own way
        return replace(state, champion=decision.target, watch_from=now, last_rollback_at=now,
                       handled=state.handled | {decision.version})
    if decision.action == "dry_run":
        return replace(state, handled=state.handled | {decision.version})
    return state
