/** Turns Node's compile cache on, in $SHARDHUB_HOME/cache/node when that is private to this user. */
export declare const enable: () => void
/** Writes what was compiled so far (a long-lived process may never exit cleanly). */
export declare const flush: () => void
