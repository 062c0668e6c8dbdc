"""What `prepare_environment` gives a local Ray (make run's and the tests')."""

from operations.local_ray import DRAINING_VARIABLE, prepare_environment
from shared.serving.clients.base import REFRESH_S


def test_a_stopping_replica_drains_briefly_but_past_the_gateways_refresh():
    environ: dict[str, str] = {}
    prepare_environment(environ, port_slot=7)
    draining_s = float(environ[DRAINING_VARIABLE])
    # Longer than the gateway's clients take to drop a replica Serve no longer publishes,
    # far shorter than Serve's 30 s default.
    assert 2 * REFRESH_S <= draining_s < 30


def test_a_draining_period_already_set_is_kept():
    environ = {DRAINING_VARIABLE: "30"}
    prepare_environment(environ, port_slot=7)
    assert environ[DRAINING_VARIABLE] == "30"


def test_make_run_sets_the_same_draining_period():
    from pathlib import Path

    script = (Path(__file__).parents[2] / "scripts" / "run.sh").read_text()
    environ: dict[str, str] = {}
    prepare_environment(environ, port_slot=7)
    assert f'{DRAINING_VARIABLE}="${{{DRAINING_VARIABLE}:-{environ[DRAINING_VARIABLE]}}}"' in script
