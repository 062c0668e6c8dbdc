"""One platform for the whole reliability package (security, fuzzing, faults): deploying one
costs about 100 s here. Each fault test leaves the platform serving again, so the modules may
run in any order."""

from __future__ import annotations

import pytest

from tests.support.platform import Platform, deploy_platform


@pytest.fixture(scope="package")
def platform(ray_cluster, tmp_path_factory) -> Platform:
    yield from deploy_platform(tmp_path_factory)
