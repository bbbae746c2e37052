/**
 * Zero-downtime reload benchmark: 4 copies of a small HTTP server sharing one port (Node's
 * `reusePort`), each ready when it calls `process.send("ready")`, behind a client sending
 * requests as fast as it can over keep-alive connections. Measured in one run:
 *
 * 1. before: the copies serving, nothing changing (the baseline of the latency columns);
 * 2. reload: `reload` of all 4, one at a time (stop, start, ready, next);
 * 3. revert: a rollout of a version that never becomes ready: it stops at the first copy, puts
 *    it back, and the old copies keep serving;
 * 4. restart: what `shardhub restart` does (every copy at once), for contrast.
 *
 * A request counts as failed when it got no 2xx answer. As HTTP allows for idempotent requests
 * (RFC 9110 §9.2.2), a request whose reused keep-alive connection was closed by a stopping
 * server before any answer is sent once more on a new connection; those are counted as `retried`.
 *
 *   npm run bench:reload [-- --json --clients 8]
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Http from "node:http"
import * as Net from "node:net"
import * as Path from "node:path"
import { parseArgs } from "node:util"
import { copySpec } from "../src/client/Apps.ts"
import { HostClient } from "../src/client/HostClient.ts"
import { InstanceClient } from "../src/client/InstanceClient.ts"
import * as Rollout from "../src/client/Rollout.ts"
import type { InstanceInfo, InstanceSpec } from "../src/instance/InstanceSpec.ts"
import * as Client from "../src/node/Client.ts"
import { clientRuntime, percentile, runMain, startRunner, tearDown, temporaryStore } from "./support.ts"

const { values } = parseArgs({
  options: { json: { type: "boolean", default: false }, clients: { type: "string", default: "8" }, seconds: { type: "string", default: "3" } }
})
const clients = Number(values.clients)
const fixture = Path.join(import.meta.dirname, "../test/instance/fixtures/service.mjs")

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = Net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as Net.AddressInfo
      server.close(() => resolve(port))
    })
  })

interface Tally {
  requests: number
  failed: number
  retried: number
  latencies: Array<number>
  errors: Map<string, number>
}
const tally = (): Tally => ({ requests: 0, failed: 0, retried: 0, latencies: [], errors: new Map() })

/** One GET; `undefined` when it got a 2xx answer, else why not (and whether no byte came back). */
const get = (agent: Http.Agent, port: number) =>
  new Promise<{ readonly error?: string; readonly reused: boolean }>((resolve) => {
    let reused = false
    const request = Http.get({ host: "127.0.0.1", port, path: "/", agent }, (response) => {
      response.resume()
      response.on("end", () => resolve(response.statusCode! >= 200 && response.statusCode! < 300 ? { reused } : { error: `status ${response.statusCode}`, reused }))
      response.on("error", (error) => resolve({ error: error.message, reused: false }))
    })
    request.on("socket", (socket) => {
      reused = (socket as { _httpReused?: boolean })._httpReused === true || request.reusedSocket
    })
    request.on("error", (error) => resolve({ error: (error as NodeJS.ErrnoException).code ?? error.message, reused: request.reusedSocket }))
  })

/** Sends requests from `clients` loops until `until` resolves; counts into the current tally. */
const load = (port: number) => {
  const agent = new Http.Agent({ keepAlive: true, maxSockets: clients })
  let current = tally()
  let running = true
  const loop = async () => {
    while (running) {
      const into = current
      const started = performance.now()
      let outcome = await get(agent, port)
      if (outcome.error !== undefined && outcome.reused) {
        into.retried++
        outcome = await get(agent, port)
      }
      into.requests++
      into.latencies.push(performance.now() - started)
      if (outcome.error !== undefined) {
        into.failed++
        into.errors.set(outcome.error, (into.errors.get(outcome.error) ?? 0) + 1)
      }
    }
  }
  const loops = Array.from({ length: clients }, loop)
  return {
    /** Starts a new tally; answers the one that ends. */
    phase: () => {
      const ended = current
      current = tally()
      return ended
    },
    stop: async () => {
      running = false
      await Promise.all(loops)
      agent.destroy()
      return current
    }
  }
}

/** Whether the kernel migrates connections queued at a closing reusePort listener (Linux ≥ 5.14). */
const migrateReq = (() => {
  try {
    return Fs.readFileSync("/proc/sys/net/ipv4/tcp_migrate_req", "utf8").trim()
  } catch {
    return "unavailable"
  }
})()

const p99 = (t: Tally) => percentile([...t.latencies].sort((a, b) => a - b), 99)

const main = async () => {
  const store = await temporaryStore()
  const runners = await Promise.all([1, 2].map((i) => startRunner(`runner-${i}`, store.databaseUrl)))
  const runtime = clientRuntime(store.databaseUrl, Client.layerFromEnv({ applicationName: "shardhub-bench" }))
  try {
    const port = await freePort()
    const template: InstanceSpec = {
      program: { _tag: "Command", command: process.execPath, args: [fixture] },
      env: { set: { PORT: String(port), READY: "message", VERSION: "v1" } },
      readiness: { _tag: "Message", timeoutMs: 10_000 },
      restart: { mode: "on-failure" }
    }
    const awaitAll = (infos: ReadonlyArray<InstanceInfo>) =>
      Effect.forEach(infos, (info) => Rollout.awaitReady(info.id, { timeoutMs: 30_000, minHealthyMs: 0 }), { discard: true })
    const live = () =>
      runtime.runPromise(Effect.map(HostClient.use((host) => host.list({ statuses: ["running"] })), (all) => all.filter((i) => i.name?.startsWith("web-"))))

    await runtime.runPromise(Effect.gen(function*() {
      const host = yield* HostClient
      yield* awaitAll(yield* Effect.forEach([0, 1, 2, 3], (i) => host.start(copySpec(template, "web", i))))
    }))
    const traffic = load(port)
    const seconds = Number(values.seconds) * 1000
    await new Promise((resolve) => setTimeout(resolve, 500))
    traffic.phase()
    await new Promise((resolve) => setTimeout(resolve, seconds))
    const before = traffic.phase()

    // 2. Reload of all 4, one at a time.
    const reloadStarted = performance.now()
    const reloaded = await runtime.runPromise(Rollout.rollout(Rollout.again(await live()), {}, () => Effect.void))
    const reloadSeconds = (performance.now() - reloadStarted) / 1000
    const during = traffic.phase()

    // 3. A version that never becomes ready: stopped at the first copy, put back.
    const revertStarted = performance.now()
    const reverted = await runtime.runPromise(Rollout.rollout(
      (await live()).map((info) => ({
        name: info.name!,
        old: info,
        spec: { ...info.spec, env: { set: { ...info.spec.env?.set, READY: "never", VERSION: "v2" } }, readiness: { _tag: "Message", timeoutMs: 1000 } }
      })),
      {},
      () => Effect.void
    ))
    const revertSeconds = (performance.now() - revertStarted) / 1000
    const revert = traffic.phase()

    // 4. Every copy restarted at once (`shardhub restart web`).
    const restartStarted = performance.now()
    await runtime.runPromise(Effect.gen(function*() {
      const instances = yield* InstanceClient
      const copies = yield* Effect.promise(live)
      yield* Effect.forEach(copies, (info) => instances.restart(info.id, { timeoutMs: 10_000 }), { concurrency: 16, discard: true })
      yield* awaitAll(copies)
    }))
    const restartSeconds = (performance.now() - restartStarted) / 1000
    const restart = traffic.phase()
    await traffic.stop()

    const row = (name: string, t: Tally, s: number) =>
      `| ${name} | ${s.toFixed(2)} s | ${t.requests} | ${t.failed} | ${t.retried} | ${p99(t).toFixed(1)} ms | ${
        [...t.errors].map(([e, n]) => `${e} ×${n}`).join(", ") || "-"
      } |`
    console.log(`\nreload of 4 copies sharing a port (reusePort), ${clients} keep-alive clients as fast as they can; ` +
      `net.ipv4.tcp_migrate_req = ${migrateReq} (1: the kernel hands connections queued at a closing listener to another)\n`)
    console.log("| phase | took | requests | failed | retried | p99 latency | errors |")
    console.log("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    console.log(row("before (nothing changes: baseline)", before, seconds / 1000))
    console.log(row(`reload, one at a time (${reloaded.ok ? "ok" : "FAILED"})`, during, reloadSeconds))
    console.log(row(`never-ready version (${reverted.reverted ? "stopped, put back" : "NOT REVERTED"})`, revert, revertSeconds))
    console.log(row("restart, all at once (for contrast)", restart, restartSeconds))
    console.log(`\np99 during the reload: ${(p99(during) / p99(before)).toFixed(2)}× the baseline's`)
    if (values.json) {
      console.log(JSON.stringify({
        requests: during.requests,
        failed: during.failed,
        retried: during.retried,
        p99_ms_before: Number(p99(before).toFixed(2)),
        p99_ms_during: Number(p99(during).toFixed(2)),
        reload_s: Number(reloadSeconds.toFixed(3)),
        reload_ok: reloaded.ok,
        revert_requests: revert.requests,
        revert_failed: revert.failed,
        reverted: reverted.reverted,
        restart_requests: restart.requests,
        restart_failed: restart.failed,
        tcp_migrate_req: migrateReq
      }))
    }
  } finally {
    await tearDown({ runtime, runners, store })
  }
}

runMain(main)
