/**
 * Nobody drives a runner without the cluster's key: the runner port and the data port refuse,
 * at the handshake, a peer without TLS, with another cluster's key, or with the cluster's key id
 * and a wrong secret — logging one line each — and keep serving the cluster. Silent connections
 * are closed at a deadline; a rotated key takes over and a retired one is refused.
 */
import { Effect } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Path from "node:path"
import * as Tls from "node:tls"
import { describe, expect, it } from "vitest"
import { HostClient } from "../../src/client/HostClient.ts"
import { InstanceClient } from "../../src/client/InstanceClient.ts"
import * as Security from "../../src/transport/Security.ts"
import * as DataPort from "../../src/instance/DataPort.ts"
import * as Instance from "../../src/instance/Instance.ts"
import { useCluster } from "../support/cluster.ts"
import { eventually, spawnNode } from "../support/processes.ts"

interface Attempt {
  readonly started: boolean
  readonly answer: string
}

describe("transport security", () => {
  const cluster = useCluster("security", { runners: 1, env: { SHARDHUB_HANDSHAKE_TIMEOUT: "2 seconds" } })

  /** Runs the intruder program (an Effect client with an in-memory runner list) against a runner. */
  const intrude = async (credentials: string, address = cluster.runners[0]!.address) => {
    const proof = Path.join(cluster.home, `proof-${Crypto.randomUUID()}`)
    const intruder = spawnNode(`intruder-${credentials.slice(0, 8)}`, "test/support/intruder.ts", {
      args: [address, proof, credentials],
      env: { SHARDHUB_SHARDS: "32" }
    })
    const [line] = await intruder.waitFor(/^\{"done".*$/m, 30_000)
    await intruder.exited
    return { ...(JSON.parse(line) as Attempt), ran: Fs.existsSync(proof) }
  }

  const keys = () => cluster.run(Effect.gen(function*() {
    const sql = yield* SqlClient
    return yield* Security.loadKeys.pipe(Effect.provideService(SqlClient, sql))
  }))

  /** A start through the real client: the runner still serves the cluster. */
  const serves = () =>
    cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const instances = yield* InstanceClient
      const info = yield* host.start({ program: { _tag: "Command", command: "sleep", args: ["30"] } })
      yield* instances.kill(info.id)
      return info.status
    }))

  it("refuses an RPC from a peer that knows only the runner's address: no key, another cluster's key, a wrong secret (loopback handshake and TLS)", async () => {
    cluster.printOnFailure()
    const [key] = await keys()
    const guessed = `${key!.id}:${Crypto.randomBytes(32).toString("hex")}`
    const attempts = await Promise.all([
      intrude("plain"),
      intrude("foreign"),
      intrude(guessed),
      intrude("tls:foreign"),
      intrude(`tls:${guessed}`)
    ])
    for (const attempt of attempts) {
      expect(attempt.started).toBe(false)
      expect(attempt.ran).toBe(false)
    }
    const log = cluster.runners[0]!.output()
    expect(log).toMatch(/refused connection from 127\.0\.0\.1:\d+: not TLS/)
    expect(log).toMatch(/refused connection from 127\.0\.0\.1:\d+: unknown cluster key 'k-[0-9a-f]+'/)
    expect(log).toMatch(/refused connection from 127\.0\.0\.1:\d+: wrong cluster key/)
    // The TLS refusals too: an unknown identity, and a known one whose binder does not verify.
    expect(log.match(/unknown cluster key/g)!.length).toBeGreaterThanOrEqual(2)
    expect(log.match(/wrong cluster key/g)!.length).toBeGreaterThanOrEqual(2)
    expect(await serves()).toBe("running")
  })

  it("refuses the same peer on a runner that listens on every interface (0.0.0.0)", async () => {
    cluster.printOnFailure()
    const open = await cluster.startRunner("runner-any", { SHARDHUB_RUNNER_LISTEN_HOST: "0.0.0.0" })
    try {
      // Dialled on loopback: this machine's other addresses are not ours to send to in a test.
      const attempts = await Promise.all([
        intrude("plain", open.address),
        intrude("foreign", open.address),
        intrude("tls:foreign", open.address)
      ])
      for (const attempt of attempts) expect(attempt).toMatchObject({ started: false, ran: false })
      expect(open.output()).toMatch(/refused connection from 127\.0\.0\.1:\d+: not TLS/)
      expect(open.output()).toMatch(/refused connection from 127\.0\.0\.1:\d+: unknown cluster key/)
    } finally {
      await open.kill("SIGTERM")
    }
  })

  it("opens no stream for a stolen ticket without the key; the owner's dial with the same ticket still works", async () => {
    cluster.printOnFailure()
    const secret = `secret-${Crypto.randomUUID()}`
    const { id, ticket } = await cluster.run(Effect.gen(function*() {
      const host = yield* HostClient
      const info = yield* host.start({ program: { _tag: "Command", command: "sh", args: ["-c", `echo ${secret}; sleep 30`] } })
      const ticket = yield* (yield* Instance.Instance.client)(info.id).Open({ stream: "stdout" })
      return { id: info.id, ticket }
    }))
    /** Dials the data port with `connect`, presents the stolen ticket, and collects what comes back. */
    const steal = (connect: () => Net.Socket) =>
      new Promise<string>((resolve) => {
        const socket = connect()
        let received = ""
        socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")))
        socket.on("error", () => {})
        socket.on("close", () => resolve(received))
        socket.write(`${ticket.ticket}\n`)
      })
    const foreign = {
      minVersion: "TLSv1.3",
      checkServerIdentity: () => undefined,
      pskCallback: () => ({ identity: "k-forged", psk: Crypto.randomBytes(32) })
    } as const
    const got = await Promise.all([
      steal(() => Net.connect({ host: ticket.host, port: ticket.port })),
      steal(() => Tls.connect({ host: ticket.host, port: ticket.port, ...foreign })),
      // The loopback handshake with a key of its own, then the ticket.
      steal(() => {
        const socket = Net.connect({ host: ticket.host, port: ticket.port })
        socket.write(`SHK1 k-forged ${Crypto.randomBytes(16).toString("hex")}\n`)
        return socket
      })
    ])
    for (const received of got) {
      expect(received).not.toContain(secret)
      expect(received).not.toContain("OK")
    }
    // The ticket was never presented to the server: the owner's client still opens it.
    const output = await cluster.run(Effect.gen(function*() {
      const security = yield* Security.Security
      const socket = yield* DataPort.dial(ticket, security)
      const text = yield* Effect.callback<string>((resume) => {
        let received = ""
        socket.on("data", (chunk: Buffer) => {
          received += chunk.toString("utf8")
          if (received.includes("\n")) {
            socket.destroy()
            resume(Effect.succeed(received))
          }
        })
        socket.resume() // dial hands the socket over paused
      })
      yield* (yield* InstanceClient).kill(id)
      return text
    }))
    expect(output).toContain(secret)
  })

  it("closes connections that never finish a handshake; 500 of them do not stop the runner serving", async () => {
    cluster.printOnFailure()
    const runner = cluster.runners[0]!
    const [host, port] = runner.address.split(":")
    const openFds = () => Fs.readdirSync(`/proc/${runner.pid}/fd`).length
    const before = openFds()
    const silent = await Promise.all(Array.from({ length: 500 }, (_, i) =>
      new Promise<{ readonly closed: Promise<void> }>((resolve) => {
        const socket = Net.connect({ host: host!, port: Number(port) })
        socket.on("error", () => {})
        const closed = new Promise<void>((done) => socket.once("close", () => done()))
        socket.once("connect", () => {
          // Half of them start a handshake and stop after five bytes of it.
          if (i % 2 === 0) socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]))
          resolve({ closed })
        })
      })))
    // While they are all held open, the runner still serves.
    expect(await serves()).toBe("running")
    // The runner closes every one of them at its deadline (2 s here), without help from us.
    await Promise.all(silent.map((s) => s.closed))
    await eventually(async () => openFds() <= before + 10 || undefined, { what: "the runner's descriptors to come back" })
    expect(runner.output()).toMatch(/refused connection from .*: (no handshake in time|closed during the handshake)/)
    expect(runner.output()).toMatch(/more refused, not shown/)
  })

  it("switches to a rotated key, then refuses the retired one and closes the connections opened with it", async () => {
    cluster.printOnFailure()
    // A connection opened with the old key, which the retirement must close.
    expect(await serves()).toBe("running")
    const [old] = await keys()
    // Through the CLI, as an operator would.
    const shardhub = async (...args: Array<string>) => {
      const cli = cluster.spawn("cli-key", "src/cli/main.ts", { args })
      const exit = await cli.exited
      expect({ args, exit, output: cli.output() }).toMatchObject({ args, exit: { code: 0 } })
      return cli.output()
    }
    const added = (await shardhub("key", "rotate")).match(/^k-[0-9a-f]+$/m)![0]
    expect((await keys()).map((key) => key.id)).toEqual([old!.id, added])
    const listed = JSON.parse(await shardhub("key", "ls", "--json")) as Array<{ id: string; dialed: boolean }>
    expect(listed.map((key) => key.id)).toEqual([old!.id, added])
    expect(listed.filter((key) => key.dialed)).toHaveLength(1)
    // Past the activation delay (3 refreshes of 500 ms), every participant dials with the new key.
    await eventually(async () => (await keys()).find((key) => key.id === added)!.ageMs > 2000 || undefined)
    expect(await serves()).toBe("running")

    expect((await shardhub("key", "retire", "--old")).trim().split("\n")).toContain(old!.id)
    await cluster.runners[0]!.waitFor(/closed \d+ connection\(s\) opened with retired key k-/, 10_000)
    const attempt = await intrude(`${old!.id}:${old!.secret.toString("hex")}`)
    expect(attempt).toMatchObject({ started: false, ran: false })
    expect(cluster.runners[0]!.output()).toMatch(new RegExp(`unknown cluster key '${old!.id}'`))
    expect(await serves()).toBe("running")
  })

  it("carries RPCs and streams over TLS with the cluster key, as between machines (SHARDHUB_TRANSPORT=tls)", async () => {
    cluster.printOnFailure()
    const tlsRunner = await cluster.startRunner("runner-tls", { SHARDHUB_TRANSPORT: "tls" })
    try {
      // A participant that dials with TLS even on loopback: the CLI, through both runners.
      const spawnCli = (...args: Array<string>) =>
        cluster.spawn("cli-tls", "src/cli/main.ts", { args, env: { SHARDHUB_TRANSPORT: "tls" } })
      const ended = async (process: ReturnType<typeof spawnCli>, args: Array<string>) => {
        const exit = await process.exited
        expect({ args, exit, output: process.output() }).toMatchObject({ args, exit: { code: 0 } })
        return process.output()
      }
      const cli = (...args: Array<string>) => ended(spawnCli(...args), args)
      const expected = Array.from({ length: 20_000 }, (_, i) => `${i + 1}\n`).join("")
      for (let i = 0; i < 4; i++) {
        // The program waits for its stdin to close, so it runs until the reader has attached.
        const id = (await cli("run", "--", "sh", "-c", "seq 1 20000; read line")).trim()
        // The bytes so far, then live until the process ends ...
        const reader = spawnCli("stdout", id)
        await reader.waitFor(/^20000$/m, 60_000)
        // ... which it does when another participant closes its stdin (over TLS as well).
        await cli("stdin", id, "/dev/null")
        expect(await ended(reader, ["stdout", id])).toBe(expected)
      }
      // A Node sequence's input and output over TLS, through the CLI: the bytes arrive intact.
      const file = Path.join(cluster.home, `input-${Crypto.randomUUID()}`)
      Fs.writeFileSync(file, expected)
      const seqId = (JSON.parse(await cli("seq", "send", Path.join(import.meta.dirname, "../sequence/fixtures/passthrough"), "--json")) as { id: string }).id
      for (let i = 0; i < 2; i++) {
        const id = (await cli("seq", "start", seqId)).trim()
        const reader = spawnCli("output", id)
        await cli("input", id, file, "--content-type", "text/plain")
        expect(await ended(reader, ["output", id])).toBe(expected)
      }
      // The TLS-only runner refuses the loopback handshake (the default dial on loopback).
      const attempt = await intrude("foreign", tlsRunner.address)
      expect(attempt).toMatchObject({ started: false, ran: false })
      expect(tlsRunner.output()).toMatch(/refused connection from .*: the loopback handshake, where TLS is required/)
    } finally {
      await tlsRunner.kill("SIGTERM")
    }
  })

  it("a runner refuses plain transport off loopback, in one line", async () => {
    const runner = cluster.spawn("plain-off-loopback", "src/main.ts", {
      env: { SHARDHUB_TRANSPORT: "plain", SHARDHUB_RUNNER_LISTEN_HOST: "0.0.0.0", SHARDHUB_RUNNER_PORT: "1" }
    })
    const exit = await runner.exited
    expect(exit.code).not.toBe(0)
    expect(runner.output()).toMatch(/refusing to listen on 0\.0\.0\.0 without transport security: SHARDHUB_TRANSPORT=plain is for loopback only/)
  })
})
