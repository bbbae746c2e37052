// Node's compile cache for the CLI (plain JavaScript: it must load before any TypeScript file).
// A cached module skips both compiling and type-stripping, which is most of a short command's
// time. The cache is kept in $SHARDHUB_HOME/cache/node, private to the user: a cache directory
// another user could write (Node's default is one shared directory under /tmp) would let them
// put code into this user's commands.
import * as Fs from "node:fs"
import * as Module from "node:module"
import * as Os from "node:os"
import * as Path from "node:path"

export const enable = () => {
  if (Module.enableCompileCache === undefined) return
  const dir = Path.join(Path.resolve(process.env.SHARDHUB_HOME ?? Path.join(Os.homedir(), ".shardhub")), "cache", "node")
  try {
    Fs.mkdirSync(dir, { recursive: true, mode: 0o700 })
    if ((Fs.statSync(dir).mode & 0o077) !== 0 || Fs.statSync(dir).uid !== process.getuid?.()) return
  } catch {
    return
  }
  Module.enableCompileCache(dir)
}

/** Writes what was compiled so far (a long-lived process may never exit cleanly). */
export const flush = () => Module.flushCompileCache?.()
