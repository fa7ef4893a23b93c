// OpenTelemetry for an OSS Portkey gateway, preloaded: node --import file:///.../gateway_otel.mjs
// node_modules/@portkey-ai/gateway/build/start-server.js. No code inside the gateway changes.
//
// The gateway's SERVER span continues the caller's traceparent and carries portkey.span_id and
// portkey.trace_id (the x-portkey-span-id / x-portkey-trace-id it received, when W3C-shaped);
// each upstream attempt is a CLIENT span under it (undici: Node's fetch) with its status, ERROR
// for 4xx/5xx. Metrics: http.server.request.duration and http.client.request.duration.
// Traces and metrics go as OTLP/HTTP protobuf where OTEL_EXPORTER_OTLP_ENDPOINT says (default
// http://localhost:4318), as OTEL_SERVICE_NAME (default portkey-gateway); the Node SDK's other
// OTEL_* variables apply (OTEL_BSP_SCHEDULE_DELAY, OTEL_METRIC_EXPORT_INTERVAL, *_EXPORTER=none).
//
// Nothing secret is recorded: no header is captured, and every query value of a URL attribute
// (url.full, url.query, ...; a provider may take its key in the query, as Google's ?key= does)
// becomes REDACTED, as does a URL's user and password, on every span, whatever instrumentation
// made it.
//
// The OpenTelemetry packages are loaded from the working directory's node_modules (where npm
// installed them beside the gateway), else from the node_modules above this file.
import { createRequire } from "node:module";
import { IncomingMessage } from "node:http";
import path from "node:path";

function loader() {
  const candidates = [path.join(process.cwd(), "package.json"), import.meta.url];
  for (const where of candidates) {
    const require = createRequire(where);
    try {
      require.resolve("@opentelemetry/sdk-node");
      return require;
    } catch {
      // not there: the next place
    }
  }
  throw new Error(
    "OpenTelemetry for the gateway: @opentelemetry/sdk-node is not installed in " +
      `${process.cwd()}/node_modules (npm install it beside @portkey-ai/gateway)`,
  );
}

const require = loader();
const { NodeSDK } = require("@opentelemetry/sdk-node");
const { BatchSpanProcessor } = require("@opentelemetry/sdk-trace");
const { OTLPTraceExporter } = require("@opentelemetry/exporter-trace-otlp-proto");
const { HttpInstrumentation } = require("@opentelemetry/instrumentation-http");
const { UndiciInstrumentation } = require("@opentelemetry/instrumentation-undici");

export const REDACTED = "REDACTED";
const FULL_URL_KEYS = new Set(["url.full", "url.original", "http.url"]);
const QUERY_KEYS = new Set(["url.query"]);
const TARGET_KEYS = new Set(["http.target"]); // path and query
const HEADER_PREFIXES = ["http.request.header.", "http.response.header."];

/** "a=1&b" -> "a=REDACTED&REDACTED": every value, and a bare item, which may be a key itself. */
export function redactQuery(query) {
  return query
    .split("&")
    .map((item) => {
      if (item === "") return item;
      const equals = item.indexOf("=");
      return equals < 0 ? REDACTED : `${item.slice(0, equals)}=${REDACTED}`;
    })
    .join("&");
}

/** A path with its query ("/v1/x?key=k") with every query value redacted (and no fragment). */
function redactTarget(target) {
  const noFragment = target.split("#", 1)[0];
  const question = noFragment.indexOf("?");
  return question < 0 ? noFragment : `${noFragment.slice(0, question)}?${redactQuery(noFragment.slice(question + 1))}`;
}

/** A full URL with its query values, user and password redacted; unparsable: its part before any query. */
export function redactUrl(value) {
  let url;
  try {
    url = new URL(value);
  } catch {
    return redactTarget(value.replace(/\/\/[^/@?#]*@/, `//${REDACTED}:${REDACTED}@`));
  }
  if (url.username) url.username = REDACTED;
  if (url.password) url.password = REDACTED;
  url.hash = "";
  const query = url.search.slice(1);
  url.search = "";
  return query ? `${url.toString()}?${redactQuery(query)}` : url.toString();
}

/** What an attribute may keep: its value, or that value redacted. */
export function safeAttribute(key, value) {
  if (HEADER_PREFIXES.some((prefix) => key.startsWith(prefix))) return REDACTED;
  if (typeof value !== "string") return value;
  if (FULL_URL_KEYS.has(key)) return redactUrl(value);
  if (QUERY_KEYS.has(key)) return redactQuery(value.startsWith("?") ? value.slice(1) : value);
  if (TARGET_KEYS.has(key)) return redactTarget(value);
  return value;
}

// Any URL inside free text (an exception message) with a query or a user: redacted.
const URL_IN_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi;

function safeText(text) {
  if (typeof text !== "string") return text;
  return text.replace(URL_IN_TEXT, (url) => (/[?@]/.test(url) ? redactUrl(url) : url));
}

function redactAttributes(attributes, set) {
  for (const [key, value] of Object.entries(attributes ?? {})) {
    const safe = safeAttribute(key, value);
    if (safe !== value) set(key, safe);
  }
}

/** Rewrites a span's URL attributes when it starts (before anything reads them) and again as it
 * ends (for attributes set later), and the URLs in its events' text. */
class RedactingSpanProcessor {
  onStart(span) {
    this._redact(span);
  }
  onEnding(span) {
    this._redact(span);
    for (const event of span.events ?? []) {
      redactAttributes(event.attributes, (key, safe) => {
        event.attributes[key] = safe;
      });
      for (const [key, value] of Object.entries(event.attributes ?? {})) {
        if (typeof value === "string") event.attributes[key] = safeText(value);
      }
    }
  }
  _redact(span) {
    redactAttributes(span.attributes, (key, safe) => span.setAttribute(key, safe));
    if (span.status?.message) span.status.message = safeText(span.status.message);
  }
  onEnd() {}
  forceFlush() {
    return Promise.resolve();
  }
  shutdown() {
    return Promise.resolve();
  }
}

const TRACE_ID = /^[0-9a-f]{32}$/;
const SPAN_ID = /^[0-9a-f]{16}$/;

/** A W3C-shaped id (lowercase hex of the length, not all zeros) from a received header, else undefined. */
export function receivedId(headers, name, shape) {
  const raw = headers[name];
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (typeof value !== "string") return undefined;
  const id = value.trim();
  return shape.test(id) && /[^0]/.test(id) ? id : undefined;
}

/** The server span's Portkey ids: the node of a Portkey log is this span in Jaeger. */
function portkeyIds(span, request) {
  if (!(request instanceof IncomingMessage)) return; // the server side only
  const spanId = receivedId(request.headers, "x-portkey-span-id", SPAN_ID);
  const traceId = receivedId(request.headers, "x-portkey-trace-id", TRACE_ID);
  if (spanId !== undefined) span.setAttribute("portkey.span_id", spanId);
  if (traceId !== undefined) span.setAttribute("portkey.trace_id", traceId);
}

/** Redaction first, then OTLP/HTTP protobuf in batches (none with OTEL_TRACES_EXPORTER=none). */
function spanProcessors() {
  if ((process.env.OTEL_TRACES_EXPORTER ?? "").trim().toLowerCase() === "none") return [];
  const delay = Number.parseInt(process.env.OTEL_BSP_SCHEDULE_DELAY ?? "", 10);
  const batch = new BatchSpanProcessor({
    exporter: new OTLPTraceExporter(),
    ...(Number.isFinite(delay) && delay >= 0 ? { scheduledDelayMillis: delay } : {}),
  });
  return [new RedactingSpanProcessor(), batch];
}

function start() {
  const sdk = new NodeSDK({
    serviceName: process.env.OTEL_SERVICE_NAME || "portkey-gateway",
    spanProcessors: spanProcessors(),
    logRecordProcessors: [], // the gateway writes no OpenTelemetry logs
    instrumentations: [
      new HttpInstrumentation({ requestHook: portkeyIds }),
      new UndiciInstrumentation(),
    ],
  });
  sdk.start();
  // Spans still batched are sent before the gateway exits (SIGTERM, Ctrl-C): within 5 s, then it exits anyway.
  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    const deadline = new Promise((resolve) => setTimeout(resolve, 5000).unref());
    Promise.race([sdk.shutdown().catch(() => {}), deadline]).finally(() =>
      process.exit(signal === "SIGINT" ? 130 : 0),
    );
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  return sdk;
}

// OTEL_SDK_DISABLED=true (any case, as the SDK reads it): nothing starts; the functions above stay usable.
if ((process.env.OTEL_SDK_DISABLED ?? "").trim().toLowerCase() !== "true") start();
