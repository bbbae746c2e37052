/** Lets V8 count buffers outside its heap against its global limit (see heap.js). */
export declare const accountExternalMemoryInGlobalLimit: () => void
/** The Node options a runner process is started with (see heap.js). */
export declare const runnerNodeOptions: ReadonlyArray<string>
/** A bulk stream starts: the heap may grow 4× between full collections until the last one ended (see heap.js). */
export declare const streamStarted: () => void
/** A bulk stream ended. */
export declare const streamEnded: () => void
/** A full collection now (see heap.js). */
export declare const collectGarbage: () => void
