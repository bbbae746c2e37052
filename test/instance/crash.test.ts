/**
 * Crash detection: a runner proven dead — its store sessions ended and its runner port refuses
 * connections — hands its instances over at once, without waiting for its lock expiry (60 s
 * here, with the ping health check out of the way). A runner that only looks dead — frozen, its
 * sessions ended behind its back — is not taken over early: its port still accepts.
 */
import { Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import { refuses } from "../../src/liveness/CrashDetection.ts"
import { useCluster } from "../support/cluster.ts"
import { eventually, processState } from "../support/processes.ts"
import { query } from "../support/sql.ts"

const listening = (server: Net.Server) =>
  new Promise<number>((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as Net.AddressInfo).port)))

describe("crash probe", () => {
  it("a port refuses only when nothing listens: a live listener and a frozen one accept", async () => {
    const server = Net.createServer((socket) => socket.destroy())
    const port = await listening(server)
    expect(await Effect.runPromise(refuses("127.0.0.1", port))).toBe(false)
    await new Promise((resolve) => server.close(resolve))
    expect(await Effect.runPromise(refuses("127.0.0.1", port))).toBe(true)

    // A stopped process's listener still accepts: the kernel completes the handshake for it.
    const frozen = ChildProcess.spawn(process.execPath, ["-e",
      "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>console.log(s.address().port))"], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    try {
      const frozenPort = await new Promise<number>((resolve) => frozen.stdout.once("data", (data) => resolve(Number(String(data).trim()))))
      frozen.kill("SIGSTOP")
      expect(await Effect.runPromise(refuses("127.0.0.1", frozenPort))).toBe(false)
    } finally {
      frozen.kill("SIGKILL")
    }
  })
})

describe("crash detection", () => {
  const cluster = useCluster("crash", {
    runners: 2,
    env: { SHARDHUB_SHARD_LOCK_EXPIRATION: "60 seconds", SHARDHUB_HEALTH_CHECK: "10 minutes" }
  })

  const beating = async (beats: string) => {
    const script = `while :; do echo "$$ $(date +%s%3N)" >> '${beats}'; sleep 0.05; done`
    return cluster.run(Effect.flatMap(HostClient, (host) =>
      host.start({ program: { _tag: "Command", command: "sh", args: ["-c", script], cwd: "/" } })))
  }
  const info = (id: string) => cluster.run(Effect.flatMap(HostClient, (host) => host.get(id)))

  it("a frozen runner whose store sessions were ended keeps its instance: nobody starts a second copy", async () => {
    cluster.printOnFailure()
    const beats = Path.join(cluster.home, "frozen-beats")
    const started = await beating(beats)
    const owner = cluster.runners.find((runner) => runner.address === started.runner)!
    owner.child.kill("SIGSTOP")
    try {
      // Its sessions end behind its back, as when the store or a proxy drops them.
      await query(cluster.databaseUrl, (sql) =>
        sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE ${"% " + owner.address}`)
      // Absence cannot be awaited: watch for 3 s (20 assignment rounds of the other runner).
      const until = Date.now() + 3000
      while (Date.now() < until) {
        const now = await info(started.id)
        expect({ runner: now.runner, epoch: now.epoch }).toEqual({ runner: started.runner, epoch: started.epoch })
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
      const pids = new Set(Fs.readFileSync(beats, "utf8").trim().split("\n").map((line) => line.split(" ")[0]))
      expect([...pids]).toEqual([String(started.pid)])
    } finally {
      owner.child.kill("SIGCONT")
    }
    await cluster.run(Effect.flatMap(InstanceClient, (instances) => instances.kill(started.id)).pipe(Effect.ignore))
  }, 60_000)

  it("a runner killed with SIGKILL hands its instance over at once, long before its 60 s lock expiry", async () => {
    cluster.printOnFailure()
    const beats = Path.join(cluster.home, "crash-beats")
    const started = await beating(beats)
    const owner = cluster.runners.find((runner) => runner.address === started.runner)!
    await owner.kill("SIGKILL")
    const moved = await eventually(async () => {
      const now = await info(started.id)
      return now.status === "running" && now.runner !== owner.address ? now : undefined
    }, { what: "the instance running on the other runner", timeoutMs: 30_000 })
    expect(moved.epoch).toBeGreaterThan(started.epoch)
    // The crashed runner's copy died with it (its reaper), before the new one began.
    expect([undefined, "Z"]).toContain(processState(started.pid!))
    await eventually(async () => Fs.readFileSync(beats, "utf8").includes(`${moved.pid} `) || undefined, { what: "the new copy's beats" })
    const lines = Fs.readFileSync(beats, "utf8").trim().split("\n").map((line) => line.split(" ").map(Number) as [number, number])
    const oldLast = Math.max(...lines.filter(([pid]) => pid === started.pid).map(([, time]) => time))
    const newFirst = Math.min(...lines.filter(([pid]) => pid === moved.pid).map(([, time]) => time))
    expect(oldLast).toBeLessThan(newFirst)
  }, 60_000)
})
