#!/usr/bin/env node
// The `shardhub` command. Plain JavaScript so that Node's compile cache is on before the first
// TypeScript file loads (see compileCache.js); then `main.ts` decides.
import { enable } from "./compileCache.js"

enable()
await import("./main.ts")
