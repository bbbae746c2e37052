/**
 * Portable programs: a command with a bundle (a directory stored in the cluster) runs in its own
 * unpacked copy on whichever runner runs it, and still finds its files after its runner was
 * SIGKILLed and it came back on another runner (whose state directory never saw them). Hostile
 * archives, unknown bundles and a cwd out of the bundle are refused with a clear error.
 */
import { Effect, Stream } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Zlib from "node:zlib"
import { describe, expect, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import type { InstanceSpec } from "../../src/instance/InstanceSpec.ts"
import * as Pack from "../../src/sequence/Pack.ts"
import { useCluster } from "../support/cluster.ts"
import { eventually } from "../support/processes.ts"
import { query } from "../support/sql.ts"

/** A directory with a script that prints a file of its own, then stays up. */
const program = () => {
  const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-bundle-"))
  const token = Crypto.randomUUID()
  Fs.mkdirSync(Path.join(dir, "lib"))
  Fs.writeFileSync(Path.join(dir, "lib", "token.txt"), token)
  Fs.writeFileSync(Path.join(dir, "run.sh"), "#!/bin/sh\necho \"token $(cat lib/token.txt) in $(pwd)\"\nexec sleep 600\n", { mode: 0o755 })
  return { dir, token }
}

describe("bundles", () => {
  const cluster = useCluster("bundle", { runners: 2 })
  const host = <A, E>(f: (host: HostClient["Service"]) => Effect.Effect<A, E>) => cluster.run(Effect.flatMap(HostClient, f))
  const lines = (id: string) =>
    cluster.run(Effect.flatMap(InstanceClient, (instances) => Stream.runCollect(instances.logs(id)))).then((all) => all.map((line) => line.text))

  it("runs a bundled command in its files on any runner, and again on another after its runner was killed", async () => {
    cluster.printOnFailure()
    const { dir, token } = program()
    const bundle = await host((host) => host.sendBundle(Pack.packDirectory(dir)))
    expect(bundle.hash).toMatch(/^[0-9a-f]{64}$/)
    // The same files are the same bundle.
    expect((await host((host) => host.sendBundle(Pack.packDirectory(dir)))).hash).toBe(bundle.hash)

    const spec: InstanceSpec = { program: { _tag: "Command", command: "./run.sh", bundle: bundle.hash }, restart: { mode: "always" } }
    const first = await host((host) => host.start(spec))
    const printed = await eventually(async () => (await lines(first.id)).find((line) => line.startsWith("token")), { what: "the token line" })
    const [, seen, , where] = printed.split(" ")
    expect(seen).toBe(token)
    // Its own unpacked copy, in the state of the runner that runs it.
    const owner = cluster.runners.find((r) => r.address === first.runner)!
    expect(where!.startsWith(Path.join(cluster.home, owner.name))).toBe(true)
    expect(where).not.toBe(dir)

    await owner.kill("SIGKILL")
    const moved = await eventually(async () => {
      const info = await host((host) => host.get(first.id))
      return info.status === "running" && info.runner !== first.runner ? info : undefined
    }, { timeoutMs: 30_000, what: "the instance on the other runner" })
    const other = cluster.runners.find((r) => r.address === moved.runner)!
    const again = await eventually(async () =>
      (await lines(first.id)).find((line) => line.startsWith("token") && line.includes(Path.join(cluster.home, other.name))), { what: "the token line on the other runner" })
    expect(again.split(" ")[1]).toBe(token)
    await cluster.run(Effect.flatMap(InstanceClient, (instances) => instances.kill(first.id)))
    // Back to two runners for the next case.
    await cluster.startRunner("runner-2")
    await cluster.waitForShards()
  }, 120_000)

  it("refuses hostile archives, unknown bundles and a cwd out of its bundle, storing and starting nothing", async () => {
    const stored = async () => Number((await query<{ n: number }>(cluster.databaseUrl, (sql) => sql`SELECT count(*)::int AS n FROM shardhub_bundles`))[0]!.n)
    const before = await stored()
    for (const [entries, reason] of [
      [[{ type: "file", path: "../escape", data: "owned" }], "PathTraversal"],
      [[{ type: "file", path: "/etc/owned", data: "owned" }], "AbsolutePath"],
      [[{ type: "symlink", path: "out", target: "../../etc/passwd" }], "SymlinkEscape"]
    ] as const) {
      const error = await host((host) => Effect.flip(host.sendBundle(Zlib.gzipSync(Pack.tar(entries)))))
      expect(error).toMatchObject({ _tag: "PackageError", reason })
    }
    expect(await host((host) => Effect.flip(host.sendBundle(new Uint8Array([1, 2, 3]))))).toMatchObject({ _tag: "PackageError", reason: "Corrupt" })
    expect(await stored()).toBe(before)

    const unknown = await host((host) => Effect.flip(host.start({ program: { _tag: "Command", command: "true", bundle: "0".repeat(64) } })))
    expect(unknown).toMatchObject({ _tag: "InvalidSpec" })
    expect(unknown.message).toContain(`no bundle ${"0".repeat(64)}`)

    const { dir } = program()
    const { hash } = await host((host) => host.sendBundle(Pack.packDirectory(dir)))
    const outside = await host((host) => Effect.flip(host.start({ program: { _tag: "Command", command: "true", bundle: hash, cwd: "../.." } })))
    expect(outside).toMatchObject({ _tag: "InvalidSpec", message: `cwd "../.." is outside the bundle` })
    const malformed = await host((host) => Effect.flip(host.start({ program: { _tag: "Command", command: "true", bundle: "not-a-hash" } } as InstanceSpec)))
    expect(malformed).toMatchObject({ _tag: "InvalidSpec" })
  })
})
