/**
 * What an instance can reach of its runner, tried as a hostile program would: the runner's
 * environment (the store's URL and password, shardhub's settings), the store's password file,
 * the runner's state (supervisor token, other instances' logs), its memory (a flood of long
 * log lines), and how many instances it takes. And the rlimits a spec sets.
 */
import { Effect, Option, Stream } from "effect"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describe, expect, inject, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import type { InstanceSpec } from "../../src/instance/InstanceSpec.ts"
import { useCluster } from "../support/cluster.ts"
import { eventually } from "../support/processes.ts"

describe("instance isolation", () => {
  const cluster = useCluster("isolation", { runners: 1, env: { PGPASSWORD: "libpq-secret", npm_config__authToken: "npm-secret" } })
  const stateDir = () => Path.join(cluster.home, "runner-0")

  /** Runs a shell script as an instance to its end; its stdout lines and final record. */
  const runScript = (script: string, spec: Omit<InstanceSpec, "program"> = {}) =>
    cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const info = yield* host.start({ ...spec, program: { _tag: "Command", command: "sh", args: ["-c", script], cwd: "/" } })
      const lines = yield* instances.logs(info.id, { follow: true }).pipe(
        Stream.filter((line) => line.stream === "stdout"),
        Stream.map((line) => line.text),
        Stream.runCollect
      )
      return { lines: Array.from(lines), record: yield* host.get(info.id) }
    }))

  it("a child's environment holds none of the runner's secrets or settings, unless its spec passes one by name", async () => {
    cluster.printOnFailure()
    const { lines } = await runScript("env")
    const names = lines.map((line) => line.slice(0, line.indexOf("=")))
    expect(names).toContain("PATH")
    expect(names.filter((name) => name === "DATABASE_URL" || name.startsWith("PG") || name.startsWith("npm_"))).toEqual([])
    // Only the variables the manager sets for its own children.
    expect(names.filter((name) => name.startsWith("SHARDHUB_")).sort())
      .toEqual(["SHARDHUB_DATA_DIR", "SHARDHUB_EPOCH", "SHARDHUB_MESSAGE_CODEC", "SHARDHUB_MESSAGE_FD", "SHARDHUB_PROCESS_ID", "SHARDHUB_SUPERVISOR"])
    expect(lines.join("\n")).not.toMatch(/libpq-secret|npm-secret|postgres(ql)?:\/\//)

    const passed = await runScript("echo \"$DATABASE_URL\"; echo \"$PGPASSWORD\"", { env: { pass: ["DATABASE_URL", "PGPASSWORD"] } })
    expect(passed.lines).toEqual([cluster.databaseUrl, "libpq-secret"])
  })

  it("the runner's state is closed to others: directories 0700/0711, files 0600", async () => {
    cluster.printOnFailure()
    const { record } = await runScript("echo hi")
    const mode = (path: string) => Fs.statSync(path).mode & 0o777
    expect(mode(stateDir())).toBe(0o711)
    expect(mode(Path.join(stateDir(), "logs"))).toBe(0o700)
    expect(mode(Path.join(stateDir(), "data"))).toBe(0o711)
    expect(mode(Path.join(stateDir(), "token"))).toBe(0o600)
    expect(mode(Path.join(stateDir(), "owner.json"))).toBe(0o600)
    const logs = Fs.readdirSync(Path.join(stateDir(), "logs"))
    expect(logs.length).toBeGreaterThan(0)
    for (const log of logs) expect(mode(Path.join(stateDir(), "logs", log))).toBe(0o600)
    expect(record.status).toBe("stopped")
  })

  const root = process.getuid!() === 0

  it.runIf(root)("a child run as another user finds nothing of the store's password, the runner's token or other instances' logs", async () => {
    cluster.printOnFailure()
    await runScript("echo victim-secret")
    const password = Path.join(inject("storeHome"), "postgres", "password")
    expect(Fs.existsSync(password)).toBe(true)
    const logs = Fs.readdirSync(Path.join(stateDir(), "logs")).map((log) => Path.join(stateDir(), "logs", log))
    const targets = [password, Path.join(stateDir(), "token"), ...logs]
    const script = [
      "id -u; id -g",
      ...targets.map((target) => `cat '${target}' >/dev/null 2>&1 && echo "read ${target}" || echo "denied ${target}"`),
      `ls '${Path.join(stateDir(), "data")}' >/dev/null 2>&1 && echo listed || echo "not listed"`,
      "echo data > \"$SHARDHUB_DATA_DIR/own\" && echo \"own data dir ok\""
    ].join("; ")
    // The test's home is 0700: its data directory would be out of reach, and the start says so.
    const unreachable = await cluster.run(Effect.flip(Effect.flatMap(HostClient, (host) =>
      host.start({ user: "nobody", program: { _tag: "Command", command: "true", cwd: "/" } }))))
    expect(unreachable.message).toMatch(/uid 65534 cannot reach its data directory .*: .* is closed to it/)
    Fs.chmodSync(cluster.home, 0o711)
    const { lines } = await runScript(script, { user: "nobody" })
    expect(lines).toEqual([
      "65534",
      "65534",
      ...targets.map((target) => `denied ${target}`),
      "not listed",
      "own data dir ok"
    ])
  })

  it.runIf(!root)("a runner that is not root refuses to run a child as another user, with a clear error", async () => {
    const refused = await cluster.run(Effect.flip(Effect.flatMap(HostClient, (host) =>
      host.start({ user: "nobody", program: { _tag: "Command", command: "true" } }))))
    expect(refused.message).toMatch(/only a runner running as root/)
  })

  it("a flood of 64 KiB log lines leaves the runner's memory where it was (the log ring is bounded by bytes)", async () => {
    cluster.printOnFailure()
    const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(Fs.readFileSync(`/proc/${cluster.runners[0]!.pid}/status`, "utf8"))![1]) * 1024
    const before = rss()
    // 10,000 lines of 64 KiB (625 MiB): a ring of 10,000 lines would keep every one of them.
    const script = "head -c 65535 /dev/zero | tr '\\0' a > /tmp/.line-$$; i=0; while [ $i -lt 10000 ]; do cat /tmp/.line-$$; echo; i=$((i+1)); done; rm /tmp/.line-$$"
    const id = await cluster.run(Effect.map(Effect.flatMap(HostClient, (host) =>
      host.start({ log: ["stdout"], program: { _tag: "Command", command: "sh", args: ["-c", script], cwd: "/" } })), (info) => info.id))
    await eventually(async () => {
      const info = await cluster.run(Effect.flatMap(HostClient, (host) => host.get(id)))
      return info.status === "stopped" || undefined
    }, { what: "the flood to end", timeoutMs: 60_000 })
    const tail = await cluster.run(Effect.flatMap(InstanceClient, (instances) => Stream.runCollect(instances.logs(id, { tail: 3 }))))
    expect(Array.from(tail).map((line) => line.text)).toEqual(["a".repeat(65535), "a".repeat(65535), "a".repeat(65535)])
    // Measured: 70-140 MiB (V8's heap headroom after the flood passed through); before the ring
    // was bounded by bytes, 285 MiB after only 3,000 lines.
    expect(rss() - before).toBeLessThan(256 * 1024 * 1024)
  })

  it("applies the spec's rlimits to the program itself, and refuses unknown users", async () => {
    cluster.printOnFailure()
    const { lines } = await runScript("ulimit -n; ulimit -c; echo $$", { limits: { nofile: 64, core: 0 } })
    expect(lines.slice(0, 2)).toEqual(["64", "0"])
    const refused = await cluster.run(Effect.flip(Effect.flatMap(HostClient, (host) =>
      host.start({ user: "no-such-user-here", program: { _tag: "Command", command: "true" } }))))
    expect(refused.message).toMatch(/no such user: no-such-user-here/)
  })
})

describe("instance capacity", () => {
  const cluster = useCluster("capacity", { runners: 1, env: { SHARDHUB_MAX_INSTANCES: "2" } })

  it("a runner refuses a start beyond SHARDHUB_MAX_INSTANCES with a clear error, and takes starts again once one ends", async () => {
    cluster.printOnFailure()
    const start = () => cluster.run(Effect.flatMap(HostClient, (host) => host.start({ program: { _tag: "Command", command: "sleep", args: ["600"] } })))
    const [a] = [await start(), await start()]
    const refused = await cluster.run(Effect.flip(Effect.flatMap(HostClient, (host) =>
      host.start({ program: { _tag: "Command", command: "sleep", args: ["600"] } }))))
    expect(refused).toMatchObject({ _tag: "StartFailed", reason: "Capacity" })
    expect(refused.message).toMatch(/already runs 2 processes, its limit \(SHARDHUB_MAX_INSTANCES=2\)/)
    await cluster.run(Effect.flatMap(InstanceClient, (instances) => instances.kill(a!.id)))
    await eventually(async () => (await cluster.run(Effect.option(Effect.flatMap(HostClient, (host) =>
      host.start({ program: { _tag: "Command", command: "true" } }))))).pipe(Option.getOrUndefined), {
      what: "a start after one of the two ended"
    })
  })
})
