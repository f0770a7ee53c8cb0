import os

import pytest

from tests.helpers import tiny_cfg

for k, v in (("MLFLOW_DISABLE_TELEMETRY", "true"), ("DO_NOT_TRACK", "true"), ("DVC_NO_ANALYTICS", "1"),
             ("PYTHONWARNINGS", "ignore")):
    os.environ.setdefault(k, v)



def pytest_collection_modifyitems(items):
    """Integration tests run real tools: all of them are `slow` (left out of `make test-fast`)."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def mlflow_store(tmp_path_factory):
    """Every test talks to a throw-away sqlite MLflow store, never the repo's."""
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{db}"
    return os.environ["MLFLOW_TRACKING_URI"]


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    from kdflow.stages import prepare

    out = tmp_path_factory.mktemp("data") / "prepared"
    prepare.run(tiny_cfg(), {}, {"data": out})
    return out
