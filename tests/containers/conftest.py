"""Fixtures for the container tests: the serving image on the shared model (tests/conftest.py has the
docker client and the shared training job, which the SDK tests use too)."""
import pytest

from support import Endpoint, start_serving


@pytest.fixture(scope="session")
def endpoint(docker_client, trained) -> Endpoint:
    """The serving image on the shared model, with its default settings."""
    endpoint = start_serving(docker_client, trained.opt_ml / "model")
    yield endpoint
    endpoint.container.remove(force=True)
