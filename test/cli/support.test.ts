/**
 * What the CLI reads from files and flags: dotenv files as Node reads them, and what it refuses.
 */
import { Effect } from "effect"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "vitest"
import { unit } from "../../src/cli/Service.ts"
import { environment } from "../../src/cli/Support.ts"

const envFile = (text: string) => {
  const file = Path.join(Fs.mkdtempSync(Path.join(Os.tmpdir(), "shardhub-env-")), "app.env")
  Fs.writeFileSync(file, text)
  return file
}

describe("--env-file and --env", () => {
  it("reads dotenv files as Node does: comments after a value, multi-line quoted values, export", async () => {
    const file = envFile([
      "# a comment",
      "PLAIN=value # a note, not part of the value",
      "SINGLE='kept # as is'",
      "MULTI=\"first line",
      "second line\"",
      "ESCAPED=\"a\\nb\"",
      "export EXPORTED=yes",
      ""
    ].join("\n"))
    expect(await Effect.runPromise(environment([file], []))).toEqual({
      PLAIN: "value",
      SINGLE: "kept # as is",
      MULTI: "first line\nsecond line",
      ESCAPED: "a\nb",
      EXPORTED: "yes"
    })
  })

  it("names a line that is not an assignment, and keeps --env values literally", async () => {
    const file = envFile("GOOD=1\nthis is not an assignment\n")
    const refused = await Effect.runPromise(Effect.flip(environment([file], [])))
    expect(refused.message).toBe(`${file}:2: expected KEY=VALUE, got "this is not an assignment"`)
    expect(await Effect.runPromise(environment([], ["A=x # not a comment", "B=c=d"]))).toEqual({ A: "x # not a comment", B: "c=d" })
    expect((await Effect.runPromise(Effect.flip(environment([], ["no pair"])))).message).toMatch(/--env: expected KEY=VALUE/)
  })
})

describe("the systemd unit", () => {
  it("writes paths with %, $ and spaces so systemd takes them literally", () => {
    const text = unit({
      name: "shardhub",
      command: ["/opt/node 24/bin/node", "/srv/50%off/$HOME/src/cli/main.ts", "up"],
      environmentFile: "/etc/shardhub/50%.env",
      user: undefined,
      workingDirectory: "/srv/50%off/$HOME",
      path: "/opt/node 24/bin:/usr/bin"
    })
    // `%%` is a literal %, `$$` a literal $ (ExecStart expands $VAR); quoted words keep their spaces.
    expect(text).toContain('ExecStart="/opt/node 24/bin/node" /srv/50%%off/$$HOME/src/cli/main.ts up\n')
    expect(text).toContain("WorkingDirectory=/srv/50%%off/$HOME\n")
    expect(text).toContain("EnvironmentFile=/etc/shardhub/50%%.env\n")
    expect(text).toContain('Environment="PATH=/opt/node 24/bin:/usr/bin"\n')
  })
})
