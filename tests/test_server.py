"""The reward server over real HTTP: routes, trainer shapes, limits, auth, metrics, client retries, failures.

One server with two CPU sandbox workers serves the module (uvicorn in a thread, so the test can reach the
workers' pids); a second app with small limits shares its pool; `kernelrl serve` itself runs once, rules-only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import Future

import httpx
import pytest
import ray
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client.parser import text_string_to_metric_families

from kernelrl import cli
from kernelrl.data_pipeline.prompts import build_prompt
from kernelrl.rewards.client import RewardClient, RewardServerError
from kernelrl.rewards.compose import RewardConfig, RewardResult, Scorer
from kernelrl.rewards.edge import METRIC_KEYS
from kernelrl.rewards.server import create_app
from kernelrl.sandbox.verdict import Verdict

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SLOW_PREFIX = "import time\ntime.sleep(4)\n"  # slows the candidate's import: time to kill a worker or stop


class Live:
    """A uvicorn server on a free loopback port, in a thread."""

    def __init__(self, app: FastAPI, lifespan: str = "on") -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, timeout_graceful_shutdown=60)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 300
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=120)


class Scripted(Scorer):
    """A Scorer whose completions can script an outage (``#INFRA``) or a bug (``#BOOM``)."""

    def submit(self, problems, completions):
        if any("#BOOM" in c for c in completions):
            raise RuntimeError("scripted bug")
        futures = super().submit(problems, completions)
        return [_outage() if "#INFRA" in c else f for c, f in zip(completions, futures, strict=True)]


def _outage() -> Future:
    f: Future = Future()
    f.set_result(Verdict("infra_error", error="scripted outage"))
    return f


@pytest.fixture(scope="module")
def server():
    scorer = Scorer(RewardConfig(), num_workers=2, device="cpu", run_timeout_s=20)
    live = Live(create_app(scorer, token=TOKEN))
    live.scorer = scorer
    yield live
    live.stop()
    ray.shutdown()


@pytest.fixture(scope="module")
def small(server):
    """Small limits, the same workers; no lifespan, so stopping it leaves the pool to `server`."""
    scorer = Scripted(RewardConfig(), pool=server.scorer.pool)
    app = create_app(scorer, max_queue=2, max_batch=3, max_completion_chars=1000, max_body_bytes=20_000)
    live = Live(app, lifespan="off")
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(server):
    with RewardClient(server.url, token=TOKEN, backoff=0.05) as c:
        yield c


def sol(problems, name: str, tag: str = "") -> str:
    return problems[name].extras["solution"] + (f"\n# {tag}\n" if tag else "")


def metrics(url: str) -> dict[tuple, float]:
    text = httpx.get(f"{url}/metrics", headers=AUTH).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# -- routes ----------------------------------------------------------------------------------------------


def test_health_needs_no_token(server):
    h = httpx.get(f"{server.url}/health").json()
    assert h["status"] == "ok" and h["workers"] == 2 and h["workers_total"] == 2
    assert h["devices"] == ["cpu"] and h["isolation"] and set(h["isolation"]) <= {"bwrap", "process-only"}
    assert h["protocol_version"] == 2 and h["schema_version"] == 2 and h["queue_depth"] == 0


def test_token_is_required_everywhere_but_health(server):
    body = {"problems": [], "completions": []}
    assert httpx.post(f"{server.url}/score", json=body).status_code == 401
    r = httpx.post(f"{server.url}/score", json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.post(f"{server.url}/score", json=body, headers=AUTH).json() == {"results": [], "rewards": []}
    with pytest.raises(RewardServerError, match="401"):
        RewardClient(server.url, token="wrong").score([], [])


def test_score_correct_beats_wrong(server, client, problems):
    relu = problems["relu"]
    results = client.score(["bundled:relu", relu], [sol(problems, "relu"), relu.extras["wrong"]])
    assert [r.verdict.status for r in results] == ["ok", "mismatch"]
    assert results[0].reward > 0 and results[0].reward > results[1].reward
    assert results[0].verdict.speedup is None and "execution" in results[0].components


def test_score_malformed_input_names_the_field(server, client):
    def post(body):
        return httpx.post(f"{server.url}/score", headers=AUTH, json=body)

    r = post({"problems": ["bundled:relu", "kernels/relu.py"], "completions": ["a", "b"]})
    assert r.status_code == 422 and r.json()["detail"].startswith("problems[1]: ")
    r = post({"problems": ["bundled:nope"], "completions": ["a"]})
    assert r.status_code == 422 and "no bundled problem 'nope'" in r.json()["detail"]
    r = post({"problems": ["import torch\nx = 1\n"], "completions": ["a"]})
    assert r.status_code == 422 and "not a KernelBench problem" in r.json()["detail"]
    r = post({"problems": ["bundled:relu"], "completions": []})
    assert r.status_code == 422 and "must line up" in r.json()["detail"]
    r = post({"problems": ["bundled:relu"], "completions": [3]})
    assert r.status_code == 422 and r.json()["detail"].startswith("completions[0]: ")
    r = post({"problems": [], "completions": [], "extra": 1})
    assert r.status_code == 422 and r.json()["detail"].startswith("extra: ")
    r = httpx.post(
        f"{server.url}/score", content=b"{not json", headers={**AUTH, "content-type": "application/json"}
    )
    assert r.status_code == 422 and "JSON decode error" in r.json()["detail"]
    t0 = time.monotonic()
    with pytest.raises(RewardServerError, match=r"422 problems\[0\]") as e:
        RewardClient(server.url, token=TOKEN, backoff=10).score(["x.py"], ["a"])
    assert e.value.status == 422 and time.monotonic() - t0 < 5  # raised at once, not retried


def test_get_reward_openrlhf_shape(server, problems):
    """query = prompt + response; labels carry the problem source. The prompt's own example answer (an add
    kernel, correct for this very problem) must not be judged in place of a response with no code."""
    add = problems["elementwise_add"]
    prompt = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in build_prompt(add.source))
    prompt += "<|im_start|>assistant\n"
    responses = [
        f"One flat pass.\n\n```python\n{add.extras['solution']}```",
        f"Fused.\n\n```python\n{add.extras['wrong']}```",
        "I would write a Triton kernel for this.",
    ]
    queries = [prompt + r for r in responses]
    queries[1] = "<pad><pad>" + queries[1]  # decoded padding before the prompt
    body = {"query": queries, "prompts": [prompt] * 3, "labels": [add.source] * 3}
    r = httpx.post(f"{server.url}/get_reward", json=body, headers=AUTH, timeout=300)
    assert r.status_code == 200, r.text
    data = r.json()
    rewards, logs = data["rewards"], data["extra_logs"]
    assert rewards[0] > 0 and rewards[0] > rewards[1] > rewards[2]
    assert data["scores"] == [1.0, 0.0, 0.0] and logs["correct"] == [1.0, 0.0, 0.0] == logs["acc"]
    assert logs["format"][2] == -1.0 and logs["execution"] == [1.0, 0.0, -0.5]
    assert list(logs) == [*METRIC_KEYS[1:], "execution", "speed", "format", "kernel", "banned", "concise"]
    assert logs["speed"] == [0.0] * 3  # not timed on CPU: 0.0, what it adds to the score (never null)
    assert all(len(v) == 3 and all(type(x) is float for x in v) for v in logs.values())
    bad = {"query": ["no prompt here"], "prompts": [prompt], "labels": [add.source]}
    r = httpx.post(f"{server.url}/get_reward", json=bad, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"] == "query[0]: does not contain prompts[0]"
    r = httpx.post(f"{server.url}/get_reward", json={**body, "labels": ["bundled:relu"]}, headers=AUTH)
    assert r.status_code == 422 and "must line up" in r.json()["detail"]
    r = httpx.post(f"{server.url}/get_reward", json={"query": [], "prompts": [], "labels": []}, headers=AUTH)
    assert r.json() == {"rewards": [], "scores": [], "extra_logs": {}}


def test_token_in_the_path_for_clients_without_headers(server, problems):
    """OpenRLHF sends no Authorization header: /t/<token>/get_reward carries it, and no log line shows it."""
    body = {"query": ["p" + sol(problems, "relu")], "prompts": ["p"], "labels": ["bundled:relu"]}
    r = httpx.post(f"{server.url}/t/{TOKEN}/get_reward", json=body, timeout=300)
    assert r.status_code == 200 and r.json()["scores"] == [1.0]
    for path in ("/t/wrong/get_reward", "/t//get_reward", f"/t/{TOKEN}x/get_reward", "/get_reward"):
        assert httpx.post(f"{server.url}{path}", json=body).status_code == 401, path
    assert httpx.get(f"{server.url}/t/{TOKEN}/metrics").status_code == 200
    r = httpx.get(f"{server.url}/t/{TOKEN}/nowhere")
    assert r.status_code == 404
    assert "/t/" not in metrics(server.url).__repr__()  # the route label is the route, never the token


def test_get_reward_unjudged_sample_is_503_naming_it(small, problems):
    body = {
        "query": ["p" + sol(problems, "relu"), "p#INFRA"],
        "prompts": ["p", "p"],
        "labels": ["bundled:relu"] * 2,
    }
    r = httpx.post(f"{small.url}/get_reward", json=body, timeout=300)
    assert r.status_code == 503 and r.headers["retry-after"]
    assert r.json()["indices"] == [1] and "infra_error: scripted outage" in r.json()["detail"]
    r = httpx.post(
        f"{small.url}/compute_score", json={"solution_str": "#INFRA", "ground_truth": "bundled:relu"}
    )
    assert r.status_code == 503 and r.json()["statuses"] == ["infra_error"]  # never a score of null


def test_compute_score_verl_shape(server, client, problems):
    relu = problems["relu"]
    answers = [
        client.compute_score("kernelbench", sol(problems, "relu"), "bundled:relu", {"index": 0}),
        client.compute_score("kernelbench", relu.extras["wrong"], relu.source),
        client.compute_score("kernelbench", "no code at all", relu.source),
    ]
    assert len({tuple(a) for a in answers}) == 1  # the same keys, in the same order, for every sample
    assert list(answers[0])[:6] == list(METRIC_KEYS) and {"execution", "format"} <= set(answers[0])
    assert all(type(v) is float for a in answers for v in a.values())  # numbers only: no null, no strings
    assert [a["correct"] for a in answers] == [1.0, 0.0, 0.0] and [a["format"] for a in answers][2] == -1.0
    assert answers[0]["score"] > answers[1]["score"] > answers[2]["score"]
    assert answers[0]["compiled"] == 1.0 and answers[0]["hack"] == 0.0 and answers[0]["fast_1"] == 0.0
    r = httpx.post(f"{server.url}/compute_score", json={"solution_str": "x"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"] == "ground_truth: Field required"
    r = httpx.post(
        f"{server.url}/compute_score", json={"solution_str": "x", "ground_truth": "relu.py"}, headers=AUTH
    )
    assert r.status_code == 422 and r.json()["detail"].startswith("ground_truth: a problem must be")


def test_cache_hits_show_in_metrics(server, client, problems):
    pair = (["bundled:swish"], [sol(problems, "swish")])
    client.score(*pair)
    before = metrics(server.url)
    t0 = time.monotonic()
    again = client.score(*pair) + client.score(pair[0] * 3, pair[1] * 3)
    assert time.monotonic() - t0 < 2 and all(r.verdict.status == "ok" for r in again)
    after = metrics(server.url)
    assert after[("kernelrl_cache_hits_total", ())] - before[("kernelrl_cache_hits_total", ())] == 4
    assert httpx.get(f"{server.url}/health").json()["cache_hits"] == after[("kernelrl_cache_hits_total", ())]
    # the same answer from every route: /score's result, /get_reward's and /compute_score's numbers
    first = client.score(*pair)[0]
    shaped = client.compute_score("d", pair[1][0], pair[0][0])
    assert shaped["score"] == first.reward and shaped["execution"] == first.components["execution"]


def test_deadline_answers_503_and_a_retry_collects_the_verdict(server, problems):
    """A verdict slower than the deadline: the route answers 503 (Retry-After) in time, the pair keeps
    running, and a retry (here our client's) joins it instead of starting it again."""
    live = Live(create_app(Scorer(RewardConfig(), pool=server.scorer.pool), deadline_s=1.0), lifespan="off")
    try:
        slow = SLOW_PREFIX + sol(problems, "relu", "deadline")
        body = {"problems": ["bundled:relu"], "completions": [slow]}
        t0 = time.monotonic()
        r = httpx.post(f"{live.url}/score", json=body, timeout=60)
        assert r.status_code == 503 and time.monotonic() - t0 < 3
        assert r.headers["retry-after"] == "1" and "still being judged after 1 s" in r.json()["detail"]
        runs = server.scorer.pool.cache_hits
        [result] = RewardClient(live.url, retries=10, backoff=0.5).score(["bundled:relu"], [slow])
        assert result.verdict.status == "ok"
        assert server.scorer.pool.cache_hits > runs  # joined the running pair (or its cached verdict)
    finally:
        live.stop()


def test_metrics_count_what_was_sent(server, client, problems):
    key = ("kernelrl_requests_total", (("code", "200"), ("route", "/score")))
    before = metrics(server.url)
    client.score(["bundled:relu"], [sol(problems, "relu")])
    client.score(["bundled:relu"] * 2, [sol(problems, "relu"), "prose only"])
    httpx.post(f"{server.url}/score", json={"problems": [], "completions": []})  # 401
    httpx.post(f"{server.url}/score", json={"problems": 1}, headers=AUTH)  # 422
    after = metrics(server.url)

    def delta(k):
        return after.get(k, 0) - before.get(k, 0)

    assert delta(key) == 2
    assert delta(("kernelrl_requests_total", (("code", "401"), ("route", "/score")))) == 1
    assert delta(("kernelrl_requests_total", (("code", "422"), ("route", "/score")))) == 1
    assert delta(("kernelrl_verdicts_total", (("status", "ok"),))) == 2
    assert delta(("kernelrl_verdicts_total", (("status", "format_error"),))) == 1
    assert delta(("kernelrl_request_seconds_count", (("route", "/score"),))) == 4
    assert ("kernelrl_queue_depth", ()) in after and after[("kernelrl_workers_alive", ())] == 2
    assert ("kernelrl_worker_restarts_total", ()) in after


# -- limits and failures -----------------------------------------------------------------------------------


def test_limits_answer_413_and_429(small, problems):
    def score(problems_, completions, **kw):
        return httpx.post(
            f"{small.url}/score", json={"problems": problems_, "completions": completions}, **kw
        )

    r = score(["bundled:relu"] * 4, ["a"] * 4)
    assert r.status_code == 413 and r.json()["detail"].startswith("completions: 4 items")
    r = score(["bundled:relu"], ["x" * 1001])
    assert r.status_code == 413 and r.json()["detail"].startswith("completions[0]: 1001 characters")
    r = score(["bundled:relu"], ["x" * 30_000])
    assert r.status_code == 413 and r.json()["detail"].startswith("body: ")

    def chunks():  # no Content-Length: the limit is counted while reading
        for _ in range(30):
            yield b" " * 1000

    r = httpx.post(f"{small.url}/score", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = score(["bundled:relu"] * 3, [sol(problems, "relu", f"q{i}") for i in range(3)])
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0 and "max_queue 2" in r.json()["detail"]


def test_unexpected_exception_is_a_500_with_the_reason(small):
    r = httpx.post(f"{small.url}/score", json={"problems": ["bundled:relu"], "completions": ["#BOOM"]})
    assert r.status_code == 500 and "RuntimeError: scripted bug" in r.json()["detail"]
    assert httpx.get(f"{small.url}/health").status_code == 200  # still serving


def test_client_retries_then_gives_up_naming_url_and_status():
    calls: Counter = Counter()
    stub = FastAPI()

    @stub.post("/score")
    async def score():
        calls["score"] += 1
        if calls["score"] % 3:  # 503, 503, 200, 503, 503, 200 ...
            return JSONResponse({"detail": "warming up"}, status_code=503)
        return {"results": [RewardResult(1.0, {"execution": 1.0}).to_dict()], "rewards": [1.0]}

    @stub.post("/compute_score")
    async def down():
        calls["down"] += 1
        return JSONResponse({"detail": "sandbox down"}, status_code=429 if calls["down"] % 2 else 503)

    live = Live(stub, lifespan="off")
    try:
        c = RewardClient(live.url, retries=5, backoff=0.01)
        assert [r.reward for r in c.score(["bundled:relu"], ["x"])] == [1.0] and calls["score"] == 3
        results = asyncio.run(c.ascore(["bundled:relu"], ["x"]))
        assert results[0].components == {"execution": 1.0} and calls["score"] == 6
        with pytest.raises(RuntimeError, match=f"{live.url}/compute_score .*6 attempts.*: 503 sandbox down"):
            RewardClient(live.url, retries=5, backoff=0.01).compute_score("d", "s", "bundled:relu")
        assert calls["down"] == 6
    finally:
        live.stop()
    with pytest.raises(RewardServerError, match="ConnectError") as e:
        RewardClient(live.url, retries=2, backoff=0.01).health()
    assert e.value.status is None


def test_client_reads_url_and_token_from_env(server, monkeypatch):
    monkeypatch.setenv("KERNELRL_REWARD_URL", server.url + "/")
    monkeypatch.setenv("KERNELRL_TOKEN", TOKEN)
    c = RewardClient()
    assert c.url == server.url and c.score([], []) == []
    monkeypatch.delenv("KERNELRL_REWARD_URL")
    with pytest.raises(ValueError, match="KERNELRL_REWARD_URL"):
        RewardClient()


def test_graceful_shutdown_drains_in_flight_requests(server, problems):
    """A server told to stop mid-request still answers it (an app without lifespan: its stop leaves the
    module's pool up)."""
    scorer = Scorer(RewardConfig(), pool=server.scorer.pool)
    live = Live(create_app(scorer), lifespan="off")
    answer: dict = {}

    def ask() -> None:
        body = {"problems": ["bundled:relu"], "completions": [SLOW_PREFIX + sol(problems, "relu", "drain")]}
        answer["r"] = httpx.post(f"{live.url}/score", json=body, timeout=300)

    t = threading.Thread(target=ask)
    t.start()
    time.sleep(1.5)
    live.stop()
    t.join()
    assert answer["r"].status_code == 200 and answer["r"].json()["results"][0]["verdict"]["status"] == "ok"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{live.url}/health")


def test_worker_killed_mid_request_still_answers(server, client, problems):
    """Both workers busy with a slow candidate; one is SIGKILLed: its pair is retried, both are answered."""
    pool = server.scorer.pool
    victim = ray.get(pool.workers[0].pid.remote())
    restarts = metrics(server.url)[("kernelrl_worker_restarts_total", ())]
    killer = threading.Timer(2.0, os.kill, (victim, signal.SIGKILL))
    killer.start()
    slow = [SLOW_PREFIX + sol(problems, "relu", f"killed {i}") for i in range(2)]
    results = client.score(["bundled:relu"] * 2, slow)
    killer.join()
    assert [r.verdict.status for r in results] == ["ok", "ok"]  # one of them on a restarted worker
    assert metrics(server.url)[("kernelrl_worker_restarts_total", ())] == restarts + 1
    assert httpx.get(f"{server.url}/health").json()["workers"] == 2


# -- `kernelrl serve` itself ----------------------------------------------------------------------------


def test_serve_usage_errors_are_one_line(tmp_path, capsys):
    for args, message in [
        (["--port", "70000"], "argument --port: must be between 0 and 65535, got 70000"),
        (["--workers", "0"], "argument --workers: must be at least 1, got 0"),
        (["--run-timeout", "-1"], "argument --run-timeout: must be positive, got -1"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["--config", str(tmp_path / "no.yaml")], "reward config not found"),
    ]:
        with pytest.raises(SystemExit) as e:
            cli.main(["serve", *args])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith(f"kernelrl: error: {message}"), (args, err)
        assert len(err.strip().splitlines()) == 1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(SystemExit):
            cli.main(["serve", "--port", str(taken.getsockname()[1]), "--config", _rules_only(tmp_path)])
    assert capsys.readouterr().err.startswith("kernelrl: error: cannot listen on 127.0.0.1:")


def _rules_only(tmp_path) -> str:
    path = tmp_path / "rules.yaml"
    path.write_text("weights:\n  format: 1.0\n  kernel: 0.5\n")
    return str(path)


def test_kernelrl_serve_end_to_end_rules_only(tmp_path, problems):
    """The real command: starts, answers, and exits 0 on Ctrl-C (rules only, so no Ray is started)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "KERNELRL_TOKEN": "env-token"}
    cmd = [
        sys.executable,
        "-m",
        "kernelrl.cli",
        "serve",
        "--port",
        str(port),
        "--config",
        _rules_only(tmp_path),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "kernelrl serve did not come up"
            time.sleep(0.2)
        assert httpx.get(f"{url}/health").json()["workers_total"] == 0
        results = RewardClient(url, token="env-token").score(
            ["bundled:relu"] * 2, [sol(problems, "relu"), "no"]
        )
        assert [r.reward for r in results] == [1.5, -1.5] and results[0].verdict is None
        assert httpx.post(f"{url}/score", json={"problems": [], "completions": []}).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: drain, shut down, exit 0 (SIGTERM: the same, then -15)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert "rules-only reward config" in out and "Application shutdown complete" in out
