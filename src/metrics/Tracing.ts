/**
 * Traces, exported with Effect's OTLP support when `OTEL_EXPORTER_OTLP_ENDPOINT` (the standard
 * variable; `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` for traces alone) is set, off otherwise. Every
 * participant — runner, gateway, CLI, any app on `Client` — exports its own spans under its
 * service name (`OTEL_SERVICE_NAME` overrides it); a call to an instance carries its span to the
 * runner, so one start is one trace across the client, the runner and the process spawn.
 *
 * @since 0.6.0
 */
import { Config, Effect, Layer, Option } from "effect"

/**
 * Whether this process exports traces. Read once, when the module loads: entity protocols
 * decide on it (a call carries its span only when someone collects them).
 *
 * @since 0.6.0
 */
export const enabled = Boolean(process.env["OTEL_EXPORTER_OTLP_ENDPOINT"] || process.env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])

const settings = Config.all({
  traces: Config.option(Config.String("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
  base: Config.option(Config.String("OTEL_EXPORTER_OTLP_ENDPOINT")),
  serviceName: Config.option(Config.String("OTEL_SERVICE_NAME"))
})

/**
 * The tracer of a participant named `serviceName`, or nothing when no endpoint is set (the
 * exporter is loaded only then).
 *
 * @since 0.6.0
 */
export const layer = (serviceName: string) =>
  Layer.unwrap(Effect.gen(function*() {
    const { base, serviceName: named, traces } = yield* Effect.orDie(settings)
    const url = Option.orElse(traces, () => Option.map(base, (endpoint) => `${endpoint.replace(/\/+$/, "")}/v1/traces`))
    if (Option.isNone(url)) return Layer.empty
    const [{ OtlpSerialization, OtlpTracer }, NodeHttpClient] = yield* Effect.promise(() =>
      Promise.all([import("effect/observability"), import("@effect/platform-node/NodeHttpClient")])
    )
    return OtlpTracer.layer({
      url: url.value,
      resource: { serviceName: Option.getOrElse(named, () => serviceName) },
      exportInterval: "1 second",
      shutdownTimeout: "3 seconds"
    }).pipe(Layer.provide([OtlpSerialization.layerJson, NodeHttpClient.layerUndici]))
  }))
