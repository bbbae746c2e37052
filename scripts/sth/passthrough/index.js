// The pass-through both hosts are measured with: the input piped through a Node PassThrough.
// (Returning the input itself hands STH its own DataStream back, which STH serializes as JSON
// instead of passing bytes: twice the bytes out, at a fifth of the speed — not what users see.)
const { PassThrough } = require("node:stream")

module.exports = (input) => input.pipe(new PassThrough())
