/**
 * The raw OS baseline peer for `transport.ts`: a plain TCP server (TCP_NODELAY) on loopback that
 * echoes every byte it receives, except "S", to which it answers by streaming `chunks` chunks of
 * `chunkSize` bytes and closing.
 *
 *   node scripts/raw-peer.ts <chunks> <chunkSize>
 */
import * as Net from "node:net"

const [chunks, chunkSize] = process.argv.slice(2).map(Number) as [number, number]
const chunk = Buffer.alloc(chunkSize, 0x61)

Net.createServer({ noDelay: true }, (socket) => {
  socket.on("data", (data) => {
    if (data[0] !== 0x53) return void socket.write(data)
    let left = chunks
    const pump = () => {
      while (left > 0) {
        left--
        if (!socket.write(chunk)) return void socket.once("drain", pump)
      }
      socket.end()
    }
    pump()
  })
}).listen(0, "127.0.0.1", function(this: Net.Server) {
  console.log(`port ${(this.address() as Net.AddressInfo).port}`)
})
