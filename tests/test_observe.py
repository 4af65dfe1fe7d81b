"""The conventions a service team expects of manset-serve: inputs as
well as headlines, a score beside each label, an access log of one JSON line per request, and
Prometheus metrics that show load, latency and drift. MLflow's /invocations is checked against
`mlflow models serve` itself in test_pyfunc.py."""

import json
import time

import httpx
import pytest
from manset_serving.bundle import sha256
from prometheus_client.parser import text_string_to_metric_families
from test_service import HEADLINES, Server, start_server
from test_serving import small_bundle

from training import export

THRESHOLD = 0.6


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """A category bundle with an abstention threshold, served (without --abstain)."""
    root = tmp_path_factory.mktemp("conventions")
    bundle = small_bundle(root / "bundle")
    config = json.loads((bundle / "config.json").read_text())
    config["abstain"] = {"threshold": THRESHOLD, "precision": 0.9}
    (bundle / "config.json").write_text(json.dumps(config))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["config.json"] = sha256(bundle / "config.json")
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    export.install_champion(root / "models", "category", bundle, 1, "run-1")
    s = start_server(root / "models", root / "server.log")
    yield s
    s.stop()


def _metrics(server: Server) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_inputs_as_well_as_headlines_and_a_score_beside_each_label(server: Server) -> None:
    with server.client() as c:
        given = c.post("/v1/classify", json={"headlines": HEADLINES[:5]}).json()
        same = c.post("/v1/classify", json={"inputs": HEADLINES[:5]}).json()
        assert given == same
        for row in (r["category"] for r in given["results"]):
            assert row["score"] == max(row["probabilities"].values())
            assert row["probabilities"][row["label"]] == row["score"]
        both = c.post("/v1/classify", json={"headlines": ["a"], "inputs": ["b"]})
        assert both.status_code == 422 and both.json()["detail"][0]["msg"].startswith("inputs:")
        bad = c.post("/v1/classify", json={"inputs": ["ok", ""]})
        assert bad.status_code == 422 and bad.json()["detail"][0]["msg"].startswith("inputs[1]")
        neither = c.post("/v1/classify", json={"tasks": ["category"]})
        assert neither.status_code == 422 and "headlines" in neither.json()["detail"][0]["msg"]
        mlflow = c.post("/invocations", json={"inputs": HEADLINES[:5],
                                              "params": {"task": "category"}}).json()
        assert mlflow["predictions"] == [r["category"] for r in given["results"]]
        other = c.post("/invocations", json={"inputs": ["ok"], "params": {"task": "topic"}})
        assert other.status_code == 422 and "'topic' is not a loaded task" in other.text


def test_metrics_count_requests_headlines_per_label_and_unsure_answers(server: Server) -> None:
    before = _metrics(server)
    with server.client() as c:
        out = c.post("/v1/classify", json={"headlines": HEADLINES[:40]}).json()
        c.post("/v1/classify", json={"headlines": [""]})
        c.get("/no/such/route")
    after = _metrics(server)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    rows = [r["category"] for r in out["results"]]
    for label in {r["label"] for r in rows}:
        assert grew("manset_headlines_total", task="category", label=label) == \
            sum(r["label"] == label for r in rows)
    assert grew("manset_unsure_answers_total", task="category") == \
        sum(r["score"] < THRESHOLD for r in rows) > 0
    assert grew("manset_requests_total", route="/v1/classify", status="200") == 1
    assert grew("manset_requests_total", route="/v1/classify", status="422") == 1
    assert grew("manset_requests_total", route="other", status="404") == 1  # no path as a label
    assert grew("manset_request_seconds_count", route="/v1/classify") == 2


def test_the_access_log_has_one_json_line_per_request(server: Server) -> None:
    with server.client() as c:
        c.post("/v1/classify", json={"headlines": HEADLINES[:3]})
        c.get("/readyz")
    def logged() -> list[dict]:  # a line is written once its answer is sent: wait for it
        return [json.loads(x) for x in server.log.read_text().splitlines() if x.startswith("{")]

    deadline = time.monotonic() + 10
    while logged()[-1]["route"] != "/readyz":
        assert time.monotonic() < deadline, logged()[-3:]
        time.sleep(0.05)
    classify, ready = logged()[-2:]
    assert (classify["route"], classify["status"], classify["headlines"]) == \
        ("/v1/classify", 200, 3)
    assert (ready["route"], ready["status"], ready["headlines"]) == ("/readyz", 200, 0)
    assert set(classify) == {"time", "method", "route", "status", "headlines", "ms"}
    assert classify["ms"] > 0 and classify["time"].endswith("Z")
