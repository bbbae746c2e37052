/**
 * `npm run bench:scale [-- --json --steps 100,500,1000]`: one runner process holding many
 * instances, beside raw spawns measured in the same run.
 *
 * For each step the cluster grows to that many `sleep 3600` instances, started 16 at a time by
 * a client-only participant (this process); then, once it settled (20 s: V8 finishing
 * what the burst of starts left) and with nothing asked of it for 10 s, the runner's idle CPU
 * (from `/proc/<pid>/stat`, all its threads), its RSS and open fds; then `info` p99 over 500
 * calls. At the end every instance is stopped (16 at a time); once the ended ones left memory
 * (their entities passivate after `SHARDHUB_ENTITY_MAX_IDLE`, set to 5 s here instead of a
 * minute, then the runner's full collection: its RSS back within 20 % of the empty runner's, or a
 * minute) the runner is filled once more with as many — is their memory reused? — those are
 * stopped, and the runner is SIGTERMed.
 *
 * Raw: `child_process.spawn("sleep", ["3600"])` 16 in flight, as many as the largest step, with
 * this process's own idle CPU, RSS and fds holding them. CLI: `shardhub --help` and `shardhub ps`
 * (against this cluster, with 1,000 instances) beside `node -e 0`.
 */
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Client from "../src/node/Client.ts"
import { HostClient } from "../src/client/HostClient.ts"
import { InstanceClient } from "../src/client/InstanceClient.ts"
import type { InstanceSpec } from "../src/instance/InstanceSpec.ts"
import { root, spawnNode } from "../test/support/processes.ts"
import { clientRuntime, percentile, runMain, startRunner, temporaryStore } from "./support.ts"

const json = process.argv.includes("--json")
const flag = (name: string) => {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? undefined : process.argv[at + 1]
}
const steps = (flag("steps") ?? "100,500,1000").split(",").map(Number)
const log = (line: string) => {
  if (!json) console.error(`${new Date().toISOString().slice(11, 23)} ${line}`)
}
const IN_FLIGHT = 16
const IDLE_MS = 10_000
const SETTLE_MS = 20_000
const PASSIVATE_S = 5
const sleepSpec: InstanceSpec = { program: { _tag: "Command", command: "sleep", args: ["3600"] } }
const sorted = (values: Array<number>) => values.sort((a, b) => a - b)

/** CPU ticks (user + system) of a process so far. */
const ticksOf = (pid: number) => {
  const stat = Fs.readFileSync(`/proc/${pid}/stat`, "latin1")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return Number(fields[11]) + Number(fields[12])
}
const rssOf = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(Fs.readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024
const fdsOf = (pid: number) => Fs.readdirSync(`/proc/${pid}/fd`).length
/** Percent of one core `pid` used over `ms` of doing nothing asked. */
const idleCpu = async (pid: number, ms: number) => {
  const before = ticksOf(pid)
  const started = performance.now()
  await new Promise((resolve) => setTimeout(resolve, ms))
  return ((ticksOf(pid) - before) * 10) / (performance.now() - started) * 100
}

/** Runs `count` tasks `IN_FLIGHT` at a time; each task's duration in ms. */
const pool = async (count: number, task: (i: number) => Promise<unknown>) => {
  const times: Array<number> = []
  let next = 0
  await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
    while (next < count) {
      const i = next++
      const started = performance.now()
      await task(i)
      times.push(performance.now() - started)
    }
  }))
  return times
}

/** Raw spawns of `sleep 3600`, `IN_FLIGHT` at a time: starts/s and what holding them costs this process. */
const rawScale = async (count: number) => {
  const rssBefore = rssOf(process.pid)
  const children: Array<ChildProcess.ChildProcess> = []
  const started = performance.now()
  const times = sorted(await pool(count, () =>
    new Promise<void>((resolve) => {
      const child = ChildProcess.spawn("sleep", ["3600"], { stdio: ["ignore", "pipe", "pipe"], detached: true })
      children.push(child)
      child.once("spawn", () => resolve())
    })))
  const seconds = (performance.now() - started) / 1000
  const cpu = await idleCpu(process.pid, IDLE_MS)
  const result = {
    starts_s: count / seconds,
    start_p50_ms: percentile(times, 50),
    start_p99_ms: percentile(times, 99),
    rss_per_instance_kb: (rssOf(process.pid) - rssBefore) / 1024 / count,
    idle_cpu_percent: cpu,
    fds: fdsOf(process.pid)
  }
  for (const child of children) process.kill(-child.pid!, "SIGKILL")
  return result
}

/** Wall time of a command, p50 over `runs`. */
const commandMs = (command: string, args: ReadonlyArray<string>, env: Record<string, string>, runs = 5) => {
  const times: Array<number> = []
  for (let i = 0; i < runs; i++) {
    const started = performance.now()
    const result = ChildProcess.spawnSync(command, args, { cwd: root, env: { ...process.env, ...env }, stdio: "ignore" })
    if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} failed (${result.status})`)
    times.push(performance.now() - started)
  }
  return percentile(sorted(times), 50)
}

const main = async () => {
  const store = await temporaryStore()
  const stateDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-scale-"))
  log("starting one runner")
  const runner = await startRunner("runner", store.databaseUrl, {
    SHARDHUB_RUNNER_STATE_DIR: stateDir,
    SHARDHUB_GATEWAY_ACCESS_LOG: "false",
    SHARDHUB_ENTITY_MAX_IDLE: `${PASSIVATE_S} seconds`
  })
  const startAll = (count: number, into: Array<string>) =>
    pool(count, async () => {
      const info = await runtime.runPromise(Effect.flatMap(HostClient, (host) => host.start(sleepSpec)))
      into.push(info.id)
    })
  const stopAll = (of: ReadonlyArray<string>) =>
    pool(of.length, (i) => runtime.runPromise(Effect.flatMap(InstanceClient, (instances) => instances.stop(of[i]!))))
  const runtime = clientRuntime(store.databaseUrl, Client.layerFromEnv({ applicationName: "shardhub-scale" }))
  const baseline = { rss: rssOf(runner.pid), fds: fdsOf(runner.pid) }
  const ids: Array<string> = []
  const rows: Array<Record<string, number>> = []
  for (const target of steps) {
    const count = target - ids.length
    log(`starting ${count} instances (to ${target})`)
    const started = performance.now()
    const times = sorted(await startAll(count, ids))
    const seconds = (performance.now() - started) / 1000
    log(`measuring the idle runner for ${IDLE_MS / 1000} s`)
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS))
    const cpu = await idleCpu(runner.pid, IDLE_MS)
    const rss = rssOf(runner.pid)
    const infoTimes = sorted(await pool(500, (i) =>
      runtime.runPromise(Effect.flatMap(InstanceClient, (instances) => instances.info(ids[i % ids.length]!)))))
    rows.push({
      instances: target,
      starts_s: count / seconds,
      start_p50_ms: percentile(times, 50),
      start_p99_ms: percentile(times, 99),
      runner_rss_mb: rss / 1048576,
      rss_per_instance_kb: (rss - baseline.rss) / 1024 / target,
      idle_cpu_percent: cpu,
      fds: fdsOf(runner.pid),
      info_p99_ms: percentile(infoTimes, 99)
    })
  }
  // `ps` as a user of `shardhub up` / `npm start` runs it (its gateway answers: the quick path),
  // and with no gateway to ask (the full CLI joins the cluster as a client).
  const gateway = spawnNode("gateway", "src/cli/main.ts", {
    args: ["gateway", "--port", "0"],
    env: { DATABASE_URL: store.databaseUrl, SHARDHUB_GATEWAY_ACCESS_LOG: "false" }
  })
  const [, gatewayUrl] = await gateway.waitFor(/gateway\s+(http:\/\/[^/\s]+)/, 60_000)
  const cliEnv = { DATABASE_URL: store.databaseUrl, SHARDHUB_GATEWAY_URL: gatewayUrl! }
  const noGateway = { ...cliEnv, SHARDHUB_GATEWAY_URL: "http://127.0.0.1:1" }
  log("CLI latency")
  const cli = {
    node_ms: commandMs(process.execPath, ["-e", "0"], {}),
    help_ms: commandMs(process.execPath, ["src/cli/bin.js", "--help"], cliEnv),
    ps_ms: commandMs(process.execPath, ["src/cli/bin.js", "ps"], cliEnv),
    info_ms: commandMs(process.execPath, ["src/cli/bin.js", "info", ids[0]!], cliEnv),
    ps_no_gateway_ms: commandMs(process.execPath, ["src/cli/bin.js", "ps"], noGateway, 3)
  }
  log(`stopping ${ids.length} instances`)
  const stopStarted = performance.now()
  await stopAll(ids)
  const stopAllS = (performance.now() - stopStarted) / 1000
  // The ended entities leave memory after the idle time, then the runner runs a full collection
  // (node/HeapSettler) and V8 returns the pages: the RSS once it is back within 20 % of the empty
  // runner's, or after a minute.
  const settled = performance.now()
  while (rssOf(runner.pid) > baseline.rss * 1.2 && performance.now() - settled < 60_000) {
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
  const settleS = (performance.now() - stopStarted) / 1000 - stopAllS
  const rssAfterStop = rssOf(runner.pid)
  log(`starting ${ids.length} again, then stopping them`)
  const again: Array<string> = []
  await startAll(ids.length, again)
  const rssRefilled = rssOf(runner.pid)
  await stopAll(again)
  await gateway.kill("SIGTERM")
  await runtime.dispose()
  const termStarted = performance.now()
  await runner.kill("SIGTERM")
  const termS = (performance.now() - termStarted) / 1000
  log(`raw spawns of ${steps.at(-1)} sleeps`)
  const raw = await rawScale(steps.at(-1)!)
  await store.close()
  Fs.rmSync(stateDir, { recursive: true, force: true })

  const result = { steps: rows, raw, cli, stop_all_s: stopAllS, settle_s: settleS, runner_rss_after_stop_mb: rssAfterStop / 1048576,
    runner_rss_refilled_mb: rssRefilled / 1048576, runner_sigterm_s: termS }
  if (json) return console.log(JSON.stringify(result))
  const f = (n: number) => n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)
  console.log(`\nscale: one runner, sleep 3600 instances, ${IN_FLIGHT} starts in flight (${Os.cpus().length} cores)\n`)
  console.log("| instances | starts/s | start p50 / p99 ms | runner RSS | RSS per instance | idle CPU | fds | info p99 |")
  console.log("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  for (const r of rows) {
    console.log(`| ${r["instances"]} | ${f(r["starts_s"]!)} | ${f(r["start_p50_ms"]!)} / ${f(r["start_p99_ms"]!)} | ${f(r["runner_rss_mb"]!)} MB | ` +
      `${f(r["rss_per_instance_kb"]!)} KB | ${f(r["idle_cpu_percent"]!)} % | ${r["fds"]} | ${f(r["info_p99_ms"]!)} ms |`)
  }
  console.log(`| raw spawn ×${steps.at(-1)} | ${f(raw.starts_s)} | ${f(raw.start_p50_ms)} / ${f(raw.start_p99_ms)} | — | ` +
    `${f(raw.rss_per_instance_kb)} KB | ${f(raw.idle_cpu_percent)} % | ${raw.fds} | — |`)
  const last = rows.at(-1)!
  console.log(`\nstarts/s: shardhub / raw = ${f(last["starts_s"]! / raw.starts_s)}×; ` +
    `stop all ${ids.length}: ${f(stopAllS)} s; runner RSS ${f(settleS)} s after: ${f(rssAfterStop / 1048576)} MB (baseline ${f(baseline.rss / 1048576)} MB); ` +
    `filled again with ${ids.length}: ${f(rssRefilled / 1048576)} MB (first fill ${f(last["runner_rss_mb"]!)} MB); runner SIGTERM: ${f(termS)} s`)
  console.log(`CLI: node -e 0 ${f(cli.node_ms)} ms; shardhub --help ${f(cli.help_ms)} ms (${f(cli.help_ms / cli.node_ms)}×); ` +
    `shardhub ps (${ids.length} instances) ${f(cli.ps_ms)} ms (${f(cli.ps_ms / cli.node_ms)}×), info ${f(cli.info_ms)} ms ` +
    `— through the gateway of \`shardhub up\`; with no gateway, ps ${f(cli.ps_no_gateway_ms)} ms`)
}

runMain(main)
