/**
 * shardhub as a library: runners that host a user's entity beside `Instance`
 * (`examples/runner-with-entity.ts`), the client-only example service, and the Promise facade
 * with seed 001's InstanceClient surface.
 */
import * as Path from "node:path"
import type { Readable } from "node:stream"
import { describe, expect, it } from "vitest"
import { HostClient } from "../../src/node/PromiseClient.ts"
import { fixture as packageOf } from "../sequence/fixtures.ts"
import { clusterEnv, useCluster } from "../support/cluster.ts"
import { root } from "../support/processes.ts"

const fixture = Path.join(root, "test/instance/fixtures/audited.mjs")

/** Reads NDJSON items from a stream until `count` arrived. */
const take = (stream: Readable, count: number) =>
  new Promise<Array<unknown>>((resolve, reject) => {
    const items: Array<unknown> = []
    let buffered = ""
    stream.on("error", reject)
    stream.on("data", (chunk: Buffer) => {
      buffered += chunk.toString("utf8")
      let newline: number
      while ((newline = buffered.indexOf("\n")) >= 0 && items.length < count) {
        items.push(JSON.parse(buffered.slice(0, newline)))
        buffered = buffered.slice(newline + 1)
      }
      if (items.length >= count) {
        stream.destroy()
        resolve(items)
      }
    })
  })

/** A stream's text until it ends (or, given `until`, until the text holds it). */
const readAll = async (stream: Readable, until?: string) => {
  const chunks: Array<Buffer> = []
  for await (const chunk of stream) {
    chunks.push(chunk as Buffer)
    if (until !== undefined && Buffer.concat(chunks).toString("utf8").includes(until)) {
      stream.destroy()
      break
    }
  }
  return Buffer.concat(chunks).toString("utf8")
}

describe("shardhub as a library", () => {
  const cluster = useCluster("library", { runners: 2, script: "examples/runner-with-entity.ts" })

  it("runs the client-only example against runners that host a user's entity beside Instance", async () => {
    cluster.printOnFailure()
    const client = cluster.spawn("example-client", "examples/client.ts")
    const exit = await client.exited
    expect(exit.code, client.output()).toBe(0)
    expect(client.output()).toMatch(/started \S+ on 127\.0\.0\.1:\d+ \(pid \d+\)/)
    expect(client.output()).toContain("output: hello through cat")
    expect(client.output()).toContain("ended: stopped, exit code 0")
    expect(client.output()).toContain("counter: 42")
  })

  it("offers seed 001's InstanceClient surface as Promises", async () => {
    cluster.printOnFailure()
    const host = await HostClient.connect({ env: clusterEnv(cluster.databaseUrl, cluster.home) })
    try {
      const instance = await host.startInstance({ program: { _tag: "Command", command: process.execPath, args: [fixture, "facade"] } })
      expect(await instance.getEvent("hello")).toMatchObject({ pid: expect.any(Number) })
      const info = await instance.getInfo()
      expect(info).toMatchObject({ id: instance.id, status: "running" })
      expect(await instance.getHealth()).toMatchObject({ healthy: true, pid: info.pid })

      const next = instance.getNextEvent("pong")
      const events = take(await instance.getEventStream("tick"), 2)
      await new Promise((resolve) => setTimeout(resolve, 100))
      await instance.sendEvent("ping", "hi")
      await instance.sendEvent("emit", { name: "tick", data: 1 })
      await instance.sendEvent("emit", { name: "tick", data: 2 })
      expect(await next).toBe("hi")
      expect(await events).toEqual([1, 2])
      expect((await (host.listInstances(["running"]))).map((i) => i.id)).toContain(instance.id)
      const stopped = await instance.stop(2000, false)
      expect(stopped).toMatchObject({ status: "stopped", signal: "SIGTERM" })

      const cat = await host.startInstance({ program: { _tag: "Command", command: "cat" } })
      const output = readAll(await cat.getStream("output"))
      await cat.sendInput("one\n", undefined, { end: false })
      await cat.sendStdin(["two\n", "three\n"])
      expect(await output).toBe("one\ntwo\nthree\n")
      expect(await take(await cat.getLogStream(), 3)).toMatchObject([{ text: "one" }, { text: "two" }, { text: "three" }])

      const echo = await host.startInstance({ program: { _tag: "Command", command: "cat" } })
      expect(await readAll(await echo.inout("round trip"))).toBe("round trip")

      const sleeper = await host.startInstance({ program: { _tag: "Command", command: "sleep", args: ["60"] } })
      expect(await sleeper.kill({ removeImmediately: true })).toMatchObject({ status: "stopped", signal: "SIGKILL" })
      await expect(host.getInstanceInfo(sleeper.id)).rejects.toMatchObject({ _tag: "InstanceNotFound" })
      await expect(host.getInstanceClient("nope").getInfo()).rejects.toMatchObject({ _tag: "InstanceNotFound", id: "nope" })
    } finally {
      await host.close()
    }
  })

  it("offers @scramjet/api-client's sequence and topic calls as Promises, with its error codes", async () => {
    cluster.printOnFailure()
    const host = await HostClient.connect({ env: clusterEnv(cluster.databaseUrl, cluster.home) })
    try {
      const sequence = await host.sendSequence(packageOf("passthrough"))
      expect((await host.listSequences()).map((info) => info.id)).toContain(sequence.id)
      const instance = await sequence.start({ appConfig: {}, args: [] })
      expect(await sequence.listInstances()).toEqual([instance.id])
      const output = readAll(await instance.getStream("output"))
      await instance.sendInput("as text\n", {}, { type: "text/plain" })
      expect(await output).toBe("as text\n")

      // A sequence in use: 409, STH's REQUEST_ERROR; an unknown one: 404, NOT_FOUND.
      const running = await sequence.start({})
      await expect(host.deleteSequence(sequence.id)).rejects.toMatchObject({ _tag: "SequenceInUse", code: "REQUEST_ERROR", status: 409 })
      await expect(host.getSequence("nope")).rejects.toMatchObject({ _tag: "SequenceNotFound", code: "NOT_FOUND", status: 404 })
      await expect(host.getInstanceInfo("nope")).rejects.toMatchObject({ code: "NOT_FOUND", status: 404 })
      await running.kill()
      await expect(sequence.overwrite(packageOf("features"))).resolves.toBe(sequence)
      expect((await sequence.getInfo()).name).toBe("features")
      expect(await host.deleteSequence(sequence.id)).toEqual({ id: sequence.id })

      await host.createTopic("promised", "text/plain")
      await expect(host.createTopic("promised")).rejects.toMatchObject({ _tag: "TopicError", code: "BAD_PARAMETERS" })
      expect(await host.getTopics()).toContainEqual({ name: "promised", contentType: "text/plain" })
      const received = readAll(await host.getNamedData("promised"), "over the topic\n")
      await host.sendNamedData("promised", ["over ", "the topic\n"], {}, "text/plain")
      expect(await received).toBe("over the topic\n")
      expect(await host.deleteTopic("promised")).toEqual({ message: "Topic promised removed" })
      await expect(host.deleteTopic("promised")).rejects.toMatchObject({ code: "NOT_FOUND" })
    } finally {
      await host.close()
    }
  })
})
