/**
 * Spares (process/Spares): a spawn is served by a process started ahead — but never by one that
 * died while its exit was still on its way (killed from outside, say by the OOM killer).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import { EventEmitter } from "node:events"
import * as Path from "node:path"
import * as Spares from "../../src/process/Spares.ts"
import * as Spawner from "../../src/process/Spawner.ts"
import { processState } from "../support/processes.ts"

const program = Path.join(import.meta.dirname, "fixtures/spare.cjs")
const options: Spawner.Options = { env: {}, stdio: ["ignore", "pipe", "pipe", "pipe"], detached: true, spare: true }

/** Whether `pid` is gone or a zombie. */
const dead = (pid: number) => {
  const state = processState(pid)
  return state === undefined || state === "Z"
}

const spawn = (spawner: Spawner.Spawner) =>
  Effect.callback<Spawner.Child, Error>((resume) =>
    spawner.spawn(process.execPath, [program], options, (child) => resume(child instanceof Error ? Effect.fail(child) : Effect.succeed(child))))

/** The first line a child writes on stdout. */
const firstLine = (child: Spawner.Child) =>
  Effect.callback<string>((resume) => {
    let text = ""
    child.stdio[1]!.on("data", (chunk: Buffer) => {
      text += chunk.toString("utf8")
      if (text.includes("\n")) resume(Effect.succeed(text.split("\n")[0]!))
    })
    child.stdio[1]!.on("end", () => resume(Effect.succeed(text)))
  })

describe("spares", () => {
  it.live("serve a spawn with a live spare, and never with one that died before its exit arrived", () =>
    Effect.gen(function*() {
      const real = yield* Spawner.acquire
      // The spares' exits are held back, as when one died a moment before a spawn asked for it.
      const spares: Array<Spawner.Child> = []
      const holdingExits: Spawner.Spawner = {
        spawn: (file, args, opts, done) =>
          real.spawn(file, args, opts, (child) => {
            if (child instanceof Error || !args.includes("--spare")) return done(child)
            const silent = Object.assign(new EventEmitter(), { pid: child.pid, stdio: child.stdio, listening: child.listening })
            spares.push(silent)
            done(silent)
          })
      }
      const spawner = Spares.make(holdingExits)
      yield* Effect.addFinalizer(() => Effect.sync(spawner.close))
      const first = yield* Effect.flatMap(spawn(spawner), firstLine)
      expect(first).toMatch(/^spawned \d+$/)
      // A live spare serves the next spawn.
      yield* Effect.sync(() => spares.length).pipe(Effect.repeat({ until: (n) => n === 1, schedule: Schedule.spaced("10 millis") }))
      const served = yield* Effect.flatMap(spawn(spawner), firstLine)
      expect(served).toBe(`became ${spares[0]!.pid}`)
      // The next spare dies; its spawn falls back to a new process.
      yield* Effect.sync(() => spares.length).pipe(Effect.repeat({ until: (n) => n === 2, schedule: Schedule.spaced("10 millis") }))
      const killed = spares[1]!.pid
      // Killed and asked for in one turn of the event loop: nothing of its end was read here yet.
      const fallback = yield* Effect.suspend(() => {
        process.kill(killed, "SIGKILL")
        while (!dead(killed)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1)
        return spawn(spawner)
      }).pipe(Effect.flatMap(firstLine))
      expect(fallback).toMatch(/^spawned \d+$/)
      expect(fallback).not.toBe(`spawned ${killed}`)
    }).pipe(Effect.scoped))
})
