/**
 * The dashboard in a real browser: headless Chromium (Debian's `chromium`, installed here when
 * missing) driven by puppeteer-core against a gateway of a two-runner cluster — the runners
 * and a running instance appear, a runner is drained and undrained from its row, its live log
 * follows, the Stop button stops it, and a sequence
 * is uploaded and started from the page, its events shown as they come. Screenshots go to
 * `test-artifacts/`.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import puppeteer, { type Browser, type Page } from "puppeteer-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { useCluster } from "../support/cluster.ts"
import { root } from "../support/processes.ts"
import { fixture } from "../sequence/fixtures.ts"

const artifacts = Path.join(root, "test-artifacts")

/** Debian's Chromium, installed with apt when it is not there (the test machines are Debian). */
const chromium = () => {
  const candidates = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
  const found = () => candidates.find((path) => Fs.existsSync(path))
  if (found() === undefined) {
    console.warn("installing Debian's chromium for the dashboard test (apt-get)…")
    ChildProcess.execSync("apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium", { stdio: "inherit" })
  }
  const path = found()
  if (path === undefined) throw new Error("Chromium is not installed and could not be installed with apt-get")
  return path
}

describe("the dashboard in a browser", () => {
  const cluster = useCluster("dashboard", { runners: 2 })
  let browser: Browser
  let page: Page
  let url = ""

  beforeAll(async () => {
    const executablePath = chromium()
    url = (await cluster.gateway("gateway")).url
    browser = await puppeteer.launch({ executablePath, headless: true, args: ["--no-sandbox", "--disable-dev-shm-usage"] })
    page = await browser.newPage()
    Fs.mkdirSync(artifacts, { recursive: true })
  }, 600_000)
  afterAll(async () => {
    await browser?.close()
  })

  const shot = (name: string) => page.screenshot({ path: Path.join(artifacts, `dashboard-${name}.png`), fullPage: true })
  const text = (selector: string) => page.$eval(selector, (node) => node.textContent ?? "")

  it("shows runners and instances live, follows a log, stops an instance, uploads and starts a sequence, shows its events", async () => {
    cluster.printOnFailure()
    const errors: Array<string> = []
    page.on("pageerror", (error) => errors.push(String(error)))
    page.on("console", (message) => message.type() === "error" && errors.push(message.text()))
    const response = await page.goto(`${url}/`)
    expect(response?.headers()["content-security-policy"]).toContain("script-src 'self'")
    // The runners.
    await page.waitForFunction(() => document.querySelectorAll("section:first-child tbody tr").length === 2, { timeout: 20_000 })

    // Run a command from the page; it appears running, without reloading.
    await page.type("input[name=command]", "echo hello-dashboard; sleep 600")
    await page.type("input[name=name]", "from-browser")
    await page.click("form.bar button")
    const running = () =>
      Array.from(document.querySelectorAll("#instances tr"))
        .find((tr) => tr.textContent?.includes("from-browser") && tr.textContent.includes("running"))
        ?.getAttribute("data-id")
    await page.waitForFunction(running, { timeout: 20_000 })
    await shot("cluster")
    const id = (await page.evaluate(running))!

    // Drain the runner of that instance from its row: it moves, the row says drained; undrain.
    const { runner } = await fetch(`${url}/api/shardhub/v1/instances/${id}`).then((r) => r.json()) as { runner: string }
    const drainButton = await page.waitForSelector(`tr[data-runner="${runner}"] button`)
    await drainButton!.click()
    await page.waitForFunction((at) => document.getElementById("status")?.textContent === `drained ${at}`, { timeout: 60_000 }, runner)
    await page.waitForFunction((at) => document.querySelector(`tr[data-runner="${at}"] td:nth-child(2)`)?.textContent === "drained", { timeout: 10_000 }, runner)
    const moved = await fetch(`${url}/api/shardhub/v1/instances/${id}`).then((r) => r.json()) as { runner: string; status: string }
    expect(moved.status).toBe("running")
    expect(moved.runner).not.toBe(runner)
    const undrainButton = await page.waitForSelector(`xpath/.//tr[@data-runner="${runner}"]//button[text()='Undrain']`)
    await undrainButton!.click()
    await page.waitForFunction((at) => document.getElementById("status")?.textContent === `${at} takes shards again`, { timeout: 10_000 }, runner)
    await cluster.waitForShards()

    // Its page: the live log, then Stop.
    await page.click(`a[href="#/instance/${id}"]`)
    await page.waitForFunction(() => document.getElementById("log")?.textContent?.includes("hello-dashboard"), { timeout: 20_000 })
    await page.waitForFunction(() => document.querySelector("[data-field=status]")?.textContent === "running", { timeout: 10_000 })
    await shot("instance")
    // Reload its app: a new copy replaces it, ready before the old one is gone; the page says so.
    const reload = await page.waitForSelector("#reload")
    await reload!.click()
    await page.waitForFunction(() => document.getElementById("status")?.textContent === "reload from-browser: 1 replaced", { timeout: 30_000 })
    const copies = await fetch(`${url}/api/shardhub/v1/instances?all=true`).then((r) => r.json()) as Array<{ id: string; name?: string; status: string }>
    const named = copies.filter((info) => info.name === "from-browser")
    expect(named.map((info) => info.status).sort()).toEqual(["running", "stopped"])
    expect(named.find((info) => info.status === "stopped")!.id).toBe(id)
    // Stop ends the replaced copy, as it did the old one: go to the new copy's page.
    await page.goto(`${url}/#/instance/${named.find((info) => info.status === "running")!.id}`)
    await page.waitForFunction(() => document.querySelector("[data-field=status]")?.textContent === "running", { timeout: 10_000 })
    const stop = await page.waitForSelector("xpath/.//button[text()='Stop']")
    await stop!.click()
    await page.waitForFunction(() => document.querySelector("[data-field=status]")?.textContent === "stopped", { timeout: 20_000 })
    expect(await text("[data-field=signal]")).toBe("SIGTERM")

    // A sequence: upload, then start; its page shows it running.
    const file = Path.join(Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-dashboard-")), "features.tar.gz")
    Fs.writeFileSync(file, fixture("features"))
    await page.goto(`${url}/#/sequences`)
    const input = await page.waitForSelector("input[type=file]")
    await input!.uploadFile(file)
    await page.click("form.bar button")
    const sequenceRow = await page.waitForSelector("#sequences tr", { timeout: 20_000 })
    await shot("sequences")
    const startButton = await sequenceRow!.waitForSelector("xpath/.//button[text()='Start']")
    await startButton!.click()
    await page.waitForFunction(() => location.hash.startsWith("#/instance/"), { timeout: 30_000 })
    await page.waitForFunction(() => document.querySelector("[data-field=status]")?.textContent === "running", { timeout: 20_000 })
    // Its events, live: a ping sent through the API is answered with a pong on the page.
    const sequenceInstance = decodeURIComponent((await page.evaluate(() => location.hash)).slice("#/instance/".length))
    const pinged = await fetch(`${url}/api/v1/instance/${sequenceInstance}/_event`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify([5001, { eventName: "ping", message: "from the test" }])
    })
    expect(pinged.status).toBe(200)
    await page.waitForFunction(() => document.getElementById("events")?.textContent?.includes("from the test"), { timeout: 20_000 })
    await shot("sequence-instance")
    expect(errors).toEqual([])
  }, 180_000)
})
