/** Turns Node's compile cache on, in $SHARDHUB_HOME/cache/node when that is private to this user. */
export declare const enable: () => void
