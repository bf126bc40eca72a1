"""A replica's trouble as its progress record shows it: restarts in place (CrashLoopBackOff), failures
with the last log line, Pods stopped by localflow (pure parts; the live path is in test_training_run_api)."""
from __future__ import annotations

import pytest

from localflow.controllers.trainingjob import replica_record
from localflow.training.trouble import last_log_line, restart_error, restart_trouble, shorten


def pod(phase, statuses, reason=None):
    st = {"phase": phase, "containerStatuses": statuses}
    if reason:
        st["reason"] = reason
    return {"metadata": {"name": "j-master-0", "uid": "u1", "labels": {
        "training.kubeflow.org/replica-type": "master", "training.kubeflow.org/replica-index": "0"}},
        "spec": {"containers": [{"name": "pytorch"}]}, "status": st}


CRASH_LOOP = {"name": "pytorch", "restartCount": 3, "ready": False,
              "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container pytorch"}},
              "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}}


def test_crash_looping_container_is_running_with_a_restart_error():
    rec = replica_record("PyTorchJob", pod("Running", [CRASH_LOOP]))
    assert (rec.state, rec.restarts, rec.container) == ("RUNNING", 3, "pytorch")
    assert rec.error == "restarting (3 restarts): exit code 2"


def test_running_again_after_a_restart_still_says_it_restarted():
    cs = {"name": "pytorch", "restartCount": 1, "state": {"running": {"startedAt": "t"}}}
    assert restart_trouble([cs]) == ("pytorch", 1, None)
    assert replica_record("PyTorchJob", pod("Running", [cs])).error == "restarting (1 restart)"


def test_healthy_running_replica_has_no_error():
    cs = {"name": "pytorch", "restartCount": 0, "state": {"running": {"startedAt": "t"}}}
    assert restart_trouble([cs]) is None
    assert replica_record("PyTorchJob", pod("Running", [cs])).error is None


def test_restart_detail_names_an_unusual_reason_and_the_message():
    cs = dict(CRASH_LOOP, lastState={"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": "over 1Gi"}})
    assert restart_trouble([cs]) == ("pytorch", 3, "exit code 137 (OOMKilled): over 1Gi")
    assert restart_error(1, "exit code 1") == "restarting (1 restart): exit code 1"


@pytest.mark.parametrize("reason,state", [("Canceled", "CANCELED"), ("Killed", "CANCELED"),
                                          ("DeadlineExceeded", "FAILED"), ("Error", "FAILED")])
def test_pods_stopped_by_localflow_are_canceled_others_failed(reason, state):
    cs = {"name": "pytorch", "restartCount": 0,
          "state": {"terminated": {"exitCode": 137 if reason != "Error" else 1, "reason": reason}}}
    rec = replica_record("PyTorchJob", pod("Failed", [cs], reason=reason))
    assert rec.state == state
    assert rec.error.startswith("pytorch exited with code") and rec.container == "pytorch"


def test_long_messages_keep_head_and_tail():
    text = "head " + "x" * 1000 + " tail"
    short = shorten(text, 100)
    assert len(short) <= 103 and short.startswith("head ") and short.endswith(" tail") and " … " in short
    assert shorten("  short  ") == "short"


def test_last_log_line_skips_blank_lines_and_reads_only_the_tail(tmp_path):
    log = tmp_path / "pytorch.log"
    assert last_log_line(log) is None
    log.write_text("")
    assert last_log_line(log) is None
    log.write_text("x" * 20000 + "\nTraceback (most recent call last):\nValueError: bad --epochs\n\n  \n")
    assert last_log_line(log) == "ValueError: bad --epochs"
