import * as net from "node:net"; import * as cp from "node:child_process"
if (process.argv[2] === "server") {
  const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (socket) => {
    const child = cp.spawn("cat", [], { stdio: "pipe" })
    socket.pipe(child.stdin); child.stdout.pipe(socket)
  })
  server.listen(0, "127.0.0.1", () => console.log(server.address().port))
} else {
  const server = cp.spawn(process.execPath, [process.argv[1], "server"], { stdio: ["ignore", "pipe", "inherit"] })
  server.stdout.once("data", (d) => {
    const port = Number(String(d).trim())
    const BYTES = 512 * 1024 * 1024, CHUNK = 256 * 1024, chunk = Buffer.alloc(CHUNK, 7)
    const socket = net.connect({ port, host: "127.0.0.1", noDelay: true })
    let received = 0; const t = performance.now()
    socket.on("data", (b) => received += b.length)
    socket.on("end", () => { console.log((received / 1048576 / ((performance.now() - t) / 1000)).toFixed(0), "MiB/s relay"); server.kill(); })
    let sent = 0
    const write = () => { while (sent < BYTES) { sent += CHUNK; if (!socket.write(chunk)) return socket.once("drain", write) } socket.end() }
    write()
  })
}
