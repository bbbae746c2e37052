/** Lets V8 count buffers outside its heap against its global limit (see heap.js). */
export declare const accountExternalMemoryInGlobalLimit: () => void
/** The Node options a runner process is started with (see heap.js). */
export declare const runnerNodeOptions: ReadonlyArray<string>
