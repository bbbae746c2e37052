/**
 * A runner's own `/metrics`, in Prometheus' text format: every metric recorded in this process
 * with Effect's `Metric` module (shardhub's instance metrics, Effect cluster's entities, shards,
 * runners, …), and each running process's CPU, memory and restarts, read when scraped (the
 * ProcessManager samples `/proc` only while someone reads). Served on `SHARDHUB_METRICS_PORT`
 * when it is set, on `SHARDHUB_METRICS_HOST` (loopback by default: it names every process).
 *
 * @since 0.6.0
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Console, Effect, Layer, Option } from "effect"
import { HttpRouter, HttpServer, HttpServerResponse } from "effect/http"
import { PrometheusMetrics } from "effect/observability"
import { createServer } from "node:http"
import { ProcessManager } from "../process/ProcessManager.ts"
import { isTerminal } from "../process/ProcessStatus.ts"
import { render } from "./Prometheus.ts"

/** Each live process of this runner, with its resource use. */
const processFamilies = Effect.gen(function*() {
  const processes = yield* ProcessManager
  const live = (yield* processes.list).filter((info) => !isTerminal(info.status))
  const sampled = yield* Effect.forEach(live, (info) =>
    processes.get(info.id).pipe(
      Effect.flatMap((handle) => handle.stats),
      Effect.map((stats) => ({ info, stats })),
      Effect.orElseSucceed(() => ({ info, stats: Option.none() }))
    ), { concurrency: 16 })
  const labels = (info: (typeof live)[number]) => ({ process: info.id, name: info.name })
  const withStats = sampled.flatMap(({ info, stats }) => Option.isSome(stats) ? [{ info, stats: stats.value }] : [])
  return yield* render([
    {
      name: "shardhub_process_cpu_percent",
      help: "CPU of a process group of this runner, in percent of one core.",
      samples: withStats.map(({ info, stats }) => [labels(info), stats.cpuPercent])
    },
    {
      name: "shardhub_process_rss_bytes",
      help: "Resident memory of a process group of this runner.",
      samples: withStats.map(({ info, stats }) => [labels(info), stats.rssBytes])
    },
    {
      name: "shardhub_process_restarts",
      help: "Restarts of a process of this runner by its restart policy.",
      samples: live.map((info) => [labels(info), info.restarts])
    }
  ])
})

/** `GET /metrics`. */
export const scrape = Effect.gen(function*() {
  const recorded = yield* PrometheusMetrics.format()
  const processes = yield* processFamilies
  return HttpServerResponse.text(recorded + (recorded.endsWith("\n") || recorded === "" ? "" : "\n") + processes, {
    contentType: "text/plain; version=0.0.4; charset=utf-8"
  })
})

/**
 * The server, when `config` is given.
 *
 * @since 0.6.0
 */
export const layer = (config: Option.Option<{ readonly host: string; readonly port: number }>) =>
  Option.match(config, {
    onNone: () => Layer.empty,
    onSome: ({ host, port }) =>
      Layer.mergeAll(
        HttpRouter.serve(HttpRouter.add("GET", "/metrics", scrape), { disableLogger: true, disableListenLog: true }),
        Layer.effectDiscard(Effect.gen(function*() {
          const server = yield* HttpServer.HttpServer
          const bound = "port" in server.address ? server.address.port : port
          yield* Console.log(`metrics          http://${host.includes(":") ? `[${host}]` : host}:${bound}/metrics`)
        }))
      ).pipe(Layer.provide(NodeHttpServer.layer(() => createServer(), { port, host })))
  })
