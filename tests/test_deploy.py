"""The deployment files agree with the code: Dockerfile, compose, Kubernetes, systemd.

No Docker engine or cluster runs here, so these tests check what can be checked without one:
every file parses, references files that exist and ports that match, the configs they ship pass
``router.config.load``, probes and health checks hit real endpoints of the real app, and the
commands are the console script the README documents. ``systemd-analyze verify`` and
``kubectl kustomize`` run when installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from support import IN_CI, REPO, free_port

from router.config import Config, split_listen
from router.config.loader import load
from router.errors import ConfigError
from router.web.app import create_app

ROOT = Path(REPO)
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
ENV = {"BEACON_HASH_KEY": "k" * 32, "POSTGRES_PASSWORD": "pw", "POSTHOG_API_KEY": "phc_test"}
SERVE = ["beacon-router", "serve", "--config"]


# -- helpers -----------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(
        r"\\\n\s*",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def instruction(word: str) -> str:
    [value] = [rest for w, rest in final_stage() if w == word]
    return value


def load_with_env(path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str] = ENV) -> Config:
    monkeypatch.chdir(ROOT)  # the image's WORKDIR holds config/ as the repo root does
    return load(str(path), env=env)


def manifests() -> dict[str, dict[str, Any]]:
    """kind → the one manifest of that kind in deploy/kubernetes."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in found, f"two {doc['kind']} manifests"
            found[doc["kind"]] = doc
    return found


def k8s_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    path = tmp_path / "router.yaml"
    path.write_text(manifests()["ConfigMap"]["data"]["router.yaml"])
    return load_with_env(path, monkeypatch, {"BEACON_HASH_KEY": ENV["BEACON_HASH_KEY"]})


def container() -> dict[str, Any]:
    [c] = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c


def app_paths(config: Config) -> set[str]:
    app = create_app(config)
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


def drain_budget(config: Config) -> float:
    """Longest a clean stop takes: readiness drain, then requests, then sends in flight."""
    return config.server.drain_delay + 2 * config.server.shutdown_timeout


# -- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_builds_in_one_stage_and_runs_in_a_slim_python_311_pinned_by_version():
    froms = [rest for word, rest in dockerfile() if word == "FROM"]
    assert len(froms) >= 2, "multi-stage: build the wheel apart from the runtime"
    for image in (rest.split()[0] for rest in froms):
        # a patch version and a Debian release: a rebuild gets the same Python
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", image), image


def test_dependency_wheels_are_built_before_the_source_is_copied_with_the_constraints():
    steps = dockerfile()
    build = steps[: max(i for i, (word, _) in enumerate(steps) if word == "FROM")]
    copies = [(i, rest) for i, (word, rest) in enumerate(build) if word == "COPY"]
    [deps] = [i for i, (word, rest) in enumerate(build)
              if word == "RUN" and "pip wheel" in rest and "--no-deps" not in rest]
    # Before the dependency wheels only the dependency list is copied: a code change keeps them.
    before = " ".join(rest for i, rest in copies if i < deps).split()
    assert set(before[:-1]) == {"pyproject.toml", "constraints.txt"}
    assert any("router" in rest for i, rest in copies if i > deps)
    assert "-c constraints.txt" in build[deps][1]
    runtime = " ".join(rest for word, rest in final_stage() if word == "RUN")
    assert "-c /wheels/constraints.txt" in runtime and "--no-index" in runtime
    # the image can run the compose setup (PostgreSQL store, Redis spool)
    assert "beacon-router[fast,postgres,redis]" in runtime


# The first releases without a published advisory against them (issue 15): aiohttp's
# request-smuggling and parser fixes (3.12.14 and after, up to 3.13.3), orjson's deep-nesting fix.
FLOORS = {"aiohttp": (3, 13, 3), "orjson": (3, 11, 5), "pyyaml": (6, 0, 2)}


def test_dependency_floors_exclude_the_releases_with_known_advisories():
    floors = {}
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
            "dependencies"]:
        name, _, version = requirement.partition(">=")
        floors[name.strip().lower()] = tuple(int(p) for p in version.split(",")[0].split("."))
    for name, floor in FLOORS.items():
        assert floors[name] >= floor, f"{name}>={'.'.join(map(str, floor))} at least"
    # lean by default: the PostgreSQL and Redis clients are extras, lzstring a test tool
    assert not {"asyncpg", "redis", "lzstring"} & set(floors)


def test_the_constraints_pin_every_dependency_and_make_and_ci_install_with_them():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name.lower())] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("postgres", "redis", "fast", "test"):
        wanted += project["optional-dependencies"][extra]
    for requirement in wanted:
        name = re.sub(r"[-_.]+", "-", re.split(r"[<>=\[ ;]", requirement)[0].lower())
        if name != "beacon-router":
            assert name in pins, f"{name} is not pinned in constraints.txt"
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()
    assert "make test" in (ROOT / ".ci/run").read_text()


def test_dockerfile_copies_only_what_exists_and_is_not_docker_ignored():
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for word, rest in dockerfile():
        if word == "COPY" and "--from=" not in rest:
            *sources, _dest = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repo"
                assert source not in ignored, f"COPY {source}: excluded by .dockerignore"


def test_image_runs_as_a_non_root_user_with_data_on_a_volume():
    user = instruction("USER").split(":")[0]
    assert user not in ("", "0", "root")
    assert "/data" in instruction("VOLUME")
    assert instruction("WORKDIR") == "/app"
    # ./data in the shipped config must land on the volume.
    assert any("ln -s /data /app/data" in rest for word, rest in final_stage() if word == "RUN")


def test_image_command_is_the_documented_serve_of_the_shipped_config():
    cmd = json.loads(instruction("CMD"))
    assert cmd == [*SERVE, "config/router.yaml"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert cmd[0] in scripts
    assert "beacon-router serve --config" in (ROOT / "README.md").read_text()
    assert (ROOT / cmd[-1]).is_file()


def test_shipped_config_paths_resolve_in_the_image_working_directory(monkeypatch):
    config = load_with_env(ROOT / "config/router.yaml", monkeypatch)
    assert config.spool.path.lstrip("./").startswith("data/")
    assert os.path.exists("config/schemas/beacon-v1.json")  # COPY config ./config, cwd /app
    assert split_listen(config.server.listen)[1] == int(instruction("EXPOSE"))


def healthcheck_code() -> str:
    args = instruction("HEALTHCHECK")
    cmd = json.loads(args[args.index("CMD") + 3 :].strip())
    assert cmd[:2] == ["python", "-c"], "slim images have no curl: probe with python"
    assert "/healthz" in cmd[2]
    return str(cmd[2])


async def test_image_healthcheck_passes_against_a_live_router_and_fails_without_one(
    tmp_path, monkeypatch
):
    app = create_app(load_with_env(ROOT / "config/router.yaml", monkeypatch))
    monkeypatch.chdir(tmp_path)  # ./data of the shipped config goes here
    port = free_port()
    code = healthcheck_code().replace("127.0.0.1:8080", f"127.0.0.1:{port}")

    async def probe() -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return await proc.wait()

    assert await probe() != 0
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        assert await probe() == 0
    finally:
        await runner.cleanup()


# -- docker compose ----------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_runs_the_router_with_postgresql_and_redis_it_waits_for():
    services = compose()["services"]
    assert set(services) == {"router", "postgres", "redis"}
    router = services["router"]
    assert (DEPLOY / router["build"]["context"] / router["build"]["dockerfile"]).is_file()
    for name, dependency in router["depends_on"].items():
        assert dependency["condition"] == "service_healthy"
        assert "healthcheck" in services[name]


def test_compose_mounts_files_that_exist_and_declares_its_volumes():
    doc = compose()
    for name, service in doc["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), f"{name}: {source} does not exist"
            else:
                assert source in doc["volumes"], f"{name}: volume {source} not declared"


def test_compose_router_serves_the_mounted_config_on_the_published_port(monkeypatch):
    router = compose()["services"]["router"]
    command = router["command"]
    assert command[:3] == SERVE
    mounts = {m.split(":")[1]: m.split(":")[0] for m in router["volumes"]}
    mounted = os.path.join(instruction("WORKDIR"), command[3])
    assert mounted in mounts, "the config the command names is not the mounted one"
    config = load_with_env(DEPLOY / mounts[mounted], monkeypatch)
    _published, container_port = router["ports"][0].split(":")
    assert int(container_port) == config.server.port == int(instruction("EXPOSE"))
    assert "/data" in mounts


def test_compose_config_reaches_the_redis_and_postgresql_services(monkeypatch):
    config = load_with_env(DEPLOY / "router.compose.yaml", monkeypatch)
    assert config.spool.type == "redis"
    assert re.match(r"redis://redis:6379/", config.spool.url or "")
    [store] = [b for b in config.backends.values() if b.type == "store"]
    url = store.options.url  # type: ignore[union-attr]
    assert re.match(r"postgresql://beacon@postgres:5432/beacons$", url)
    postgres = compose()["services"]["postgres"]["environment"]
    assert (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]) == ("beacon", "beacons")


def test_compose_passes_every_variable_its_config_requires(monkeypatch):
    text = (DEPLOY / "router.compose.yaml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    assert required <= set(compose()["services"]["router"]["environment"])
    with pytest.raises(ConfigError, match="BEACON_HASH_KEY"):
        load_with_env(DEPLOY / "router.compose.yaml", monkeypatch, {"POSTGRES_PASSWORD": "pw"})


def test_compose_stop_grace_covers_the_routers_drain(monkeypatch):
    config = load_with_env(DEPLOY / "router.compose.yaml", monkeypatch)
    grace = compose()["services"]["router"]["stop_grace_period"]
    assert int(grace.removesuffix("s")) > drain_budget(config)


# -- Kubernetes --------------------------------------------------------------------------------

REQUIRED = {  # beyond apiVersion/kind/metadata.name: what the API server refuses without
    "Deployment": [("spec", "selector", "matchLabels"), ("spec", "template", "spec", "containers")],
    "Service": [("spec", "ports")],
    "ConfigMap": [("data",)],
    "PersistentVolumeClaim": [
        ("spec", "accessModes"),
        ("spec", "resources", "requests", "storage"),
    ],
}


def dig(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def test_every_manifest_has_what_kubernetes_requires_of_its_kind():
    found = manifests()
    assert set(REQUIRED) <= set(found)
    for kind, doc in found.items():
        assert doc["apiVersion"] and re.match(r"^[a-z0-9-]+$", doc["metadata"]["name"]), kind
        for path in REQUIRED.get(kind, []):
            assert dig(doc, path), f"{kind}: {'.'.join(path)} is required"
    for c in found["Deployment"]["spec"]["template"]["spec"]["containers"]:
        assert c["name"] and c["image"]
    for port in found["Service"]["spec"]["ports"]:
        assert isinstance(port["port"], int)


def test_kustomization_lists_every_manifest_and_only_those():
    resources = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(resources) == on_disk


def test_the_service_selects_the_pods_and_targets_their_port():
    found = manifests()
    pod_labels = found["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selector = found["Deployment"]["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert found["Service"]["spec"]["selector"].items() <= pod_labels.items()
    port_names = {p["name"] for p in container()["ports"]}
    for port in found["Service"]["spec"]["ports"]:
        assert port["targetPort"] in port_names


def test_probes_hit_the_routers_liveness_and_readiness_endpoints(tmp_path, monkeypatch):
    c = container()
    paths = app_paths(k8s_config(tmp_path, monkeypatch))
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    port_names = {p["name"] for p in c["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in c:
            assert c[probe]["httpGet"]["path"] in paths
            assert c[probe]["httpGet"]["port"] in port_names


def test_the_pod_serves_the_configmap_config_on_its_container_port(tmp_path, monkeypatch):
    c = container()
    config = k8s_config(tmp_path, monkeypatch)
    assert c["command"][:3] == SERVE
    config_dir, key = os.path.split(c["command"][3])
    [mount] = [m for m in c["volumeMounts"] if m["mountPath"] == config_dir]
    volumes = {
        v["name"]: v for v in manifests()["Deployment"]["spec"]["template"]["spec"]["volumes"]
    }
    assert (
        volumes[mount["name"]]["configMap"]["name"] == manifests()["ConfigMap"]["metadata"]["name"]
    )
    assert key in manifests()["ConfigMap"]["data"]
    assert [p["containerPort"] for p in c["ports"]] == [config.server.port]


def test_the_data_volume_is_the_claim_and_every_mount_has_a_volume():
    spec = manifests()["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in container()["volumeMounts"]:
        assert mount["name"] in volumes
    [data] = [m for m in container()["volumeMounts"] if m["mountPath"] == "/data"]
    claim = volumes[data["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim == manifests()["PersistentVolumeClaim"]["metadata"]["name"]


def test_secrets_come_from_a_secret_and_cover_what_the_config_requires():
    text = manifests()["ConfigMap"]["data"]["router.yaml"]
    required = set(re.findall(r"\$\{(\w+):\?", text))
    env = {e["name"]: e for e in container()["env"]}
    assert required <= set(env)
    for name in ("BEACON_HASH_KEY", "POSTHOG_API_KEY"):
        assert "secretKeyRef" in env[name]["valueFrom"], f"{name} must not be a literal"


def test_the_pod_runs_non_root_on_a_read_only_root_filesystem():
    spec = manifests()["Deployment"]["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert str(spec["securityContext"]["runAsUser"]) == instruction("USER").split(":")[0]
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_termination_grace_covers_the_routers_drain(tmp_path, monkeypatch):
    config = k8s_config(tmp_path, monkeypatch)
    spec = manifests()["Deployment"]["spec"]
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > drain_budget(config)
    assert config.server.drain_delay > 0, "readiness must fail before the listener closes"
    assert spec["strategy"]["type"] == "Recreate", "one pod at a time on the spool volume"


def test_the_image_tag_is_the_package_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert container()["image"] == f"beacon-router:{version}"


def required_tool(name: str, path: str | None = None) -> str:
    """The tool's path; a skip on a developer's machine without it, a failure in CI."""
    found = shutil.which(name, path=path)
    if found is None:
        message = f"{name} is not installed" + (f" in {path}" if path else "")
        if IN_CI:
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(message)
    return found


def test_kubectl_kustomize_renders_the_manifests():
    kubectl = required_tool("kubectl")
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(done.stdout)}
    assert kinds == set(manifests())


# -- systemd -----------------------------------------------------------------------------------


def unit() -> dict[str, list[str]]:
    """Directive → its values, over every section of the unit file."""
    values: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd/beacon-router.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_systemd_unit_reloads_with_a_verdict_and_serves_the_documented_way():
    u = unit()
    # `systemctl reload` waits for the verdict (tests/ops/test_reload_command.py)
    [reload] = u["ExecReload"]
    assert reload.split()[1:] == ["reload", "--pid", "$MAINPID"]
    assert reload.split()[0] == u["ExecStart"][0].split()[0]
    # the router sends READY=1 / RELOADING=1 / STOPPING=1 itself (tests/ops/test_sdnotify.py);
    # only the main process (the supervisor under --workers) speaks for the service
    assert u["Type"] == ["notify"] and u["NotifyAccess"] == ["main"]
    assert "AF_UNIX" in u["RestrictAddressFamilies"][0].split()  # $NOTIFY_SOCKET
    [start] = u["ExecStart"]
    assert os.path.basename(start.split()[0]) == "beacon-router"
    assert start.split()[1:3] == SERVE[1:]


def test_systemd_unit_is_hardened_and_stops_after_the_drain(monkeypatch):
    u = unit()
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "DynamicUser": "yes",
        "StateDirectory": "beacon-router",
    }
    for key, value in expected.items():
        assert u.get(key) == [value], key
    config = load_with_env(ROOT / "config/router.yaml", monkeypatch)
    assert int(u["TimeoutStopSec"][0]) > drain_budget(config)


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    analyze = required_tool("systemd-analyze")
    script = required_tool("beacon-router", path=os.path.dirname(sys.executable))
    # verify insists the ExecStart binary exists: point it at this venv's console script.
    text = (DEPLOY / "systemd/beacon-router.service").read_text()
    (tmp_path / "beacon-router.service").write_text(
        text.replace("/opt/beacon-router/venv/bin/beacon-router", script)
    )
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / "beacon-router.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "beacon-router.service" not in done.stderr, done.stderr


# -- docs --------------------------------------------------------------------------------------


def test_readme_links_the_deployment_guide_and_it_names_every_deploy_file():
    assert "docs/deploy.md" in (ROOT / "README.md").read_text()
    guide = (ROOT / "docs/deploy.md").read_text()
    for path in [
        "Dockerfile",
        "deploy/docker-compose.yml",
        "deploy/router.compose.yaml",
        "deploy/kubernetes/",
        "deploy/systemd/beacon-router.service",
        "--workers",
    ]:
        assert path in guide, path
