/**
 * The `shardhub` command end to end: each call is its own process, a client-only participant of
 * a two-runner cluster; and `shardhub up` bringing a whole cluster up and down.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { HostClient as StHostClient } from "@scramjet/api-client"
import { Readable } from "node:stream"
import { describe, expect, it, onTestFailed } from "vitest"
import { runnerNodeOptions } from "../../src/base/heap.js"
import { clusterEnv, useCluster } from "../support/cluster.ts"
import { freshDatabase } from "../support/database.ts"
import { eventually, fastTimings, freePorts, root, spawnNode } from "../support/processes.ts"
import { fixture } from "../sequence/fixtures.ts"

interface Result {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

describe("the shardhub command on two runners", () => {
  const cluster = useCluster("cli", { runners: 2 })

  const shardhub = (args: ReadonlyArray<string>, input?: string, cwd = root) =>
    new Promise<Result>((resolve) => {
      const child = ChildProcess.spawn(process.execPath, [Path.join(root, "src/cli/main.ts"), ...args], {
        cwd,
        env: { ...process.env, ...clusterEnv(cluster.databaseUrl, cluster.home) }
      })
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (chunk) => (stdout += chunk))
      child.stderr.on("data", (chunk) => (stderr += chunk))
      child.stdin.end(input ?? "")
      child.on("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }))
    })

  const ok = async (...args: Array<string>) => {
    const result = await shardhub(args)
    expect({ args, code: result.code, stderr: result.stderr }).toEqual({ args, code: 0, stderr: expect.any(String) })
    return result.stdout
  }

  it("runs, lists, reads logs of, stops and kills instances", async () => {
    cluster.printOnFailure()
    const id = (await ok("run", "--name", "counter", "--", "sh", "-c", "for i in 1 2 3; do echo line $i; done; sleep 600")).trim()
    expect(id).toMatch(/^[0-9a-f-]{36}$/)

    const listed = JSON.parse(await ok("ps", "--json"))
    expect(listed).toEqual(expect.arrayContaining([expect.objectContaining({ id, name: "counter", status: "running" })]))
    expect(await ok("ps")).toMatch(new RegExp(`^${id}\\s+counter\\s+running`, "m"))

    // logs: the lines so far (the instance is running: without -f, logs returns what is there).
    let logs = ""
    for (let attempt = 0; attempt < 100 && !logs.includes("line 3"); attempt++) logs = await ok("logs", id)
    expect(logs).toMatch(/stdout +line 1\n.*stdout +line 2\n.*stdout +line 3/s)
    expect((await ok("logs", id, "--tail", "1")).trim().split("\n")).toHaveLength(1)

    const info = JSON.parse(await ok("info", id, "--json"))
    expect(info).toMatchObject({ id, status: "running", name: "counter" })
    expect(JSON.parse(await ok("health", id, "--json"))).toMatchObject({ id, healthy: true })

    expect(await ok("stop", id, "--timeout", "5000")).toContain(`${id} stopped`)
    expect(JSON.parse(await ok("info", id, "--json"))).toMatchObject({ status: "stopped", signal: "SIGTERM" })

    const stubborn = (await ok("run", "--", process.execPath, "-e", "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)")).trim()
    expect(await ok("kill", stubborn)).toContain(`${stubborn} stopped`)
    expect(JSON.parse(await ok("info", stubborn, "--json"))).toMatchObject({ status: "stopped", signal: "SIGKILL" })
    expect(JSON.parse(await ok("ps", "--json")).map((i: { id: string }) => i.id)).not.toContain(stubborn)
    expect(JSON.parse(await ok("ps", "--all", "--json")).map((i: { id: string }) => i.id)).toContain(stubborn)
  })

  it("prints names and log lines with their control characters escaped (no terminal escape injection)", async () => {
    cluster.printOnFailure()
    // C0 escapes, and U+009B: the one-character CSI of the C1 controls, which terminals obey too.
    const hostile = "\x1b]0;owned\x07\x1b[2J\u009b2J"
    const id = (await ok("run", "--name", `evil${hostile}`, "--", "printf", `title${hostile}\\n`)).trim()
    let logs = ""
    for (let attempt = 0; attempt < 100 && !logs.includes("title"); attempt++) logs = await ok("logs", id)
    const listed = await ok("ps", "--all")
    for (const printed of [logs, listed]) {
      expect(printed).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/)
      expect(printed).toContain("\\x1b]0;owned\\x07\\x1b[2J\\x9b2J")
    }
    // --json keeps the exact text (JSON escapes it: the C0 controls by itself, DEL and C1 by us).
    const json = await ok("info", id, "--json")
    expect(json).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/)
    expect(JSON.parse(json).name).toBe(`evil${hostile}`)
  })

  it("runs a command as another user with rlimits (--user, --limit), or says why it cannot", async () => {
    cluster.printOnFailure()
    const args = ["run", "--user", "nobody", "--limit", "nofile=77", "--limit", "core=0", "--", "sh", "-c", "id -u; ulimit -n; ulimit -c"]
    expect((await shardhub(["run", "--limit", "nofile=lots", "--", "true"])).stderr).toMatch(/--limit nofile=lots: expected NAME=VALUE/)
    if (process.getuid!() !== 0) {
      expect((await shardhub(args)).stderr).toMatch(/only a runner running as root/)
      return
    }
    // The child's data directory lies in the test's home, which must be passable for nobody, and
    // `run` starts in the current directory: / (the checkout may be in a 0700 directory).
    Fs.chmodSync(cluster.home, 0o711)
    const started = await shardhub(args, "", "/")
    expect(started).toMatchObject({ code: 0 })
    const id = started.stdout.trim()
    let logs = ""
    for (let attempt = 0; attempt < 100 && logs.trim().split("\n").length < 3; attempt++) logs = await ok("logs", id)
    expect(logs.trim().split("\n").map((line) => line.split(/ +/).at(-1))).toEqual(["65534", "77", "0"])
  })

  it("sends input and reads output, events and sequences", async () => {
    cluster.printOnFailure()
    const cat = (await ok("run", "--", "cat")).trim()
    const written = await shardhub(["input", cat], "through the cli\n")
    expect(written.code).toBe(0)
    expect(await ok("output", cat)).toBe("through the cli\n")

    const seq = (await ok("seq", "send", Path.join(root, "test/sequence/fixtures/features"))).trim()
    expect(JSON.parse(await ok("seq", "ls", "--json")).map((s: { id: string }) => s.id)).toContain(seq)
    const instance = (await ok("seq", "start", seq, "--args", "[\"a\"]", "--config", "{\"k\":1}")).trim()
    const pong = shardhub(["event", "on", instance, "pong", "--once"])
    // The listener is subscribed once `event on` has connected; send until it sees one.
    let answer: Result | undefined
    for (let attempt = 0; attempt < 50 && answer === undefined; attempt++) {
      await ok("event", "emit", instance, "ping", "{\"n\":1}")
      answer = await Promise.race([pong, new Promise<undefined>((resolve) => setTimeout(resolve, 200))])
    }
    expect(JSON.parse(answer!.stdout)).toEqual({ data: { n: 1 }, args: ["a"], config: { k: 1 } })
    await ok("kill", instance)
    expect(await ok("seq", "rm", seq)).toContain(seq)
  })

  it("lists runners with their shards and instances, and a top frame", async () => {
    const runners = JSON.parse(await ok("runners", "--json"))
    expect(runners.map((r: { address: string }) => r.address).sort()).toEqual(cluster.runners.map((r) => r.address).sort())
    for (const runner of runners) expect(runner).toMatchObject({ healthy: true, shards: expect.any(Number) })
    expect(runners.reduce((sum: number, r: { shards: number }) => sum + r.shards, 0)).toBe(Number(fastTimings.SHARDHUB_SHARDS))
    const sleeper = (await ok("run", "--", "sleep", "600")).trim()
    expect(await ok("top", "--once")).toMatch(new RegExp(`^${sleeper}\\s`, "m"))
    // Drain the sleeper's runner: it moves, the runner is listed drained; undrain.
    const from = JSON.parse(await ok("info", sleeper, "--json")).runner
    const drained = (await ok("runner", "drain", from, "--parallel", "8")).trim().split("\n")
    expect(drained[0]).toBe(`draining ${from}, 8 at a time`)
    expect(drained.at(-1)).toMatch(new RegExp(`^drained ${from}: \\d+ instances? moved in [\\d.]+ s$`))
    expect(JSON.parse(await ok("info", sleeper, "--json"))).toMatchObject({ status: "running", runner: expect.not.stringMatching(from) })
    expect(await ok("runners")).toMatch(new RegExp(`^${from}\\s+drained\\s+0\\s+0\\s`, "m"))
    expect(await ok("runner", "undrain", from)).toBe(`${from} takes shards again\n`)
    await cluster.waitForShards()
    await ok("kill", sleeper)
  })

  it("restarts, stops and removes instances by id or by name, as PM2 does; a restart continues the log", async () => {
    cluster.printOnFailure()
    const start = async () => (await ok("run", "--name", "web", "--", "sh", "-c", "echo started; sleep 600")).trim()
    const [a, b] = [await start(), await start()]
    const before = JSON.parse(await ok("info", a, "--json"))
    expect((await ok("restart", a)).trim()).toBe(`${a} running (restarts 1)`)
    const after = JSON.parse(await ok("info", a, "--json"))
    expect(after).toMatchObject({ status: "running", restarts: 1 })
    expect(after.pid).not.toBe(before.pid)
    let logs = ""
    for (let attempt = 0; attempt < 100 && (logs.match(/started/g) ?? []).length < 2; attempt++) logs = await ok("logs", a)
    expect(logs.match(/started/g)).toHaveLength(2)
    // A name shared by two instances addresses both; where one is needed, it says so.
    expect((await ok("stop", "web")).trim().split("\n").sort()).toEqual([`${a} stopped (SIGTERM)`, `${b} stopped (SIGTERM)`].sort())
    const ambiguous = await shardhub(["info", "web"])
    expect(ambiguous.code).toBe(1)
    expect(ambiguous.stderr).toContain("names 2 instances")
    // An ended instance starts again.
    expect((await ok("restart", b)).trim()).toBe(`${b} running (restarts 1)`)
    expect((await ok("rm", "web")).trim().split("\n").sort()).toEqual([`${a} removed`, `${b} removed`].sort())
    expect((await shardhub(["info", a])).code).toBe(1)
    expect((await shardhub(["stop", "web"])).stderr).toMatch(/^shardhub: .*web/)
  })

  it("sets variables from --env and --env-file, starts --instances copies, and prints every running instance's logs", async () => {
    cluster.printOnFailure()
    const file = Path.join(cluster.home, "test.env")
    Fs.writeFileSync(file, "A=from-file\n# a comment\n\nB='quoted value'\nexport C=\"two\\nlines\"\n")
    const ids = (await ok("run", "--instances", "2", "--name", "envy", "--env-file", file, "--env", "A=from-flag", "--", "sh", "-c", "echo \"$A|$B|$C\"; sleep 600"))
      .trim().split("\n")
    expect(ids).toHaveLength(2)
    expect(await Promise.all(ids.map(async (id) => JSON.parse(await ok("info", id, "--json")).name))).toEqual(["envy-0", "envy-1"])
    let logs = ""
    for (let attempt = 0; attempt < 100 && !(logs.includes("envy-0 |") && logs.includes("envy-1 |")); attempt++) logs = await ok("logs")
    for (const name of ["envy-0", "envy-1"]) expect(logs).toMatch(new RegExp(`^${name} \\| \\S+ stdout from-flag\\|quoted value\\|two$`, "m"))
    expect(logs).toMatch(/^envy-0 \| \S+ stdout lines$/m)
    const bad = await shardhub(["run", "--env", "not a pair", "--", "true"])
    expect({ code: bad.code, stderr: bad.stderr }).toMatchObject({ code: 1, stderr: expect.stringContaining("--env: expected KEY=VALUE") })
    for (const id of ids) await ok("rm", id)
  })

  it("targets every copy of an app by the app's name (run --instances, an ecosystem app); each copy knows its index; scale; delete is rm", async () => {
    cluster.printOnFailure()
    const ids = (await ok("run", "--instances", "2", "--name", "ticker", "--", "sh", "-c", "echo index=$SHARDHUB_INSTANCE_INDEX pm2=$NODE_APP_INSTANCE; sleep 600"))
      .trim().split("\n")
    expect(ids).toHaveLength(2)
    let logs = ""
    for (let attempt = 0; attempt < 100 && !(logs.includes("ticker-0 |") && logs.includes("ticker-1 |")); attempt++) logs = await ok("logs")
    expect(logs).toMatch(/^ticker-0 \| \S+ stdout index=0 pm2=0$/m)
    expect(logs).toMatch(/^ticker-1 \| \S+ stdout index=1 pm2=1$/m)
    // Scale: up starts the missing indexes, down removes the highest first.
    const up = await ok("scale", "ticker", "3")
    expect(up).toMatch(/^\+ ticker-2 started \S+$/m)
    for (let attempt = 0; attempt < 100 && !logs.includes("ticker-2 |"); attempt++) logs = await ok("logs")
    expect(logs).toMatch(/^ticker-2 \| \S+ stdout index=2 pm2=2$/m)
    expect(await ok("scale", "ticker", "2")).toMatch(/^- ticker-2 removed \S+$/m)
    expect(JSON.parse(await ok("ps", "--json")).filter((info: { name?: string }) => info.name?.startsWith("ticker-")).map((info: { id: string }) => info.id).sort())
      .toEqual([...ids].sort())
    for (const [args, message] of [[["scale", "ticker", "-1"], "the count must be 0 or more"], [["scale", "no-such-app", "2"], "no running app or instance of that name"]] as const) {
      const refused = await shardhub(args)
      expect({ code: refused.code, stderr: refused.stderr }).toMatchObject({ code: 1, stderr: expect.stringContaining(message) })
    }
    // The app's name acts on every copy (it named none of them before: "no instance with id ticker").
    const restarted = await ok("restart", "ticker", "--timeout", "2000")
    for (const id of ids) expect(restarted).toContain(id)
    const stopped = await ok("stop", "ticker", "--timeout", "2000")
    for (const id of ids) expect(stopped).toContain(`${id} stopped`)
    const deleted = await ok("delete", "ticker")
    for (const id of ids) expect(deleted).toContain(`${id} removed`)
    const listed = JSON.parse(await ok("ps", "--all", "--json")).map((info: { id: string }) => info.id)
    for (const id of ids) expect(listed).not.toContain(id)

    // An ecosystem app with instances: the same.
    const dir = Path.join(cluster.home, "ecosystem-app-target")
    Fs.mkdirSync(dir, { recursive: true })
    const file = Path.join(dir, "apps.json")
    Fs.writeFileSync(file, JSON.stringify({ apps: [{ name: "eco-ticker", command: "sh", args: ["-c", "echo copy=$NODE_APP_INSTANCE; sleep 600"], instances: 2 }] }))
    await ok("apply", file)
    const restartedApp = await ok("restart", "eco-ticker", "--timeout", "2000")
    expect(restartedApp.trim().split("\n")).toHaveLength(2)
    // Reload replaces the copies one at a time, each new one ready before the next old one stops.
    const reloaded = (await ok("reload", "eco-ticker", "--timeout", "2000")).trim().split("\n")
    expect(reloaded.map((line) => line.split(" ").slice(0, 3).join(" "))).toEqual([
      "- eco-ticker-0 stopped", "+ eco-ticker-0 started", "= eco-ticker-0 ready",
      "- eco-ticker-1 stopped", "+ eco-ticker-1 started", "= eco-ticker-1 ready",
      "replaced 2"
    ])
    // The old copies stay on record, stopped; delete takes all four.
    expect((await ok("delete", "eco-ticker")).trim().split("\n")).toHaveLength(4)
  })

  it("runs a command with its directory as a bundle (run --bundle, ecosystem bundle: true); the same files deploy as no change", async () => {
    cluster.printOnFailure()
    const dir = Path.join(cluster.home, "bundled")
    Fs.mkdirSync(Path.join(dir, "lib"), { recursive: true })
    Fs.writeFileSync(Path.join(dir, "lib", "message.txt"), "hello from the bundle")
    Fs.writeFileSync(Path.join(dir, "app.js"), "const fs = require('fs'); console.log(fs.readFileSync('lib/message.txt', 'utf8')); setInterval(() => {}, 1000)\n")
    const id = (await ok("run", "--bundle", dir, "--", "node", "app.js")).trim()
    const info = JSON.parse(await ok("info", id, "--json"))
    expect(info.spec.program).toEqual({ _tag: "Command", command: "node", args: ["app.js"], bundle: expect.stringMatching(/^[0-9a-f]{64}$/) })
    await eventually(async () => (await ok("logs", id)).includes("hello from the bundle") || undefined, { what: "the bundled program's line" })
    await ok("kill", id)

    const file = Path.join(cluster.home, "bundled.config.json")
    Fs.writeFileSync(file, JSON.stringify({ apps: [{ name: "eco-bundled", script: "app.js", cwd: "bundled", bundle: true }] }))
    expect((await ok("apply", file)).trim()).toMatch(/^\+ eco-bundled started /)
    const applied = JSON.parse(await ok("ps", "--json")).find((i: { name?: string }) => i.name === "eco-bundled")
    expect(applied.spec.program).toMatchObject({ command: "node", args: ["./app.js"], bundle: info.spec.program.bundle })
    await eventually(async () => (await ok("logs", applied.id)).includes("hello from the bundle") || undefined, { what: "the applied program's line" })
    // The same files pack to the same bundle: nothing to replace.
    expect((await ok("apply", file)).trim()).toMatch(/^= eco-bundled unchanged/)
    await ok("delete", "eco-bundled")
  })

  it("creates a durable topic, wires instances to it (run --in-topic, --out-topic), lists and removes it", async () => {
    cluster.printOnFailure()
    expect(await ok("topic", "create", "cli-orders", "--durable", "--content-type", "text/plain")).toBe("cli-orders (durable)\n")
    const file = Path.join(cluster.home, "cli-orders.out")
    const reader = (await ok("run", "--in-topic", "cli-orders", "--", "sh", "-c", `exec cat >> ${file}`)).trim()
    const writer = (await ok("run", "--out-topic", "cli-orders", "--", "sh", "-c", "echo first order; echo second order; exec sleep 600")).trim()
    await eventually(async () => (Fs.existsSync(file) && Fs.readFileSync(file, "utf8") === "first order\nsecond order\n") || undefined, { what: "both orders through the topic" })
    expect(await ok("topic", "ls")).toMatch(/^cli-orders\s+text\/plain$/m)
    const inUse = await shardhub(["topic", "rm", "cli-orders"])
    expect(inUse.code).toBe(1)
    expect(inUse.stderr).toMatch(/^shardhub: topic cli-orders is used by instances /)
    await ok("rm", reader)
    await ok("rm", writer)
    expect(await ok("topic", "rm", "cli-orders")).toBe("cli-orders removed\n")
  })

  it("applies an ecosystem file: starts what is missing, replaces what changed, leaves the rest; twice changes nothing", async () => {
    cluster.printOnFailure()
    const dir = Path.join(cluster.home, "ecosystem")
    Fs.mkdirSync(dir, { recursive: true })
    Fs.writeFileSync(Path.join(dir, "worker.js"), "console.log(JSON.stringify(process.argv.slice(2)), process.env.FOO); setInterval(() => {}, 1000)\n")
    const file = Path.join(dir, "shardhub.config.json")
    const web = { name: "eco-web", command: "sh", args: ["-c", "echo $GREETING; sleep 600"], env: { GREETING: "hi" }, instances: 2, restart: "always" }
    // PM2's keys: script run by node, args as one string, a memory size, autorestart.
    const worker = { name: "eco-worker", script: "worker.js", args: "--a 'b c'", max_memory_restart: "100M", autorestart: false }
    const extra = { name: "eco-extra", command: "sleep", args: ["600"] }
    const write = (apps: ReadonlyArray<object>) => Fs.writeFileSync(file, JSON.stringify({ apps }))
    const lines = (out: string) => out.trim().split("\n").sort()
    const byName = async () => {
      const listed: Array<{ id: string; name: string; spec: Record<string, unknown> }> = JSON.parse(await ok("ps", "--json"))
      return Object.fromEntries(listed.filter((info) => info.name.startsWith("eco-")).map((info) => [info.name, info]))
    }

    write([web, worker, extra])
    expect(lines(await ok("apply", file, "--dry-run"))).toEqual(["+ eco-extra started", "+ eco-web-0 started", "+ eco-web-1 started", "+ eco-worker started"])
    expect(await byName()).toEqual({})
    expect(lines(await ok("apply", file)).map((line) => line.replace(/ \S+$/, ""))).toEqual(
      ["+ eco-extra started", "+ eco-web-0 started", "+ eco-web-1 started", "+ eco-worker started"]
    )
    const first = await byName()
    expect(Object.keys(first).sort()).toEqual(["eco-extra", "eco-web-0", "eco-web-1", "eco-worker"])
    expect(first["eco-worker"]!.spec).toMatchObject({
      program: { _tag: "Command", command: "node", args: [Path.join(dir, "worker.js"), "--a", "b c"], cwd: dir },
      limits: { memoryMb: 100 },
      restart: { mode: "never" },
      labels: { "shardhub.apply/file": file, "shardhub.apply/app": "eco-worker" }
    })
    let logs = ""
    for (let attempt = 0; attempt < 100 && !logs.includes("b c"); attempt++) logs = await ok("logs", first["eco-worker"]!.id)
    expect(logs).toContain(`["--a","b c"] undefined`)

    // Applying again changes nothing.
    expect(lines(await ok("apply", file))).toEqual(Object.values(first).map((info) => `= ${info.name} unchanged ${info.id}`).sort())
    expect(await byName()).toEqual(first)

    // The worker changed, extra is no longer listed: the worker is replaced, extra left alone…
    write([web, { ...worker, env: { FOO: "bar" } }])
    const replaced = lines(await ok("apply", file))
    expect(replaced).toEqual([
      `= eco-web-0 unchanged ${first["eco-web-0"]!.id}`,
      `= eco-web-1 unchanged ${first["eco-web-1"]!.id}`,
      expect.stringMatching(new RegExp(`^~ eco-worker replaced ${first["eco-worker"]!.id} → \\S+$`))
    ])
    const second = await byName()
    expect(second["eco-worker"]!.id).not.toBe(first["eco-worker"]!.id)
    expect(JSON.parse(await ok("info", first["eco-worker"]!.id, "--json"))).toMatchObject({ status: "stopped" })
    expect(second["eco-extra"]).toEqual(first["eco-extra"])
    // …until --prune, which stops it; then nothing is left to do.
    expect(lines(await ok("apply", file, "--prune"))).toContain(`- eco-extra stopped ${first["eco-extra"]!.id}`)
    expect(Object.keys(await byName()).sort()).toEqual(["eco-web-0", "eco-web-1", "eco-worker"])
    expect(lines(await ok("apply", file, "--prune")).every((line) => line.startsWith("= "))).toBe(true)

    // YAML and JavaScript files too; keys neither shardhub nor PM2 uses are named, not used.
    Fs.writeFileSync(Path.join(dir, "apps.yaml"), "apps:\n  - name: eco-yaml\n    command: sleep\n    args: [\"600\"]\n    watch: true\n")
    Fs.writeFileSync(Path.join(dir, "ecosystem.config.cjs"), "module.exports = { apps: [{ name: 'eco-js', script: 'worker.js', exec_mode: 'fork' }] }\n")
    const yaml = await shardhub(["apply", Path.join(dir, "apps.yaml"), "--dry-run"])
    expect({ code: yaml.code, stdout: yaml.stdout.trim(), stderr: yaml.stderr.trim() }).toEqual({
      code: 0,
      stdout: "+ eco-yaml started",
      stderr: `shardhub: ${Path.join(dir, "apps.yaml")}: app eco-yaml: not used: watch`
    })
    expect((await ok("apply", Path.join(dir, "ecosystem.config.cjs"), "--dry-run")).trim()).toBe("+ eco-js started")

    // A file that cannot be applied says why in one line and changes nothing.
    write([{ name: "eco-both", command: "sleep", script: "worker.js" }])
    const bad = await shardhub(["apply", file])
    expect({ code: bad.code, stderr: bad.stderr.trim() }).toEqual({
      code: 1,
      stderr: `shardhub: ${file}: app eco-both: give exactly one of command, script or sequence`
    })
    for (const info of Object.values(await byName())) await ok("rm", info.id)
  })

  it("prints or writes a systemd unit for the cluster, its settings only in a 0600 file beside it", async () => {
    const printed = await shardhub(["service", "install"])
    expect(printed.code).toBe(0)
    // Node's own options first: a runner's heap is sized before any code runs.
    expect(printed.stdout).toContain(`ExecStart=${process.execPath} ${runnerNodeOptions.join(" ")} ${Path.join(root, "src/cli/main.ts")} up\n`)
    expect(printed.stdout).toMatch(/^KillMode=mixed$/m)
    const databaseUrl = clusterEnv(cluster.databaseUrl, cluster.home).DATABASE_URL!
    expect(printed.stdout + printed.stderr).not.toContain(databaseUrl)
    const dir = Path.join(cluster.home, "units")
    const written = (await ok("service", "install", "--runner", "--write", "--unit-dir", dir)).trim().split("\n")
    expect(written).toEqual([Path.join(dir, "shardhub-runner.service"), Path.join(dir, "shardhub-runner.env")])
    const unitText = Fs.readFileSync(written[0]!, "utf8")
    expect(unitText).toContain(`EnvironmentFile=${written[1]}\n`)
    expect(unitText).toMatch(new RegExp(`^ExecStart=\\S+ ${runnerNodeOptions.join(" ")} \\S+main\\.ts runner$`, "m"))
    expect(unitText).not.toContain(databaseUrl)
    expect(Fs.statSync(written[1]!).mode & 0o777).toBe(0o600)
    const settings = Fs.readFileSync(written[1]!, "utf8")
    expect(settings).toContain(`DATABASE_URL="${databaseUrl}"\n`)
    expect(settings).toContain(`SHARDHUB_HOME="${cluster.home}"\n`)
  })

  it("prints help from its cache exactly as the CLI does, and never for a command's own --help after --", async () => {
    const cache = Path.join(cluster.home, "cache")
    Fs.rmSync(cache, { recursive: true, force: true })
    const helps = () => Fs.readdirSync(cache).filter((file) => file.startsWith("help-"))
    for (const args of [["--help"], ["run", "--help"], []]) {
      const first = await ok(...args)
      const cached = helps().length
      expect(await ok(...args)).toBe(first)
      expect(helps()).toHaveLength(cached)
    }
    expect(helps()).toHaveLength(3)
    expect(Fs.statSync(cache).mode & 0o777).toBe(0o700)
    const id = (await ok("run", "--", "sh", "-c", "echo $0 $1", "--help")).trim()
    expect(helps()).toHaveLength(3)
    await ok("kill", id)

    // Node's compile cache is kept there too, private; one another user could write is not used.
    const compiled = Path.join(cache, "node")
    expect(Fs.statSync(compiled).mode & 0o777).toBe(0o700)
    expect(Fs.readdirSync(compiled, { recursive: true }).length).toBeGreaterThan(0)
    Fs.rmSync(compiled, { recursive: true, force: true })
    Fs.mkdirSync(compiled)
    Fs.chmodSync(compiled, 0o777)
    await ok("--version")
    expect(Fs.readdirSync(compiled)).toEqual([])
  })

  it("fails with one line and a non-zero code on bad input", async () => {
    for (const args of [
      ["info", "no-such-instance"],
      ["stop", "no-such-instance"],
      ["seq", "start", "no-such-sequence"],
      ["seq", "send", "/no/such/file"],
      ["seq", "start", "x", "--args", "{"],
      ["runner", "drain", "127.0.0.1:1"],
      ["runner", "drain", "not an address"],
      ["runner", "undrain", cluster.runners[0]!.address],
      ["run", "--bundle", "/no/such/dir", "--", "true"]
    ]) {
      const result = await shardhub(args)
      expect({ args, code: result.code }).toEqual({ args, code: 1 })
      expect(result.stderr.trim().split("\n")).toHaveLength(1)
      expect(result.stderr).toMatch(/^shardhub: /)
    }
  })

  it("maps PM2's restart and readiness keys and env_<name> blocks of an ecosystem file onto the spec", async () => {
    const dir = Path.join(cluster.home, "ecosystem-pm2")
    Fs.mkdirSync(dir, { recursive: true })
    const file = Path.join(dir, "ecosystem.config.json")
    Fs.writeFileSync(file, JSON.stringify({
      apps: [{
        name: "pm2-web",
        command: "sleep",
        args: "600",
        wait_ready: true,
        listen_timeout: 8000,
        max_restarts: 5,
        min_uptime: "2s",
        exp_backoff_restart_delay: 100,
        health: "http:8080/healthz",
        health_failures: 2,
        env: { MODE: "dev", KEEP: "yes" },
        env_production: { MODE: "prod" }
      }]
    }))
    const [step] = (await ok("apply", file, "--dry-run", "--json", "--env", "production")).trim().split("\n").map((line) => JSON.parse(line))
    expect(step.spec).toMatchObject({
      readiness: { _tag: "Message", timeoutMs: 8000 },
      liveness: { check: { _tag: "Http", port: 8080, path: "/healthz" }, failures: 2 },
      restart: { mode: "always", maxRestarts: 5, minUptimeMs: 2000, backoffMs: 100, backoffFactor: 1.5, backoffMaxMs: 15000 },
      env: { set: { MODE: "prod", KEEP: "yes" } }
    })
    // A key with a bad value is named, with its app.
    Fs.writeFileSync(file, JSON.stringify({ apps: [{ name: "pm2-bad", command: "sleep", health: "http:0/x" }] }))
    const bad = await shardhub(["apply", file])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/app pm2-bad: health "http:0\/x": a port is 1–65535/)
  })

  it("refuses bad deploy settings in one line naming the flag, starting nothing", async () => {
    const ids = async () => (JSON.parse(await ok("ps", "--all", "--json")) as Array<{ id: string }>).map((info) => info.id).sort()
    const before = await ids()
    for (const [flags, named] of [
      [["--ready", "udp:80"], /--ready "udp:80": unknown kind "udp"/],
      [["--ready", "tcp:70000"], /--ready "tcp:70000": a port is 1–65535/],
      [["--health", "http:8080/x", "--health-interval", "0"], /--health-interval 0: expected a whole number of at least 1/],
      [["--ready-timeout", "100"], /--ready-timeout is the time to be ready: give --ready too/],
      [["--max-restarts", "-1"], /--max-restarts -1: expected a whole number of at least 0/],
      [["--instances", "lots"], /--instances "lots": expected a whole number of at least 1, or max/],
      [["--cron", "61 * * * *"], /--cron "61 \* \* \* \*": expected a cron expression/]
    ] as const) {
      const result = await shardhub(["run", ...flags, "--", "sleep", "60"])
      expect({ flags, code: result.code }).toEqual({ flags, code: 1 })
      expect(result.stderr.trim().split("\n")).toHaveLength(1)
      expect(result.stderr).toMatch(named)
    }
    for (const [args, named] of [
      [["reload", "no-such-app"], /no-such-app/],
      [["reload", "all", "--parallel", "0"], /--parallel 0: expected at least 1/],
      [["scale", "no-such-app", "2"], /no-such-app/]
    ] as const) {
      const result = await shardhub(args)
      expect({ args, code: result.code }).toEqual({ args, code: 1 })
      expect(result.stderr).toMatch(named)
    }
    expect(await ids()).toEqual(before)
  })
})

describe("shardhub up", () => {
  it("brings up the store, two runners and the gateway, and takes them down on SIGTERM", async () => {
    const databaseUrl = await freshDatabase("up")
    const home = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-up-"))
    const runnerPort = await freePorts(2)
    const gatewayPort = await freePorts(1)
    const up = spawnNode("up", "src/cli/main.ts", {
      args: ["up", "--runners", "2", "--port", String(gatewayPort)],
      env: { ...clusterEnv(databaseUrl, home), SHARDHUB_RUNNER_PORT: String(runnerPort) }
    })
    // A hang (even one that ends in vitest's timeout) shows what `up` and its runners printed.
    onTestFailed(() => console.error(`----- output of shardhub up -----\n${up.output()}`))
    try {
      const [, url] = await up.waitFor(/gateway\s+(http:\/\/[^/\s]+)/, 90_000)
      const version = await fetch(`${url}/api/v1/version`).then((r) => r.json())
      expect(version).toMatchObject({ service: "shardhub" })
      expect(up.output()).toMatch(/runner-0 \| ready/)
      expect(up.output()).toMatch(/runner-1 \| ready/)
      // A sequence reaches the gateway that runs it as STH's `this.hub`.
      const host = new StHostClient(`${url}/api/v1`)
      const instance = await (await host.sendSequence(Readable.from([fixture("hub")]))).start({})
      const reported = await new Promise<string>((resolve, reject) => {
        let text = ""
        instance.getStream("output").then((output) => {
          output.on("data", (chunk: Buffer) => (text += chunk))
          output.on("end", () => resolve(text))
          output.on("error", reject)
        }, reject)
      })
      expect(JSON.parse(reported)).toEqual({ service: "shardhub", listed: true })

      // The CLI asks this gateway for ps, info, logs and runners (the quick path), and prints what
      // the full CLI prints (forced here by a gateway URL nobody answers).
      const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
        new Promise<string>((resolve, reject) => {
          ChildProcess.execFile(process.execPath, [Path.join(root, "src/cli/main.ts"), ...args], {
            env: { ...process.env, ...clusterEnv(databaseUrl, home), ...env }
          }, (error, stdout) => error ? reject(error) : resolve(stdout))
        })
      const full = { SHARDHUB_GATEWAY_URL: "http://127.0.0.1:1" }
      const id = (await cli(["run", "--name", "quick", "--", "sh", "-c", "echo one; echo two; sleep 600"])).trim()
      await eventually(async () => (await cli(["logs", id])).includes("two") || undefined, { what: "the log" })
      for (const args of [["ps", "--json"], ["ps", "-a", "--json"], ["info", id, "--json"], ["logs", id, "--tail", "1"], ["logs", id, "--json"]]) {
        expect({ args, quick: await cli(args) }).toEqual({ args, quick: await cli(args, full) })
      }
      expect(JSON.parse(await cli(["runners", "--json"])).map((r: { address: string }) => r.address))
        .toEqual(JSON.parse(await cli(["runners", "--json"], full)).map((r: { address: string }) => r.address))
      // stop, restart and kill of one id too (stopping an ended instance again prints the same).
      const stopped = await cli(["stop", id, "--timeout", "2000"])
      expect(stopped).toBe(`${id} stopped (SIGTERM)\n`)
      expect(await cli(["stop", id, "--timeout", "2000"], full)).toBe(stopped)
      expect(await cli(["restart", id])).toBe(`${id} running (restarts 1)\n`)
      expect(await cli(["kill", id])).toBe(`${id} stopped (SIGKILL)\n`)
      expect(up.output()).toMatch(new RegExp(`POST /api/shardhub/v1/instances/${id}/kill 200`))
      // It was the gateway that answered: its access log has the quick path's requests.
      expect(up.output()).toMatch(new RegExp(`GET /api/shardhub/v1/instances/${id}/logs\\?tail=1 200`))
      expect(up.output()).toMatch(/GET \/api\/shardhub\/v1\/instances 200/)
      // A gateway file others could have written is not trusted: the full path answers. (Asked
      // once more after, through the gateway: its access log then shows exactly one more.)
      const asked = () => up.output().match(/GET \/api\/shardhub\/v1\/instances\?all=true 200/g)?.length ?? 0
      const before = asked()
      Fs.chmodSync(Path.join(home, "gateway.json"), 0o644)
      expect(JSON.parse(await cli(["ps", "-a", "--json"])).map((info: { id: string }) => info.id)).toContain(id)
      Fs.chmodSync(Path.join(home, "gateway.json"), 0o600)
      await cli(["ps", "-a", "--json"])
      await eventually(async () => asked() > before || undefined, { what: "the gateway's access log line" })
      expect(asked()).toBe(before + 1)
      const runnerPids = [...up.output().matchAll(/runner-\d \| shardhub runner .* \(pid (\d+)\)/g)].map((m) => Number(m[1]))
      expect(runnerPids).toHaveLength(2)
      // Interrupted like Ctrl-C: exit code 130, after the runners left.
      expect(Fs.statSync(Path.join(home, "gateway.json")).mode & 0o777).toBe(0o600)
      const exit = await up.kill("SIGTERM")
      expect(exit.code).toBe(130)
      // The gateway's file goes with it: no CLI asks a gateway that is gone.
      expect(Fs.existsSync(Path.join(home, "gateway.json"))).toBe(false)
      for (const pid of runnerPids) expect(() => process.kill(pid, 0)).toThrow()
      expect(up.output()).not.toMatch(/Error/)
    } finally {
      await up.kill("SIGKILL")
      Fs.rmSync(home, { recursive: true, force: true })
    }
  }, 120_000)
})
