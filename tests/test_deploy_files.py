"""deploy/: the Dockerfile, the compose file and the Kubernetes manifests, checked offline.

Each file is checked against its format's schema with validators that bundle them
(kubernetes-validate's Kubernetes JSON schemas, check-jsonschema's vendored compose-spec,
dockerfile-parse), and against the code it runs: every command uses flags that
`waypoint serve --help` / `waypoint worker --help` list and that parse; every probe and
health check names a port the command listens on and a path the server serves; the drain
fits in the grace period; the Secret holds what the pods read. Two processes are started
as the files start them (the image's default app on SQLite, a worker on PostgreSQL) to see
the probed endpoints answer without an API key.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema
from dockerfile_parse import DockerfileParser
from kubernetes_validate.utils import latest_version
from server_harness import postgres_schema

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
APP = DEPLOY / "app"  # the image's /app
OLDEST_K8S = "1.30"  # the oldest Kubernetes minor the manifests must also validate against


# -- reading the files -------------------------------------------------------------------


@cache
def k8s_documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return tuple(docs)


def k8s(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in k8s_documents()
             if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r} in deploy/k8s, found {len(found)}"
    return found[0]


def container(deployment: str) -> dict[str, Any]:
    containers = k8s("Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@cache
def dockerfile_stages() -> tuple[tuple[dict[str, Any], ...], ...]:
    """The Dockerfile's instructions, one tuple per stage (comments left out)."""
    parser = DockerfileParser(path=str(DEPLOY / "Dockerfile"))
    stages: list[list[dict[str, Any]]] = []
    for item in parser.structure:
        if item["instruction"] == "FROM":
            stages.append([])
        if item["instruction"] != "COMMENT":
            assert stages, "the Dockerfile must start with FROM"
            stages[-1].append(item)
    return tuple(tuple(stage) for stage in stages)


def instructions(stage: tuple[dict[str, Any], ...], name: str) -> list[str]:
    return [item["value"] for item in stage if item["instruction"] == name]


def image_cmd() -> list[str]:
    (cmd,) = instructions(dockerfile_stages()[-1], "CMD")
    argv = json.loads(cmd)  # exec form: waypoint is PID 1 and gets the SIGTERM itself
    assert isinstance(argv, list), "CMD must be in exec (JSON) form"
    return argv


def image_uid() -> int:
    user = instructions(dockerfile_stages()[-1], "USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user}: use a numeric uid, so runAsNonRoot can verify it"
    return int(uid)


# -- the CLI the files run ---------------------------------------------------------------


@cache
def cli_flags(command: str) -> frozenset[str]:
    """The flags `waypoint <command> --help` lists (run as a separate process)."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run([sys.executable, "-m", "waypoint.cli", command, "--help"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return frozenset(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", done.stdout))


def parsed(argv: list[str]) -> dict[str, Any]:
    """The options a `waypoint ...` command line sets: its flags must be listed by --help,
    and the whole line must parse with the CLI's own parser (types and values)."""
    import typer.main

    from waypoint.cli import app

    assert argv[0] == "waypoint", f"expected a waypoint command, got {argv}"
    command = argv[1]
    used = {a.split("=", 1)[0] for a in argv[2:] if a.startswith("--")}
    missing = used - cli_flags(command)
    assert not missing, (f"`waypoint {command}` has no {', '.join(sorted(missing))} "
                         f"(its --help lists {', '.join(sorted(cli_flags(command)))})")
    group = typer.main.get_command(app)
    ctx = group.commands[command].make_context(command, list(argv[2:]))  # type: ignore[attr-defined]
    return dict(ctx.params)


def commands() -> dict[str, list[str]]:
    """Every waypoint command line the deploy files run, by where it is."""
    out = {"Dockerfile CMD": image_cmd()}
    for name, service in compose()["services"].items():
        command = service.get("command")
        if command is not None:
            out[f"compose {name}"] = command if isinstance(command, list) \
                else shlex.split(command)
    for deployment in ("waypoint-api", "waypoint-worker"):
        c = container(deployment)
        out[f"k8s {deployment}"] = [*c.get("command", []), *c.get("args", [])]
    return out


def drain_timeout(argv: list[str]) -> float:
    from waypoint.service.config import Settings

    value = parsed(argv).get("drain_timeout")
    return float(value if value is not None else Settings.model_fields["drain_timeout"].default)


@cache
def _api_routes() -> tuple[Any, ...]:
    from waypoint.service.app import create_app
    from waypoint.service.config import Settings

    return tuple(create_app(Settings()).router.routes)  # built, not started: no database


def serves(path: str) -> bool:
    """Whether the API application routes `GET path` (matched as Starlette routes a
    request, so routers FastAPI includes lazily count too)."""
    from starlette.routing import Match

    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": [],
             "query_string": b""}
    return any(route.matches(scope)[0] is Match.FULL for route in _api_routes())


def seconds(value: str | int) -> float:
    """A compose duration (`45s`, `1m30s`) in seconds."""
    if isinstance(value, int):
        return float(value)
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", value):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}[unit]
    return total


# -- schemas -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [OLDEST_K8S, latest_version()])
def test_k8s_manifests_match_the_kubernetes_schemas(version: str) -> None:
    assert k8s_documents(), "no manifests in deploy/k8s"
    for filename, doc in k8s_documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{filename}: {doc['kind']} {doc['metadata']['name']}: {where}: "
                        f"{exc.message} (Kubernetes {version})")


def test_the_k8s_validator_is_not_vacuous() -> None:
    """A typo in a probe is caught (the bundled schemas are really used, offline)."""
    doc = json.loads(json.dumps(k8s("Deployment", "waypoint-api")))
    probe = doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, latest_version(), strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk
    assert len(set(listed)) == len(listed)
    names = [(d["kind"], d["metadata"]["name"]) for _, d in k8s_documents()]
    assert len(set(names)) == len(names), "two manifests with the same kind and name"
    images = {c["image"].split(":")[0] for d in ("waypoint-api", "waypoint-worker")
              for c in [container(d)]}
    assert images <= {i["name"] for i in kustomization.get("images", [])}


def test_compose_file_matches_the_compose_spec() -> None:
    schema = get_builtin_schema("vendor.compose-spec")
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(compose()),
                    key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)

    # ...and the validator does reject a wrong file.
    broken = {"services": {"api": {"image": "waypoint", "restart": ["always"]}}}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(broken))


def test_compose_services() -> None:
    services = compose()["services"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose()["volumes"]
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        env = services[name]["environment"]
        assert "WAYPOINT_POSTGRES_URL" in env, f"{name}: no database"
        assert "@postgres:5432/" in env["WAYPOINT_POSTGRES_URL"]
    assert "WAYPOINT_API_KEYS" in services["api"]["environment"]
    assert "WAYPOINT_API_KEYS" not in services["worker"]["environment"], "workers serve no API"
    assert services["worker"]["deploy"]["replicas"] >= 2
    assert services["api"]["command"][:2] == ["waypoint", "serve"]
    assert services["worker"]["command"][:2] == ["waypoint", "worker"]
    api = parsed(services["api"]["command"])
    assert api["workers"] == 0 and api["host"] == "0.0.0.0"
    published = [p.rsplit(":", 1)[-1] for p in services["api"]["ports"]]
    assert str(api["port"]) in published


# -- the Dockerfile ----------------------------------------------------------------------


def test_dockerfile() -> None:
    stages = dockerfile_stages()
    for stage in stages:
        base = stage[0]["value"].split()[0]
        assert base == "python:3.12-slim", f"FROM {base}"
    final = stages[-1]
    assert image_uid() != 0, "the image must not run as root"
    assert instructions(final, "USER")[-1].split(":")[0] not in ("root", "0")
    assert "2024" in " ".join(instructions(final, "EXPOSE")).split()
    (healthcheck,) = instructions(final, "HEALTHCHECK")
    assert "CMD" in healthcheck and "urllib" in healthcheck and "curl" not in healthcheck
    cmd = image_cmd()
    assert cmd[:2] == ["waypoint", "serve"]
    options = parsed(cmd)
    assert options["host"] == "0.0.0.0" and options["port"] == 2024
    assert str(options["config"]) == "/app/langgraph.json"
    # Nothing is fetched when the container runs, and the runtime stage installs nothing.
    for run in instructions(final, "RUN"):
        assert not re.search(r"\b(pip|curl|wget|apt-get)\b", run), run


def test_dockerfile_installs_the_package_with_the_server_and_postgres_extras() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    runs = " ".join(v for stage in dockerfile_stages() for v in instructions(stage, "RUN"))
    match = re.search(r'pip install "\.\[([a-z,-]+)\]"', runs)
    assert match, "the package is installed from the source: pip install \".[...]\""
    wanted = set(match.group(1).split(","))
    assert {"server", "postgres"} <= wanted <= set(extras)


def test_dockerfile_copies_what_exists_and_is_not_ignored() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for stage in dockerfile_stages():
        for copy in instructions(stage, "COPY"):
            words = [w for w in copy.split() if not w.startswith("--")]
            if "--from=" in copy:
                continue
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert source.rstrip("/") in kept, f"COPY {source}: excluded by the ignore file"
    # The default app is the one its config names, importable as /app is on PYTHONPATH.
    envs = " ".join(instructions(dockerfile_stages()[-1], "ENV"))
    assert "PYTHONPATH=/app" in envs
    copied = [c for c in instructions(dockerfile_stages()[-1], "COPY") if "deploy/app" in c]
    assert copied and copied[0].split()[-1].rstrip("/") == "/app"
    assert (APP / "langgraph.json").is_file()


# -- commands, probes and ports agree with the code ------------------------------------


def test_every_command_uses_flags_the_cli_has() -> None:
    found = commands()
    assert len(found) == 5, found
    for where, argv in found.items():
        try:
            options = parsed(argv)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from None
        if argv[1] == "worker":
            assert options.get("health_port"), f"{where}: no --health-port for the probes"
        else:
            assert argv[1] == "serve", where


def test_api_probes_point_at_what_the_server_serves() -> None:
    c = container("waypoint-api")
    options = parsed(c["command"])
    assert options["workers"] == 0, "the API Deployment runs no runs: --workers 0"
    assert options["host"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": options["port"]} and options["port"] == 2024
    assert c["livenessProbe"]["httpGet"]["path"] == "/ok"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = c[kind]["httpGet"]
        assert ports.get(get["port"], get["port"]) == options["port"], kind
        assert serves(get["path"]), f"{kind}: the server has no GET {get['path']}"
    # The image's own health check and the compose file's port.
    (healthcheck,) = instructions(dockerfile_stages()[-1], "HEALTHCHECK")
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/[\w/]*)", healthcheck)
    assert url and int(url.group(1)) == parsed(image_cmd())["port"]
    assert serves(url.group(2))
    assert not serves("/no-such-path")
    # The Service sends traffic to that port.
    service = k8s("Service", "waypoint-api")
    target = service["spec"]["ports"][0]["targetPort"]
    assert ports.get(target, target) == options["port"]
    pod_labels = k8s("Deployment", "waypoint-api")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_worker_probes_point_at_its_health_port() -> None:
    c = container("waypoint-worker")
    options = parsed(c["command"])
    assert options["health_port"] == 8081
    assert options["health_host"] in ("0.0.0.0", "::"), "the kubelet probes the pod's IP"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": options["health_port"]}
    assert c["livenessProbe"]["httpGet"]["path"] == "/ok"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = c[kind]["httpGet"]
        assert ports.get(get["port"], get["port"]) == options["health_port"], kind
    worker = compose()["services"]["worker"]
    check = " ".join(worker["healthcheck"]["test"])
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w*)", check)
    assert url and int(url.group(1)) == parsed(worker["command"])["health_port"]
    assert url.group(2) in ("/ok", "/ready")


def test_selectors_budgets_and_autoscaler_match_the_deployments() -> None:
    for component in ("api", "worker"):
        deployment = k8s("Deployment", f"waypoint-{component}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        pdb = k8s("PodDisruptionBudget", f"waypoint-{component}")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        if component == "api":
            assert pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    hpa = k8s("HorizontalPodAutoscaler", "waypoint-worker")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "waypoint-worker"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] >= 2
    k8s("PodDisruptionBudget", "waypoint-worker")  # exists


def test_drain_fits_in_the_grace_period() -> None:
    """SIGTERM drains: runs stop at their next step boundary (up to --drain-timeout) and are
    requeued; an API process gives open streams up to --drain-timeout + 5 s. All of it, and
    a preStop pause, must end before Kubernetes or Docker sends SIGKILL."""
    for deployment in ("waypoint-api", "waypoint-worker"):
        spec = k8s("Deployment", deployment)["spec"]["template"]["spec"]
        c = spec["containers"][0]
        drain = drain_timeout(c["command"])
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pause = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0.0
        needed = pause + drain + 5 + (drain if parsed(c["command"]).get("workers") != 0
                                      and c["command"][1] == "serve" else 0)
        assert spec["terminationGracePeriodSeconds"] > needed, (deployment, needed)
    for name in ("api", "worker"):
        service = compose()["services"][name]
        drain = drain_timeout(service["command"])
        assert seconds(service["stop_grace_period"]) > drain + 5, name


def test_pods_run_unprivileged_with_resources() -> None:
    for deployment in ("waypoint-api", "waypoint-worker"):
        spec = k8s("Deployment", deployment)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == image_uid()
        c = spec["containers"][0]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), (deployment, kind)
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        if c["securityContext"].get("readOnlyRootFilesystem"):
            assert "/tmp" in mounts, f"{deployment}: a read-only root needs a writable /tmp"


def test_secret_and_config_map_hold_what_the_pods_read() -> None:
    from waypoint.service.auth import keys_from_env
    from waypoint.service.config import load_settings
    from waypoint.service.graphs import load_graph

    secret = k8s("Secret", "waypoint")
    values = secret["stringData"]
    assert set(values) == {"WAYPOINT_API_KEYS", "WAYPOINT_POSTGRES_URL"}
    for key, value in values.items():
        assert "CHANGE-ME" in value, f"{key}: a placeholder must say so"
    assert "PLACEHOLDER" in (K8S / "secret.yaml").read_text()
    assert keys_from_env(values["WAYPOINT_API_KEYS"]), "the placeholder keys do not parse"
    assert values["WAYPOINT_POSTGRES_URL"].startswith("postgresql://")

    config_map = k8s("ConfigMap", "waypoint-config")
    for deployment in ("waypoint-api", "waypoint-worker"):
        spec = k8s("Deployment", deployment)["spec"]["template"]["spec"]
        c = spec["containers"][0]
        for env in c.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == "waypoint" and ref["key"] in values, env
        names = {e["name"] for e in c.get("env", [])}
        assert "WAYPOINT_POSTGRES_URL" in names, deployment
        assert ("WAYPOINT_API_KEYS" in names) == (deployment == "waypoint-api"), deployment
        # --config names a key of the mounted ConfigMap.
        config = Path(str(parsed(c["command"])["config"]))
        volumes = {v["name"]: v for v in spec["volumes"]}
        mount = next(m for m in c["volumeMounts"] if Path(m["mountPath"]) == config.parent)
        assert volumes[mount["name"]]["configMap"]["name"] == "waypoint-config"
        assert config.name in config_map["data"]

    # The ConfigMap's langgraph.json is a valid config serving the image's graphs, whose
    # targets import with /app (deploy/app) on the path, as PYTHONPATH sets it in the image.
    text = config_map["data"]["langgraph.json"]
    image_config = json.loads((APP / "langgraph.json").read_text())
    assert json.loads(text)["graphs"] == image_config["graphs"]
    sys.path.insert(0, str(APP))
    try:
        for settings in (_load_text(text), load_settings(APP / "langgraph.json")):
            assert settings.graphs
            for graph_id, target in settings.graphs.items():
                assert load_graph(graph_id, target, settings.base_dir).graph is not None
    finally:
        sys.path.remove(str(APP))


def _load_text(text: str) -> Any:
    import tempfile

    from waypoint.service.config import load_settings

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "langgraph.json"
        path.write_text(text)
        return load_settings(path)


# -- the probed endpoints answer, as the files start the processes -----------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def _post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


@contextmanager
def _process(argv: list[str], tmp_path: Path, env: dict[str, str]) -> Iterator[Any]:
    log = tmp_path / f"{argv[1]}.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "waypoint.cli", *argv[1:]], cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})
    proc.log = log  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_for(proc: Any, ready: Any, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{proc.log.read_text()}")
        result = ready()
        if result:
            return result
        time.sleep(0.05)
    pytest.fail(f"{what} not ready in {timeout} s:\n{proc.log.read_text()}")


def _answers(url: str) -> bool:
    try:
        return _get(url)[0] == 200
    except OSError:
        return False


def _stops_on_sigterm(proc: Any, within: float) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(within)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no exit {within} s after SIGTERM:\n{proc.log.read_text()}")
    # uvicorn re-raises the signal it handled once it has shut down cleanly: -SIGTERM.
    assert code in (0, -signal.SIGTERM), proc.log.read_text()


def test_the_image_default_command_serves_its_probes_without_a_key(tmp_path: Path) -> None:
    """The Dockerfile's CMD (on loopback and a free port, SQLite in a temporary folder):
    /ok and /ready answer a probe that sends no key, the API wants one, and the default
    echo graph runs."""
    keys = k8s("Secret", "waypoint")["stringData"]["WAYPOINT_API_KEYS"]
    key = keys.split(",")[0].split(":")[0]
    argv = image_cmd()
    argv[argv.index("--config") + 1] = str(APP / "langgraph.json")
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = "0"
    argv += ["--db", str(tmp_path / "server.db")]
    env = {"WAYPOINT_API_KEYS": keys, "WAYPOINT_POSTGRES_URL": ""}
    with _process(argv, tmp_path, env) as proc:
        def url() -> str | None:
            found = re.search(r"on (http://[\d.]+:\d+)", proc.log.read_text())
            return found.group(1) if found else None

        base = _wait_for(proc, url, "waypoint serve")
        assert _get(f"{base}/ok") == (200, {"ok": True})
        status, body = _get(f"{base}/ready")
        assert status == 200 and body["ready"] is True, f"GET /ready: {status} {body}"
        assert _get(f"{base}/info")[0] == 401
        _, answer = _post(f"{base}/runs/wait", {
            "assistant_id": "echo", "input": {"messages": [{"role": "user", "content": "hi"}]},
        }, {"x-api-key": key})
        assert answer["messages"][-1]["content"] == "echo: hi"
        _stops_on_sigterm(proc, drain_timeout(image_cmd()) + 10)


def test_the_worker_command_serves_its_probes(tmp_path: Path) -> None:
    """The k8s worker's command (config and health port swapped for local ones): /ok and
    /ready answer on --health-port, and SIGTERM drains and exits."""
    argv = list(container("waypoint-worker")["command"])
    parsed(argv)  # a clear failure if a flag (e.g. --health-port) is missing
    port = _free_port()
    argv[argv.index("--config") + 1] = str(APP / "langgraph.json")
    argv[argv.index("--health-port") + 1] = str(port)
    if "--health-host" in argv:
        argv[argv.index("--health-host") + 1] = "127.0.0.1"
    with postgres_schema() as url, _process(argv, tmp_path,
                                             {"WAYPOINT_POSTGRES_URL": url}) as proc:
        _wait_for(proc, lambda: _answers(f"http://127.0.0.1:{port}/ok"), "waypoint worker")
        status, body = _get(f"http://127.0.0.1:{port}/ready")
        assert status == 200 and body["ready"] is True, f"worker GET /ready: {status} {body}"
        _stops_on_sigterm(proc, drain_timeout(argv) + 10)
