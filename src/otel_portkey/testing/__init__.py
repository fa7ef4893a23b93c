"""Test peers for otel-portkey and for users' own tests, all on loopback.

``ScriptedModelServer`` (an OpenAI-compatible model playing the seed agent's script), ``OssGateway``
(the pinned OSS Portkey gateway), ``RecordingProxy`` (a hop that records what the gateway received
and answered), ``OtlpReceiver`` (an OTLP/HTTP receiver that decodes the spans it gets), and
``route_headers`` (the headers that make the OSS gateway forward to a model server).
"""

from .agent_script import ANSWER, QUESTION
from .gateway import GATEWAY_VERSION, GatewayUnavailable, OssGateway, install_gateway, route_headers
from .model_server import ReceivedRequest, ScriptedModelServer
from .otlp_receiver import OtlpReceiver, ReceivedSpan
from .recording_proxy import ForwardedRequest, RecordingProxy

__all__ = [
    "ANSWER",
    "GATEWAY_VERSION",
    "QUESTION",
    "ForwardedRequest",
    "GatewayUnavailable",
    "OssGateway",
    "OtlpReceiver",
    "ReceivedRequest",
    "ReceivedSpan",
    "RecordingProxy",
    "ScriptedModelServer",
    "install_gateway",
    "route_headers",
]
