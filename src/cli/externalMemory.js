// V8's heap tuning for a process that relays bulk bytes (a runner, the gateway, the CLI).
//
// Every chunk Node reads from a socket or pipe is a new buffer outside V8's heap. By default V8
// starts a full collection each time ~64 MiB more of such memory was allocated, whatever the
// heap: at hundreds of MiB/s that is dozens of full collections a second, each marking the whole
// heap of a runner (tens of MiB of live objects), and it was half of a runner's CPU on a stream
// (1 GiB through `cat`: 127 full collections, ~3 s of CPU; with this: 3, ~1.2 s). The buffers
// die young and are freed by the cheap young-generation collections either way; this only lets
// V8 count them against its global limit instead of the fixed one.
import * as V8 from "node:v8"

export const accountExternalMemoryInGlobalLimit = () => V8.setFlagsFromString("--external-memory-accounted-in-global-limit")
