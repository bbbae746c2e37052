/**
 * The dashboard: three static files (`dashboard/`) the gateway serves at `/`, plain browser
 * code on the gateway's own APIs — no CDN, no build step. They are served under a strict
 * Content-Security-Policy (only this origin's scripts, styles and requests; no framing), and
 * without the token (they hold no data; the page asks for the token when the API wants it).
 *
 * @since 0.6.0
 */
import { Effect, Layer } from "effect"
import { HttpRouter, HttpServerResponse } from "effect/http"
import * as Fs from "node:fs"
import * as Path from "node:path"

const directory = Path.join(import.meta.dirname, "dashboard")

const assets = {
  "/": { file: "index.html", contentType: "text/html; charset=utf-8" },
  "/dashboard.js": { file: "dashboard.js", contentType: "text/javascript; charset=utf-8" },
  "/dashboard.css": { file: "dashboard.css", contentType: "text/css; charset=utf-8" }
} as const

const headers = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache"
}

/**
 * Whether `url` is one of the dashboard's files.
 *
 * @since 0.6.0
 */
export const isAsset = (url: string): boolean => Object.hasOwn(assets, url.split("?")[0]!)

const route = (path: "/" | "/dashboard.js" | "/dashboard.css") =>
  Layer.unwrap(Effect.sync(() => {
    const asset = assets[path]
    const body = Fs.readFileSync(Path.join(directory, asset.file))
    return HttpRouter.add("GET", path, Effect.succeed(HttpServerResponse.uint8Array(body, { contentType: asset.contentType, headers })))
  }))

/**
 * The routes of the dashboard's files (read once, when the gateway starts).
 *
 * @since 0.6.0
 */
export const routes = Layer.mergeAll(route("/"), route("/dashboard.js"), route("/dashboard.css"))
