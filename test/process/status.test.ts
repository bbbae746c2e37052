/**
 * The status machine and the restart policy, driven by many random event sequences: a terminal
 * status is final, only the documented transitions happen, and every refused attempt is reported
 * by name (never a silent refusal); the policy's delays grow and reset as documented.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import type { Status, Terminal } from "../../src/process/ProcessStatus.ts"
import * as RestartPolicy from "../../src/process/RestartPolicy.ts"
import * as StatusMachine from "../../src/process/StatusMachine.ts"

const random = (seed: number) => () => {
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
}

const exited: Terminal = { _tag: "Exited", code: 1, crashLog: [] }
const legal: Record<string, ReadonlyArray<Status["_tag"]>> = {
  spawned: ["Starting"],
  ready: ["Running"],
  stopping: ["Running", "Ready"],
  backoff: ["Starting", "Running", "Ready", "Stopping"],
  restarting: ["Backoff"],
  ended: ["Starting", "Running", "Ready", "Stopping", "Backoff"]
}
const target: Record<string, Status["_tag"]> = {
  spawned: "Running",
  ready: "Ready",
  stopping: "Stopping",
  backoff: "Backoff",
  restarting: "Starting",
  ended: "Exited"
}

describe("status machine", () => {
  it("moves only along named transitions, reports every illegal attempt, and never leaves a terminal status", () => {
    const next = random(7)
    for (let iteration = 0; iteration < 500; iteration++) {
      const bugs: Array<string> = []
      const machine = StatusMachine.make("p", (message) => bugs.push(message))
      const steps: Record<string, () => boolean> = {
        spawned: () => machine.spawned(100, 1),
        ready: () => machine.ready(2),
        stopping: () => machine.stopping(),
        backoff: () => machine.backoff(3, exited),
        restarting: () => machine.restarting(),
        ended: () => machine.ended(exited)
      }
      const names = Object.keys(steps)
      for (let step = 0; step < 12; step++) {
        const name = names[Math.floor(next() * names.length)]!
        const before = machine.current()._tag
        const reported = bugs.length
        const moved = steps[name]!()
        expect(moved).toBe(legal[name]!.includes(before))
        if (moved) {
          expect(machine.current()._tag).toBe(target[name])
          expect(bugs.length).toBe(reported)
        } else {
          expect(machine.current()._tag).toBe(before)
          expect(bugs.at(-1)).toBe(`process p: illegal transition '${name}' from ${before}`)
        }
      }
    }
  })

  it.effect("changes replays the status now and ends after the terminal one", () =>
    Effect.gen(function*() {
      const machine = StatusMachine.make("p", () => {})
      machine.spawned(100, 1)
      const seen = yield* Effect.forkChild(Stream.runCollect(machine.changes))
      yield* Effect.yieldNow
      machine.ready(2)
      machine.stopping()
      machine.ended(exited)
      const tags = Array.from(yield* Fiber.join(seen), (status) => status._tag)
      expect(tags).toEqual(["Running", "Ready", "Stopping", "Exited"])
    }))
})

describe("restart policy", () => {
  const restart = {
    mode: "on-failure" as const,
    maxRestarts: 3,
    windowMs: 10_000,
    backoffMs: 100,
    backoffMaxMs: 300,
    backoffFactor: 2,
    minUptimeMs: 1_000
  }

  it("backs off exponentially up to the cap, resets after a run that stayed up, and stops at the limit", () => {
    const policy = RestartPolicy.make({ ...restart, maxRestarts: 5 })
    const delays = [0, 1, 2, 3].map((i) => policy.next(exited, 10, i * 10))
    expect(delays).toEqual([100, 200, 300, 300].map((delayMs) => ({ _tag: "Restart", delayMs })))
    expect(policy.next(exited, 5_000, 100)).toEqual({ _tag: "Restart", delayMs: 100 })
    const final = policy.next(exited, 10, 200)
    expect(final).toMatchObject({ _tag: "Final", terminal: { _tag: "Failed", reason: "RestartLimitReached", code: 1 } })
  })

  it("on-failure ends a clean exit; never ends everything; the window forgets old restarts", () => {
    const clean: Terminal = { _tag: "Exited", code: 0, crashLog: [] }
    expect(RestartPolicy.make(restart).next(clean, 10, 0)).toEqual({ _tag: "Final", terminal: clean })
    expect(RestartPolicy.make({ ...restart, mode: "never" }).next(exited, 10, 0)).toEqual({ _tag: "Final", terminal: exited })
    const policy = RestartPolicy.make(restart)
    for (let i = 0; i < 3; i++) expect(policy.next(exited, 10, 0)._tag).toBe("Restart")
    expect(policy.next(exited, 10, 1_000)._tag).toBe("Final")
    expect(policy.next(exited, 10, 20_000)._tag).toBe("Restart")
  })
})
