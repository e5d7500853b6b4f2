"""The installed-wheel tests run only in the wheel stage of ``.ci/run``.

That stage sets ``SEGRT_WHEEL`` (the built wheel file) and ``SEGRT_WHEEL_MODELS`` (the folder
``tests/wheel/make_models.py`` wrote). In the main test session both are unset and these tests skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

STAGE_REASON = (
    "tests the installed wheel: run by .ci/run's wheel stage (scripts/test_wheel.sh: the built wheel in a fresh venv, "
    "SEGRT_WHEEL and SEGRT_WHEEL_MODELS set)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("SEGRT_WHEEL") and os.environ.get("SEGRT_WHEEL_MODELS"):
        return
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.skip(reason=STAGE_REASON))


@pytest.fixture(scope="session")
def wheel() -> Path:
    """The wheel file that is installed in this environment."""
    return Path(os.environ["SEGRT_WHEEL"])


@pytest.fixture(scope="session")
def models() -> Path:
    """The folder of test models and expected results (see make_models.py)."""
    return Path(os.environ["SEGRT_WHEEL_MODELS"])
