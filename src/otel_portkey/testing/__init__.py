"""Test peers for otel-portkey and for users' own tests, all on loopback.

``ScriptedModelServer`` (an OpenAI-compatible model playing the seed agent's script), ``OssGateway``
(the pinned OSS Portkey gateway; ``install_gateway`` installs it once), ``RecordingProxy`` (a hop
that records what the gateway received and answered), ``OtlpReceiver`` (an OTLP/HTTP receiver that
decodes the spans it gets), ``route_headers`` (the headers that make the OSS gateway forward to a
model server), and the two ways a gateway reads a request (``read_as_oss``, ``read_as_hosted``).
"""

from .._peers.agent_script import ANSWER, QUESTION
from .._peers.gateway_reading import GatewayReading, parse_traceparent, read_as_hosted, read_as_oss
from .._peers.model_server import ReceivedRequest, ScriptedModelServer
from .._peers.oss_gateway import (
    GATEWAY_VERSION,
    GatewayUnavailable,
    OssGateway,
    cache_root,
    free_port,
    install_gateway,
    route_headers,
)
from .._peers.otlp_receiver import OtlpReceiver, ReceivedSpan
from .._peers.recording_proxy import ForwardedRequest, RecordingProxy

__all__ = [
    "ANSWER",
    "GATEWAY_VERSION",
    "QUESTION",
    "ForwardedRequest",
    "GatewayReading",
    "GatewayUnavailable",
    "OssGateway",
    "OtlpReceiver",
    "ReceivedRequest",
    "ReceivedSpan",
    "RecordingProxy",
    "ScriptedModelServer",
    "cache_root",
    "free_port",
    "install_gateway",
    "parse_traceparent",
    "read_as_hosted",
    "read_as_oss",
    "route_headers",
]
