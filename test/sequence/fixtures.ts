/**
 * The test sequences under fixtures/, packed as a user would send them.
 */
import * as Path from "node:path"
import { packDirectory } from "../../src/sequence/Pack.ts"
import { root } from "../support/processes.ts"

export const fixture = (name: string) => packDirectory(Path.join(root, "test/sequence/fixtures", name))
