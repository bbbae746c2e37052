/** Lets V8 count buffers outside its heap against its global limit (see externalMemory.js). */
export declare const accountExternalMemoryInGlobalLimit: () => void
