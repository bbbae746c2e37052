#!/usr/bin/env node
/**
 * The `shardhub` command, after `bin.js` (the bin) turned Node's compile cache on. Most of a
 * command's time is loading modules, so the cache is turned on here too when this file is run
 * directly (V8 code for every module, kept between runs in `$SHARDHUB_HOME/cache/node`); help
 * that was printed before is printed from its cache without loading
 * the CLI at all (`HelpCache.ts`); `ps`, `info`, `runners` and `logs` are asked of the local
 * gateway when one serves this cluster (`Quick.ts`); anything else loads the CLI.
 *
 * @since 0.5.0
 */
import { enable } from "./compileCache.js"
import { accountExternalMemoryInGlobalLimit } from "../base/heap.js"
import * as HelpCache from "./HelpCache.ts"

// The gateway, `up` and `runner` relay bulk bytes (see heap.js).
accountExternalMemoryInGlobalLimit()
enable()
const args = process.argv.slice(2)
if (!HelpCache.printCached(args) && !(await (await import("./Quick.ts")).answer(args))) {
  HelpCache.record(args)
  await import("./Cli.ts")
}
