"""Rollback decision logic as pure functions of what a check saw."""

from kdflow.monitoring.decision import Alert, Decision, Evidence, Policy, State, after, decide, observe

POLICY = Policy(watch_window_s=600, cooldown_s=300)
AGREEMENT = Alert("KdflowTeacherAgreementLow", {"model_version": "2", "rollback": "true", "severity": "critical"})
BLIND = Alert("KdflowMonitoringBlind", {"severity": "critical"})


def step(state: State, ev: Evidence, now: float, policy: Policy = POLICY) -> tuple[State, Decision]:
    """One controller check: observe, decide, and apply a rollback/dry run as if it succeeded."""
    state = observe(state, ev, now)
    d = decide(state, ev, now, policy)
    return after(state, d, now), d


def promoted(now: float = 100.0) -> State:
    state, _ = step(State(), Evidence("1"), 0.0)  # v1 seen first
    state, _ = step(state, Evidence("2", previous="1"), now)  # then v2 promoted over it
    return state


def test_breach_inside_window_rolls_back_to_previous_champion():
    state, d = step(promoted(), Evidence("2", "1", alerts=(AGREEMENT,)), 130.0)
    assert (d.action, d.version, d.target, d.alerts) == ("rollback", "2", "1", ("KdflowTeacherAgreementLow",))
    assert state.champion == "1" and state.watch_from == 130.0 and state.last_rollback_at == 130.0


def test_idempotent_same_alert_again_does_nothing():
    state, _ = step(promoted(), Evidence("2", "1", alerts=(AGREEMENT,)), 130.0)
    # a late webhook / replica still sees v2 as champion with the alert firing
    state, d = step(state, Evidence("2", "1", alerts=(AGREEMENT,), trigger="alertmanager"), 131.0)
    assert d.action == "none" and "already handled" in d.reason


def test_restored_version_is_watched_too():
    state, _ = step(promoted(), Evidence("2", "1", alerts=(AGREEMENT,)), 130.0)
    _, d = step(state, Evidence("1", None), 140.0)
    assert d.action == "none" and "healthy (10s into its watch window)" in d.reason
    v1_alert = Alert("KdflowHighErrorRate", {"model_version": "1", "rollback": "true"})
    _, d = step(state, Evidence("1", "0", alerts=(v1_alert,)), 140.0 + POLICY.cooldown_s)
    assert (d.action, d.version, d.target) == ("rollback", "1", "0")  # bad too: on to the one before


def test_a_webhook_without_a_breach_is_not_evidence_of_health():
    other = Alert("KdflowTeacherAgreementLow", {"model_version": "1", "rollback": "true"})
    _, d = step(promoted(), Evidence("2", "1", alerts=(other,), has_data=None, trigger="alertmanager"), 130.0)
    assert d.action == "inconclusive" and d.cause == "no_evidence" and "healthy" not in d.reason


def test_outside_watch_window_no_rollback():
    _, d = step(promoted(100.0), Evidence("2", "1", alerts=(AGREEMENT,)), 100.0 + 601)
    assert d.action == "none" and "watch window" in d.reason


def test_promotion_time_tag_starts_the_window():
    state, _ = step(State(), Evidence("2", "1", promoted_at=0.0), 5000.0)  # controller restarted long after
    assert state.watch_from == 0.0
    _, d = step(state, Evidence("2", "1", alerts=(AGREEMENT,)), 5001.0)
    assert d.action == "none" and "watch window" in d.reason


def test_alerts_of_other_versions_or_without_rollback_label_are_ignored():
    other = Alert("KdflowTeacherAgreementLow", {"model_version": "1", "rollback": "true"})
    info = Alert("KdflowReferenceMissing", {"model_version": "2", "severity": "info"})
    _, d = step(promoted(), Evidence("2", "1", alerts=(other, info)), 130.0)
    assert d.action == "none" and "healthy" in d.reason


def test_cooldown_blocks_a_second_rollback():
    state, _ = step(promoted(), Evidence("2", "1", alerts=(AGREEMENT,)), 130.0)
    state, _ = step(state, Evidence("3", "1"), 200.0)  # v3 promoted soon after
    bad3 = Alert("KdflowHighErrorRate", {"model_version": "3", "rollback": "true"})
    state, d = step(state, Evidence("3", "1", alerts=(bad3,)), 210.0)
    assert d.action == "blocked" and "cooldown" in d.reason
    _, d = step(state, Evidence("3", "1", alerts=(bad3,)), 130.0 + 301)
    assert d.action == "rollback" and d.target == "1"


def test_dry_run_reports_once_and_moves_nothing():
    policy = Policy(watch_window_s=600, cooldown_s=300, dry_run=True)
    state, d = step(promoted(), Evidence("2", "1", alerts=(AGREEMENT,)), 130.0, policy)
    assert d.action == "dry_run" and d.target == "1"
    assert state.champion == "2" and state.last_rollback_at is None
    _, d = step(state, Evidence("2", "1", alerts=(AGREEMENT,)), 131.0, policy)
    assert d.action == "none"


def test_no_previous_champion_blocks():
    state, _ = step(State(), Evidence("1"), 0.0)
    _, d = step(state, Evidence("1", None, alerts=(Alert("KdflowHighErrorRate", {"model_version": "1",
                                                                                  "rollback": "true"}),)), 10.0)
    assert d.action == "blocked" and "no previous champion" in d.reason


def test_missing_evidence_is_inconclusive_not_healthy():
    state = promoted()
    cases = [
        (Evidence("2", "1", prometheus_error="cannot reach Prometheus"), "prometheus_unreachable"),
        (Evidence("2", "1", alerts=(BLIND,)), "monitoring_blind"),
        (Evidence("2", "1", has_data=False), "no_data"),
    ]
    for ev, cause in cases:
        _, d = step(state, ev, 130.0)
        assert (d.action, d.cause) == ("inconclusive", cause)


def test_breach_wins_over_partial_blindness():
    _, d = step(promoted(), Evidence("2", "1", alerts=(AGREEMENT, BLIND)), 130.0)
    assert d.action == "rollback"


def test_no_champion():
    _, d = step(State(), Evidence(None), 1.0)
    assert d.action == "none" and "no champion" in d.reason
