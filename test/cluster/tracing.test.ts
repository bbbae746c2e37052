/**
 * Traces over OTLP: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, one start from the CLI is one trace
 * across two processes — the CLI's start, the runner's launch of the instance and its process
 * spawn — received by a real OTLP/HTTP (JSON) receiver started here.
 */
import * as ChildProcess from "node:child_process"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { clusterEnv, useCluster } from "../support/cluster.ts"
import { eventually, root } from "../support/processes.ts"

interface ReceivedSpan {
  readonly service: string
  readonly name: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string | undefined
}

/** An OTLP/HTTP receiver of JSON trace exports: `POST /v1/traces`. */
const receiver = () => {
  const spans: Array<ReceivedSpan> = []
  const server = Http.createServer((request, response) => {
    let body = ""
    request.on("data", (chunk) => (body += chunk))
    request.on("end", () => {
      if (request.method === "POST" && request.url === "/v1/traces") {
        const exported = JSON.parse(body) as {
          resourceSpans: Array<{
            resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> }
            scopeSpans: Array<{ spans: Array<{ name: string; traceId: string; spanId: string; parentSpanId?: string }> }>
          }>
        }
        for (const resource of exported.resourceSpans) {
          const service = resource.resource.attributes.find((a) => a.key === "service.name")?.value.stringValue ?? "?"
          for (const scope of resource.scopeSpans) {
            for (const span of scope.spans) {
              spans.push({ service, name: span.name, traceId: span.traceId, spanId: span.spanId, parentSpanId: span.parentSpanId || undefined })
            }
          }
        }
      }
      response.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  return { server, spans }
}

/**
 * The spans of the trace `service`'s `shardhub.start` began, once they include `names` and
 * every parent they name (the spans of one trace come in several exports, children first).
 */
const traceOf = (spans: ReadonlyArray<ReceivedSpan>, service: string, names: ReadonlyArray<string>) =>
  eventually(async () => {
    const start = spans.find((span) => span.name === "shardhub.start" && span.service === service)
    if (start === undefined) return undefined
    const inTrace = spans.filter((span) => span.traceId === start.traceId)
    const ids = new Set(inTrace.map((span) => span.spanId))
    const found = new Set(inTrace.map((span) => span.name))
    const complete = names.every((name) => found.has(name)) &&
      inTrace.every((span) => span.parentSpanId === undefined || ids.has(span.parentSpanId))
    return complete ? inTrace : undefined
  }, { what: `a connected trace from ${service}'s start with ${names.join(", ")}`, timeoutMs: 30_000 }).catch((error) => {
    throw new Error(`${error.message}; received: ${JSON.stringify(spans.filter((span) => span.name !== "postgres" && span.name !== "sql.transaction").map((span) => [span.service, span.name, span.traceId.slice(0, 8), span.parentSpanId?.slice(0, 6)]))}`)
  })

describe("tracing", () => {
  const cluster = useCluster("tracing", { runners: 0 })
  const otlp = receiver()
  let endpoint = ""

  beforeAll(async () => {
    await new Promise<void>((resolve) => otlp.server.listen(0, "127.0.0.1", resolve))
    endpoint = `http://127.0.0.1:${(otlp.server.address() as AddressInfo).port}`
    await cluster.startRunner("traced-runner", { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint })
    await cluster.waitForShards()
  }, 120_000)
  afterAll(() => new Promise<void>((resolve) => otlp.server.close(() => resolve())))

  it("exports one connected trace per start across the CLI and the runner", async () => {
    cluster.printOnFailure()
    const id = await new Promise<string>((resolve, reject) => {
      const child = ChildProcess.spawn(process.execPath, [Path.join(root, "src/cli/main.ts"), "run", "--", "sleep", "30"], {
        env: { ...process.env, ...clusterEnv(cluster.databaseUrl, cluster.home), OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }
      })
      let out = ""
      let err = ""
      child.stdout.on("data", (chunk) => (out += chunk))
      child.stderr.on("data", (chunk) => (err += chunk))
      child.on("exit", (code) => code === 0 ? resolve(out.trim()) : reject(new Error(`shardhub run exited ${code}: ${err}`)))
    })
    const trace = await traceOf(otlp.spans, "shardhub-cli", ["shardhub.instance.launch", "shardhub.process.spawn"])
    const services = new Set(trace.map((span) => span.service))
    expect([...services].sort()).toEqual(["shardhub-cli", "shardhub-runner"])
    // Connected: every span but the root has its parent in the trace.
    const ids = new Set(trace.map((span) => span.spanId))
    expect(trace.filter((span) => span.parentSpanId !== undefined && !ids.has(span.parentSpanId))).toEqual([])
    expect(trace.filter((span) => span.parentSpanId === undefined).map((span) => span.name)).toEqual(["shardhub.start"])
    expect(id).toMatch(/^[0-9a-f-]{36}$/)
  })

  it("exports one connected trace per start across the gateway and the runner", async () => {
    cluster.printOnFailure()
    const { url } = await cluster.gateway("traced-gateway", { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint })
    const response = await fetch(`${url}/api/shardhub/v1/instances`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ spec: { program: { _tag: "Command", command: "sleep", args: ["30"] } } })
    })
    expect(response.status).toBe(200)
    const trace = await traceOf(otlp.spans, "shardhub-gateway", ["shardhub.process.spawn"])
    expect([...new Set(trace.map((span) => span.service))].sort()).toEqual(["shardhub-gateway", "shardhub-runner"])
    const ids = new Set(trace.map((span) => span.spanId))
    expect(trace.filter((span) => span.parentSpanId !== undefined && !ids.has(span.parentSpanId))).toEqual([])
    expect(trace.filter((span) => span.parentSpanId === undefined)).toHaveLength(1)
  })
})
