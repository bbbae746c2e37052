/**
 * A big package does not cost a runner its shards: it is uploaded as a stream and unpacked off
 * the event loop that refreshes the runner's shard locks and heartbeat. Checked with a real
 * 512 MiB package (a sparse file, packed by the system's tar) started on a runner that also runs
 * another instance: the runner's heartbeat never gets older than the lock expiration, and the
 * other instance keeps its process.
 */
import * as NodeStream from "@effect/platform-node/NodeStream"
import { Effect, Stream } from "effect"
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import { useCluster } from "../support/cluster.ts"
import { fastTimings, root } from "../support/processes.ts"

describe("a 512 MiB package", () => {
  const cluster = useCluster("bigpackage", { runners: 1 })

  it("is streamed up and unpacked while the runner keeps its heartbeat and its other instance", async () => {
    cluster.printOnFailure()
    const dir = Fs.mkdtempSync(Path.join(cluster.home, "big-"))
    const source = Path.join(dir, "package")
    Fs.mkdirSync(source)
    for (const file of ["package.json", "index.js"]) {
      Fs.copyFileSync(Path.join(root, "test/sequence/fixtures/passthrough", file), Path.join(source, file))
    }
    Fs.writeFileSync(Path.join(source, "big.bin"), "")
    Fs.truncateSync(Path.join(source, "big.bin"), 512 * 1024 * 1024 - 64 * 1024)
    const archive = Path.join(dir, "package.tar.gz")
    ChildProcess.execFileSync("tar", ["-czf", archive, "-C", source, "."])
    const archiveBytes = Fs.statSync(archive).size

    const other = await cluster.run(Effect.flatMap(HostClient, (host) =>
      host.start({ program: { _tag: "Command", command: "sleep", args: ["600"] } })))

    // The runner's heartbeat age, sampled while the package goes up and its first start unpacks it.
    let oldest = 0
    let sampling = true
    const sampler = (async () => {
      while (sampling) {
        const runners = await cluster.run(Effect.flatMap(HostClient, (host) => host.runners))
        for (const runner of runners) oldest = Math.max(oldest, runner.heartbeatAgeMs)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    })()
    const started = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const upload = NodeStream.fromReadable<Uint8Array, Error>({ evaluate: () => Fs.createReadStream(archive), onError: (error) => error as Error })
      const sequence = yield* host.sendSequence(upload)
      const instance = yield* host.startSequence(sequence.id, { timeoutMs: 120_000 })
      const echoed = yield* Effect.flatMap(InstanceClient, (instances) =>
        instances.inout(instance.id, Stream.make(new TextEncoder().encode("through"))).pipe(Stream.runCollect))
      return { sequence, echoed: Buffer.concat(Array.from(echoed)).toString() }
    }))
    sampling = false
    await sampler
    Fs.rmSync(dir, { recursive: true, force: true })

    expect(started.sequence.size).toBe(archiveBytes)
    expect(started.echoed).toBe("through")
    // A heartbeat older than the lock expiration is a lost lease (the runner would give up its shards).
    expect(oldest).toBeLessThan(Number.parseFloat(fastTimings.SHARDHUB_SHARD_LOCK_EXPIRATION!) * 1000)
    const still = await cluster.run(Effect.flatMap(HostClient, (host) => host.get(other.id)))
    expect(still).toMatchObject({ status: "running", pid: other.pid, restarts: 0 })
  }, 240_000)
})
