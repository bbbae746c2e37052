// The spawner: a tiny helper process (plain JavaScript, no dependencies) that forks and execs the
// ProcessManager's children on its behalf.
//
//   node spawner.js        (forked by the manager with an IPC channel)
//
// Why: Node spawns with fork(), whose cost grows with the parent's memory. A runner holding a
// few hundred MB spent ~11 ms of its event loop per spawn (40–50 % of its time while starting
// instances); this process stays at Node's baseline, so a spawn here costs a fraction of that
// and the runner's loop never blocks on one.
//
// Protocol (Node's JSON IPC):
//   ← { id, file, args, options }             spawn with child_process options (stdio of
//                                              "pipe" / "ignore", or "listen": a TCP socket
//                                              listening on 127.0.0.1, bound here, whose only
//                                              copy the child keeps)
//   → { id, pid, pipes: [fd, …], listening }   spawned (`listening`: the port of a "listen"
//                                              fd); then one message per pipe, in that order:
//   → { id, fd } + the pipe's handle           the manager's end of the child's fd (this process
//                                              never reads or writes it, and closes its copy once
//                                              the manager has it)
//   → { id, exit: [code, signal] }             the child exited (sent after its pipes)
//   → { id, error: { code, message, … } }      the OS refused the spawn
//
// It leaves nothing behind: when the channel closes (the manager exited or died) it exits; its
// children are then the reaper's to kill. It runs in its own session and ignores the terminal's
// signals, so a Ctrl-C reaches the manager (which stops its children gracefully) and not this.
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"

for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => {})
process.on("disconnect", () => process.exit(0))

const refused = (id, error) => {
  const { code, errno, syscall, path, message } = error
  process.send({ id, error: { code, errno, syscall, path, message } })
}

/**
 * A listening socket on a free loopback port for a "listen" fd: bound here, so the port is known
 * to belong to the child (which cannot point a client at another program's port), and closed
 * here once the child holds its copy.
 */
const listenAt = (id, done) => {
  const server = Net.createServer()
  server.once("error", (error) => refused(id, error))
  server.listen({ host: "127.0.0.1", port: 0, backlog: 64 }, () => done(server))
}

const spawn = (id, file, args, options, server) => {
  const listening = server?.address().port
  let child
  try {
    child = ChildProcess.spawn(file, args, options)
  } catch (error) {
    return refused(id, error)
  } finally {
    server?.close()
  }
  if (child.pid === undefined) return child.once("error", (error) => refused(id, error))
  child.on("error", () => {})
  // Each pipe's handle is taken from Node's socket at once: Node would read the child's output
  // into this process, destroy stdin on exit, or resume the readers after it. Unread and
  // untouched, every byte stays in the pipe for the manager.
  const pipes = []
  const handles = []
  child.stdio.forEach((stream, fd) => {
    if (stream === null || stream === undefined) return
    const handle = stream._handle
    if (fd > 0) handle.readStop()
    stream._handle = null
    pipes.push(fd)
    handles.push(handle)
  })
  process.send({ id, pid: child.pid, pipes, listening })
  pipes.forEach((fd, i) => process.send({ id, fd }, handles[i]))
  child.on("exit", (code, signal) => process.send({ id, exit: [code, signal] }))
}

process.on("message", ({ id, file, args, options }) => {
  const at = options.stdio.indexOf("listen")
  if (at < 0) return spawn(id, file, args, options)
  listenAt(id, (server) => {
    const stdio = options.stdio.map((kind, fd) => fd === at ? server._handle.fd : kind)
    spawn(id, file, args, { ...options, stdio }, server)
  })
})
