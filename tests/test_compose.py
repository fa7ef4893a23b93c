"""examples/docker-compose.yaml, checked statically (there is no Docker engine here)."""

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "examples" / "docker-compose.yaml").read_text())
COLLECTOR = yaml.safe_load((ROOT / "collector-config.yaml").read_text())
SERVICES = COMPOSE["services"]


def port_of(endpoint):
    return int(endpoint.rsplit(":", 1)[1].rstrip("}"))


def test_every_image_is_pinned_to_a_version():
    for name, service in SERVICES.items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+(-[\w.]+)?", image), f"{name}: {image} is not pinned"


def pin(name):
    """A version pinned in components/build.sh (``NAME=1.2.3``), the release the tests build and run."""
    (value,) = re.findall(rf"^{name}=(\S+)", (ROOT / "components" / "build.sh").read_text(), re.MULTILINE)
    return value


def test_compose_runs_the_releases_the_tests_run():
    """The Collector and Jaeger images are the releases components/build.sh builds for the tests."""
    assert SERVICES["collector"]["image"] == f"otel/opentelemetry-collector-contrib:{pin('OTELCOL_VERSION')}"
    assert SERVICES["jaeger"]["image"] == f"jaegertracing/jaeger:{pin('JAEGER_VERSION')}"


def test_the_collector_runs_the_shipped_config_with_consistent_ports():
    collector = SERVICES["collector"]
    mounts = {
        target: (ROOT / "examples" / source).resolve()
        for source, target, _ in (m.split(":") for m in collector["volumes"] if m.endswith(":ro"))
    }
    config, by_key = collector["command"]
    assert mounts[config.removeprefix("--config=")] == ROOT / "collector-config.yaml"
    # the second file depends on whether PORTKEY_API_KEY is set, as compose interpolates it
    without_key = by_key.replace("${PORTKEY_API_KEY:+-set}", "").removeprefix("--config=")
    with_key = by_key.replace("${PORTKEY_API_KEY:+-set}", "-set").removeprefix("--config=")
    assert mounts[without_key] == ROOT / "examples" / "collector-without-portkey.yaml"
    assert mounts[with_key] == ROOT / "collector-config.yaml"
    assert "PORTKEY_API_KEY}" not in by_key.replace("${PORTKEY_API_KEY:+-set}", ""), "the key never in argv"
    env = collector["environment"]
    assert port_of(env["OTELCOL_OTLP_HTTP_ENDPOINT"]) == 4318
    assert port_of(env["OTELCOL_OTLP_GRPC_ENDPOINT"]) == 4317
    host, port = env["JAEGER_OTLP_GRPC_ENDPOINT"].split(":")
    assert host == "jaeger"
    assert int(port) == 4317  # Jaeger v2's OTLP/gRPC receiver
    for variable in env:
        assert f"${{env:{variable}" in (ROOT / "collector-config.yaml").read_text(), (
            f"{variable} is not read by the config"
        )


def test_the_agent_exports_to_the_collector_and_calls_the_gateway():
    agent = SERVICES["agent"]
    env = agent["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert port_of(COLLECTOR["receivers"]["otlp"]["protocols"]["http"]["endpoint"]) == 4318
    assert env["PORTKEY_GATEWAY_URL"] == "http://gateway:8787/v1"
    assert "8787" in SERVICES["gateway"]["ports"][0]
    assert "examples/langchain_agent.py" in " ".join(agent["command"])
    assert (ROOT / "examples" / "langchain_agent.py").exists()
    assert set(agent["depends_on"]) == {"collector", "gateway"}


def test_published_ports_stay_on_the_host_loopback():
    for name, service in SERVICES.items():
        for mapping in service.get("ports", []):
            assert mapping.startswith("127.0.0.1:"), f"{name} publishes {mapping} beyond loopback"


def named_volumes(service):
    """{mount point: volume} for the named volumes (not bind mounts) a service mounts."""
    mounts = (m.split(":") for m in SERVICES[service].get("volumes", []))
    return {target: source for source, target, *_ in mounts if not source.startswith(".")}


def test_the_collector_keeps_its_queues_on_a_volume():
    env = SERVICES["collector"]["environment"]
    storage = env["OTELCOL_STORAGE_DIR"]
    (volume,) = [v for target, v in named_volumes("collector").items() if storage.startswith(f"{target}/")]
    assert volume in COMPOSE["volumes"]
    extension = COLLECTOR["extensions"]["file_storage"]
    assert extension["directory"] == "${env:OTELCOL_STORAGE_DIR:-/var/lib/otelcol/file_storage}"
    assert extension["create_directory"] is True, "the volume is mounted above the directory"
    for name in ("otlp_grpc/jaeger", "otlp_http/portkey"):
        queue = COLLECTOR["exporters"][name]["sending_queue"]
        assert queue["storage"] == "file_storage", f"{name}'s queue is not persistent"
        assert queue["queue_size"] > 0


def test_jaeger_runs_the_examples_badger_config_on_a_volume():
    jaeger = SERVICES["jaeger"]
    (mount,) = [m for m in jaeger["volumes"] if m.endswith(":ro")]
    source, target, _ = mount.split(":")
    assert (ROOT / "examples" / source).resolve() == ROOT / "examples" / "jaeger-config.yaml"
    assert jaeger["command"] == [f"--config={target}"]
    config = yaml.safe_load((ROOT / "examples" / "jaeger-config.yaml").read_text())
    (backend,) = config["extensions"]["jaeger_storage"]["backends"].values()
    assert backend["badger"]["ephemeral"] is False
    assert "${env:JAEGER_BADGER_DIR" in backend["badger"]["directories"]["keys"]
    badger_dir = jaeger["environment"]["JAEGER_BADGER_DIR"]
    (volume,) = [v for target, v in named_volumes("jaeger").items() if badger_dir.startswith(f"{target}/")]
    assert volume in COMPOSE["volumes"]
    assert jaeger["environment"]["JAEGER_LISTEN_HOST"] == "0.0.0.0", "the Collector reaches it by name"


def test_the_volumes_are_handed_to_the_user_the_images_run_as_before_they_start():
    init = SERVICES["volume-permissions"]
    for service in ("jaeger", "collector"):
        assert SERVICES[service]["depends_on"]["volume-permissions"] == {
            "condition": "service_completed_successfully"
        }
        for target, volume in named_volumes(service).items():
            assert f"{volume}:{target}" in init["volumes"]
            assert target in init["command"]


def test_the_collector_publishes_the_apps_metrics_for_prometheus():
    env = SERVICES["collector"]["environment"]
    assert port_of(env["OTELCOL_PROMETHEUS_ENDPOINT"]) == 8889
    assert "127.0.0.1:8889:8889" in SERVICES["collector"]["ports"]
    exporter = COLLECTOR["exporters"]["prometheus"]
    assert exporter["endpoint"] == "${env:OTELCOL_PROMETHEUS_ENDPOINT:-localhost:8889}"
    assert exporter["enable_open_metrics"] is True
    assert COLLECTOR["service"]["pipelines"]["metrics"]["exporters"] == ["prometheus"]


DOCKERFILE = (ROOT / "examples" / "gateway-otel" / "Dockerfile").read_text()


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the traced gateway's Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", re.sub(r"^\s*#.*\n", "", DOCKERFILE, flags=re.MULTILINE))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in text.splitlines()
        if line.strip()
    ]


def test_the_traced_gateway_image_derives_the_pinned_official_one_with_the_tested_packages():
    from otel_portkey._peers.oss_gateway import GATEWAY_VERSION, NODE_OTEL_PACKAGES

    steps = dockerfile_instructions()
    assert steps[0] == ("FROM", f"portkeyai/gateway:{GATEWAY_VERSION}")
    (install,) = [args for kind, args in steps if kind == "RUN" and "npm install" in args]
    pinned = dict(re.findall(r"(@opentelemetry/[\w-]+)@(\S+)", install))
    assert pinned == NODE_OTEL_PACKAGES, "the image installs what the tests run"
    assert "--ignore-scripts" in install


def test_the_traced_gateway_image_runs_the_packaged_preload():
    from otel_portkey._peers.oss_gateway import gateway_preload

    steps = dockerfile_instructions()
    (copy,) = [args.split() for kind, args in steps if kind == "COPY"]
    assert (ROOT / copy[0]).resolve() == gateway_preload().resolve()
    (entrypoint,) = [json.loads(args) for kind, args in steps if kind == "ENTRYPOINT"]
    assert entrypoint[:3] == ["node", "--import", f"file://{copy[1]}"]
    assert entrypoint[3] == "build/start-server.js"  # the official image's start:node script
    workdirs = [args for kind, args in steps if kind == "WORKDIR"]
    assert Path(copy[1]).parent == Path(workdirs[0]), "the preload sits beside its node_modules"
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(args for kind, args in steps if kind == "ENV")))
    assert env["OTEL_SERVICE_NAME"] == "portkey-gateway"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert not [name for name in env if "HEADERS" in name or "KEY" in name], "no secret baked in"


def test_compose_builds_the_traced_gateway_and_sends_its_spans_to_the_collector():
    gateway = SERVICES["gateway"]
    build = gateway["build"]
    assert (ROOT / "examples" / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == ROOT / "examples" / "gateway-otel" / "Dockerfile"
    env = gateway["environment"]
    host, port = env["OTEL_EXPORTER_OTLP_ENDPOINT"].removeprefix("http://").split(":")
    assert host == "collector"
    assert int(port) == port_of(SERVICES["collector"]["environment"]["OTELCOL_OTLP_HTTP_ENDPOINT"])
    assert env["OTEL_SERVICE_NAME"] == "portkey-gateway"
    assert "collector" in gateway["depends_on"]
