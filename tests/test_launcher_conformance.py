"""Hydra's own launcher conformance suites, run on ``hydra/launcher=fused`` with the basic launcher as control,
the way Hydra's launcher plugins (joblib, submitit) test themselves. Jobs that are not this project's configs
run on their own under the fused launcher, so it must behave as a Hydra launcher in every respect."""

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from hydra.version import VersionBase
from packaging.version import Version

LAUNCHERS = ["basic", "fused"]


@pytest.fixture(autouse=True)
def a_process_that_chose_no_version_base():
    """Hydra's suites expect what a process that chose no version base gets: Hydra 1.1's behaviour, jobs run
    in their own directories. Hydra keeps the choice per process, and this project's other tests choose 1.3;
    it is put back afterwards. Autouse, so it runs before the suites' own ``hydra_restore_singletons``."""
    version_base = VersionBase.instance()
    before = version_base.getbase()
    version_base.setbase(Version("1.1"))  # what hydra.version.base_at_least assumes when none was chosen
    yield
    if isinstance(before, Version):
        version_base.setbase(before)


@pytest.mark.slow  # each test runs a Hydra sweep
@pytest.mark.parametrize("launcher_name, overrides", [(name, []) for name in LAUNCHERS])
class TestFusedLauncher(LauncherTestSuite):
    """Hydra's launcher suite: sweeps of one and two jobs, overrides, resolvers, mandatory defaults."""


@pytest.mark.slow
@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [
        (
            {
                "defaults": [
                    {"override hydra/launcher": name},
                    {"override hydra/hydra_logging": "hydra_debug"},
                    {"override hydra/job_logging": "disabled"},
                ]
            },
            ["-m"],
        )
        for name in LAUNCHERS
    ],
    ids=LAUNCHERS,
)
class TestFusedLauncherIntegration(IntegrationTestSuite):
    """Hydra's integration suite: each test runs an application in a subprocess, as a user would."""
