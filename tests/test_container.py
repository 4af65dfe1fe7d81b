"""The service's container image: its packages pinned, and, where a container
engine runs, the default image built and serving the trained champion."""

import json
import runpy
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import ROOT
from packaging.utils import canonicalize_name

CONSTRAINTS = runpy.run_path(str(ROOT / "serving" / "constraints.py"))  # a script, not a module


def test_the_constraints_pin_every_distribution_the_image_can_install() -> None:
    pinned = {}
    for line in (ROOT / "serving" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[canonicalize_name(name)] = version
    assert all(pinned.values()), "every line pins one version"
    installs = CONSTRAINTS["closure"]("manset-serving", CONSTRAINTS["EXTRAS"])
    assert installs <= set(pinned), installs - set(pinned)
    ignored = (ROOT / ".dockerignore").read_text()
    assert "!serving/constraints.txt" in ignored  # in the build context


def _engine() -> str | None:
    """Why no image can be built here, or None when an engine answers."""
    if shutil.which("docker") is None:
        return "no docker client"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    return None if info.returncode == 0 else f"no container engine: {info.stderr.strip()[-200:]}"


@pytest.mark.slow
def test_the_default_image_builds_and_serves_the_champion(tmp_path: Path,
                                                          request: pytest.FixtureRequest) -> None:
    why = _engine()
    if why:
        pytest.skip(why)
    trained: Path = request.getfixturevalue("trained")  # only where an image can be built
    context = tmp_path / "context"
    shutil.copytree(ROOT / "serving", context / "serving",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    shutil.copytree(trained / "models", context / "models")
    shutil.copy(ROOT / ".dockerignore", context)
    tag = f"manset-serve-test:{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "build", "-f", "serving/Dockerfile", "-t", tag, "."], cwd=context,
                   check=True, timeout=1200)
    container = None
    try:
        container = subprocess.run(["docker", "run", "-d", "-p", "127.0.0.1::8000", tag],
                                   capture_output=True, text=True, check=True,
                                   timeout=60).stdout.strip()
        port = subprocess.run(["docker", "port", container, "8000"], capture_output=True,
                              text=True, check=True).stdout.strip().rsplit(":", 1)[1]
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the container did not get ready"
            time.sleep(0.5)
        out = httpx.post(f"http://127.0.0.1:{port}/v1/classify", timeout=10,
                         json={"headlines": ["Galatasaray derbiyi kazandı"]})
        assert out.status_code == 200 and json.loads(out.text)["results"][0]["category"]["label"]
    finally:
        if container:
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
