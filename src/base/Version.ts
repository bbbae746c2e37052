/**
 * shardhub's version: the one in package.json, read here so that nothing else spells it (the
 * CLI's `--version`, the gateway's `GET /api/v1/version` and `/config`).
 *
 * @since 0.8.0
 */
import manifest from "../../package.json" with { type: "json" }

/** @since 0.8.0 */
export const version: string = manifest.version
