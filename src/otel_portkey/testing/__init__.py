"""Test peers for otel-portkey and for users' own tests: a scripted model and the OSS gateway."""

from .agent_script import ANSWER, QUESTION
from .gateway import GATEWAY_VERSION, GatewayUnavailable, OssGateway, install_gateway, route_headers
from .model_server import ReceivedRequest, ScriptedModelServer

__all__ = [
    "ANSWER",
    "GATEWAY_VERSION",
    "QUESTION",
    "GatewayUnavailable",
    "OssGateway",
    "ReceivedRequest",
    "ScriptedModelServer",
    "install_gateway",
    "route_headers",
]
