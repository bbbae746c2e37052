/**
 * The raw baseline of an instance stream: a plain Node TCP server that pipes each connection
 * through a new `cat` child and back. Prints its port, then serves until killed.
 */
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"

const server = Net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
  const child = ChildProcess.spawn("cat", [], { stdio: "pipe" })
  socket.pipe(child.stdin)
  child.stdout.pipe(socket)
})
server.listen(0, "127.0.0.1", () => console.log((server.address() as Net.AddressInfo).port))
