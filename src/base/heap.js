// V8's heap settings for shardhub's own processes (plain JavaScript: loaded before any
// TypeScript file).

import * as V8 from "node:v8"
import * as Vm from "node:vm"

// A process that relays bulk bytes (a runner, the gateway, the CLI) counts buffers outside V8's
// heap against its global limit. Every chunk Node reads from a socket or pipe is such a buffer,
// and by default V8 starts a full collection each time ~64 MiB more of them were allocated,
// whatever the heap: at hundreds of MiB/s that is dozens of full collections a second, each
// marking the whole heap of a runner (tens of MiB of live objects), and it was half of a runner's
// CPU on a stream (3 GiB through `cat`: 127 full collections, ~3 s of CPU per GiB; with this: 3
// collections, ~1.2 s per GiB).
// The buffers die young and are freed by the cheap young-generation collections either way.
export const accountExternalMemoryInGlobalLimit = () => V8.setFlagsFromString("--external-memory-accounted-in-global-limit")

// While bulk bytes flow through a runner (a data-port session is open), V8 may let the heap grow
// to 4× what was live after a full collection before it starts the next one. After a load of
// RPCs V8 sets that limit close to the live size, and the read buffers of a stream then cross
// it every ~100 ms: 21–24 full collections per GiB through `cat` (39–45 with the line log), the
// runner's CPU per GiB 2.5–3.5 s instead of 1.3–1.5. With 4× there were 0–1. It is only for
// while a stream runs: for good, it let 1,000 instances' garbage grow RSS by 100 MB.
let streams = 0
export const streamStarted = () => {
  if (streams++ === 0) V8.setFlagsFromString("--heap-growing-percent=300")
}
export const streamEnded = () => {
  if (--streams === 0) V8.setFlagsFromString("--heap-growing-percent=0")
}

// What a runner process is started with (given on the command line: V8 sizes its heap before
// any code runs). On a machine with a large heap limit V8 lets the young generation grow to
// 64 MiB per semi-space: under a burst of starts a runner's young generation went from 67 to
// 134 MB and stayed there. Capped at 32 MiB (where an empty runner's already is), 1,000 idle
// instances cost 111 KB of RSS each instead of 155-161, and their runner kept 309 MB after they
// stopped instead of 341-348 (and as much again when filled anew, instead of growing to 413).
// At 16 MiB they cost 89 KB but starts/s fell (229 against 297 at 32).
export const runnerNodeOptions = ["--max-semi-space-size=32"]

// A full collection on demand (see node/HeapSettler): V8's `gc`, exposed here if the process was
// not started with --expose-gc. After a full collection in a quiet process V8's memory reducer
// gives the freed pages back to the OS within seconds; without one, a runner that never idles
// kept them (1,000 instances stopped: 308 MB for minutes, against 139 MB ten seconds after one).
let gc
export const collectGarbage = () => {
  if (gc === undefined) {
    if (typeof globalThis.gc !== "function") V8.setFlagsFromString("--expose-gc")
    gc = typeof globalThis.gc === "function" ? globalThis.gc : Vm.runInNewContext("gc")
  }
  gc({ type: "major", execution: "sync" })
}
