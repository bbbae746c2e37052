/**
 * The instance registry on a real Postgres: idempotent starts by start key, exactly one winner
 * among concurrent starts of one id, epoch fencing of stale owners, listing, desired state and
 * retention.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Exit, Layer, Option, Redacted } from "effect"
import * as Store from "../../src/store/Store.ts"
import type { InstanceSpec } from "../../src/instance/InstanceSpec.ts"
import * as Registry from "../../src/instance/Registry.ts"
import { freshDatabase } from "../support/database.ts"

const registryLayer = Layer.unwrap(Effect.promise(() => freshDatabase("registry")).pipe(
  Effect.map((url) =>
    Registry.layer.pipe(
      Layer.provide(Store.layer(
        { databaseUrl: Option.some(Redacted.make(url)), home: "/nonexistent", durable: false, binaryCache: "/nonexistent" },
        { applicationName: "shardhub-test" }
      ))
    )
  )
))

const cat: InstanceSpec = { program: { _tag: "Command", command: "cat", args: ["-u"] }, name: "a cat" }
const sequence: InstanceSpec = {
  program: { _tag: "Sequence", sequenceId: "seq-1", args: [1, "two"], appConfig: { deep: { list: [1, 2] } } },
  env: { set: { MODE: "x" } },
  limits: { memoryMb: 256 },
  restart: { mode: "on-failure", maxRestarts: 3 }
}
let counter = 0
const freshId = (label: string) => `${label}-${process.pid}-${counter++}`

describe("instance registry", () => {
  layer(registryLayer, { timeout: 120_000, excludeTestServices: true })((it) => {
    it.effect("records a start; the same start key again is idempotent, another one is refused", () =>
      Effect.gen(function*() {
        const registry = yield* Registry.Registry
        const id = freshId("start")
        const { created, info } = yield* registry.create(id, cat, "key-1")
        expect(created).toBe(true)
        expect(info).toMatchObject({ id, name: "a cat", spec: cat, desired: "running", status: "starting", epoch: 0, restarts: 0, crashLog: [] })
        expect(yield* registry.get(id)).toEqual(info)
        expect(yield* registry.create(id, cat, "key-1")).toEqual({ created: false, info })
        expect(yield* Effect.flip(registry.create(id, cat, "key-2"))).toMatchObject({ _tag: "InstanceAlreadyExists", id })
        expect(yield* Effect.flip(registry.get("nope"))).toMatchObject({ _tag: "InstanceNotFound", id: "nope" })

        const other = freshId("sequence")
        expect((yield* registry.create(other, sequence, "k")).info.spec).toEqual(sequence)
      }))

    it.effect("of many concurrent starts of one id, exactly one creates it", () =>
      Effect.gen(function*() {
        const registry = yield* Registry.Registry
        for (let round = 0; round < 5; round++) {
          const id = freshId("race")
          const exits = yield* Effect.all(
            Array.from({ length: 20 }, (_, i) => Effect.exit(registry.create(id, cat, `key-${i}`))),
            { concurrency: "unbounded" }
          )
          const winners = exits.filter(Exit.isSuccess)
          expect(winners).toHaveLength(1)
          expect(winners[0]!.value.created).toBe(true)
          for (const exit of exits.filter(Exit.isFailure)) expect(String(exit.cause)).toContain("InstanceAlreadyExists")
        }
      }))

    it.effect("claims fence out stale owners: only the newest epoch's reports land", () =>
      Effect.gen(function*() {
        const registry = yield* Registry.Registry
        const id = freshId("claim")
        yield* registry.create(id, cat, "k")
        const first = yield* registry.claim(id, "127.0.0.1:1")
        expect(first).toMatchObject({ epoch: 1, runner: "127.0.0.1:1" })
        const startedAt = Date.now()
        expect(Option.isSome(yield* registry.report(id, first.epoch, { status: "running", pid: 4242, startedAt }))).toBe(true)
        expect(yield* registry.get(id)).toMatchObject({ status: "running", pid: 4242, startedAt })

        // Many runners claim at once: each gets its own epoch, and only the last one may report.
        const claims = yield* Effect.all(
          Array.from({ length: 10 }, (_, i) => registry.claim(id, `127.0.0.1:${100 + i}`)),
          { concurrency: "unbounded" }
        )
        expect(claims.map((claim) => claim.epoch).sort((a, b) => a - b)).toEqual(Array.from({ length: 10 }, (_, i) => i + 2))
        const newest = claims.reduce((a, b) => (a.epoch > b.epoch ? a : b))
        for (const claim of claims) {
          const landed = yield* registry.report(id, claim.epoch, { status: "crashed", exitCode: claim.epoch })
          expect(Option.isSome(landed)).toBe(claim === newest)
        }
        expect(Option.isNone(yield* registry.report(id, first.epoch, { status: "stopped" }))).toBe(true)
        const after = yield* registry.get(id)
        expect(after).toMatchObject({ status: "crashed", exitCode: newest.epoch, runner: newest.runner, epoch: newest.epoch })

        const endedAt = Date.now()
        expect(Option.isSome(yield* registry.report(id, newest.epoch, { pid: null, endedAt, crashLog: ["boom", "line 2"], reason: "MemoryLimitExceeded", signal: "SIGKILL" }))).toBe(true)
        const ended = yield* registry.get(id)
        expect(ended.pid).toBeUndefined()
        expect(ended).toMatchObject({ endedAt, crashLog: ["boom", "line 2"], reason: "MemoryLimitExceeded", signal: "SIGKILL" })
        expect(Option.isSome(yield* registry.report(id, newest.epoch, {}))).toBe(true)
        expect(yield* Effect.flip(registry.claim("nope", "x"))).toMatchObject({ _tag: "InstanceNotFound" })
      }))

    it.effect("lists by status, keeps desired state, and purges only what ended before a time", () =>
      Effect.gen(function*() {
        const registry = yield* Registry.Registry
        const live = freshId("live")
        const old = freshId("old")
        const recent = freshId("recent")
        for (const id of [live, old, recent]) yield* registry.create(id, cat, "k")
        for (const id of [old, recent]) {
          const { epoch } = yield* registry.claim(id, "r")
          yield* registry.report(id, epoch, { status: "stopped", endedAt: id === old ? Date.now() - 60_000 : Date.now() })
        }
        const stopped = (yield* registry.list({ statuses: ["stopped"] })).map((info) => info.id)
        expect(stopped).toContain(old)
        expect(stopped).toContain(recent)
        expect(stopped).not.toContain(live)
        expect(yield* registry.list({ statuses: [] })).toEqual([])
        expect((yield* registry.list()).map((info) => info.id)).toEqual(expect.arrayContaining([live, old, recent]))

        expect((yield* registry.setDesired(live, "stopped")).desired).toBe("stopped")
        expect(yield* Effect.flip(registry.setDesired("nope", "stopped"))).toMatchObject({ _tag: "InstanceNotFound" })

        const purged = yield* registry.purgeEnded(Date.now() - 30_000)
        expect(purged).toContain(old)
        expect(purged).not.toContain(recent)
        expect(purged).not.toContain(live)
        expect(yield* Effect.flip(registry.get(old))).toMatchObject({ _tag: "InstanceNotFound" })
      }))
  })
})
