"""The bridge's httpx hooks driven directly, with no instrumentation, bound to a bridge of the
test's own (``RequestInfo`` / ``ResponseInfo`` as the httpx instrumentation passes them)."""

from otel_portkey._otel.bridge import Bridge
from otel_portkey._otel.client_hooks import httpx_hooks


class DirectHooks:
    def __init__(self, settings, resource=None):
        self.bridge = Bridge(settings, resource)
        hooks = httpx_hooks(lambda: self.bridge)
        self.request_hook = hooks["request_hook"]
        self.response_hook = hooks["response_hook"]
