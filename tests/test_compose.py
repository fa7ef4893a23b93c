"""examples/docker-compose.yaml, checked statically (there is no Docker engine here)."""

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


def test_the_collector_runs_the_shipped_config_with_consistent_ports():
    collector = SERVICES["collector"]
    (mount,) = collector["volumes"]
    source, target, _ = mount.split(":")
    assert (ROOT / "examples" / source).resolve() == ROOT / "collector-config.yaml"
    assert collector["command"] == [f"--config={target}"]
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
