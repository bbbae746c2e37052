// V8's heap settings for shardhub's own processes (plain JavaScript: loaded before any
// TypeScript file).

import * as V8 from "node:v8"

// A process that relays bulk bytes (a runner, the gateway, the CLI) counts buffers outside V8's
// heap against its global limit. Every chunk Node reads from a socket or pipe is such a buffer,
// and by default V8 starts a full collection each time ~64 MiB more of them were allocated,
// whatever the heap: at hundreds of MiB/s that is dozens of full collections a second, each
// marking the whole heap of a runner (tens of MiB of live objects), and it was half of a runner's
// CPU on a stream (3 GiB through `cat`: 127 full collections, ~3 s of CPU per GiB; with this: 3
// collections, ~1.2 s per GiB).
// The buffers die young and are freed by the cheap young-generation collections either way.
export const accountExternalMemoryInGlobalLimit = () => V8.setFlagsFromString("--external-memory-accounted-in-global-limit")

// What a runner process is started with (given on the command line: V8 sizes its heap before
// any code runs). On a machine with a large heap limit V8 lets the young generation grow to
// 64 MiB per semi-space: under a burst of starts a runner's young generation went from 67 to
// 134 MB and stayed there. Capped at 32 MiB (where an empty runner's already is), 1,000 idle
// instances cost 111 KB of RSS each instead of 155-161, and their runner kept 309 MB after they
// stopped instead of 341-348 (and as much again when filled anew, instead of growing to 413).
// At 16 MiB they cost 89 KB but starts/s fell (229 against 297 at 32).
export const runnerNodeOptions = ["--max-semi-space-size=32"]
