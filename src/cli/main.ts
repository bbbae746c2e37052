#!/usr/bin/env node
/**
 * The `shardhub` command's entry point. Most of a command's time is loading modules, so Node's
 * compile cache is turned on first (V8 code for every module, kept between runs in the OS
 * temporary directory), then the CLI is loaded.
 *
 * @since 0.5.0
 */
import * as Module from "node:module"

Module.enableCompileCache?.()
await import("./Cli.ts")
