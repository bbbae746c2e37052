"""shardhub's in-child runner for Python sequences: standard library only (asyncio).

    python3 python.py <package dir> <main>
    env SHARDHUB_SEQUENCE_ARGS (JSON array), SHARDHUB_APP_CONFIG (JSON object), SHARDHUB_INSTANCE_ID

The same protocol as the Node runner (node.cjs): fd 3 is the NDJSON message channel, fd 4 the
input (a `Content-Type: <type>\\r\\n\\n` header, then the body), fd 5 the output; stdio stays
the process's own.

The programming model is STH's: `async def run(context, input, *args)` in the main module. The
context offers STH's on, emit (awaitable), set_stop_handler (timeout in seconds),
set_health_check, keep_alive (seconds, awaitable), logger and config, and shardhub's
add_stop_handler (ms), add_kill_handler, add_monitoring_handler, instance_id, end, destroy. The
input is a `Stream` with the methods of scramjet's (map, filter, each, flatmap, batch, sequence,
decode, split, parse, match, pipe, to_list, reduce, `async for`); `from scramjet.streams import
Stream` gets the same class unless the package brings scramjet itself. Text input comes as
decoded chunks (as in STH), NDJSON as objects, anything else as bytes. What `run` returns (a
stream, an async iterable, a value) is the output: bytes and str raw, anything else as NDJSON
(everything as NDJSON when its `content_type` or the module's `output_type` says so). Module-level
`requires` / `provides` dicts (STH's `{"requires": name, "contentType": …}`) wire topics.

Exit codes (STH's): 0 the output ended, 21 bad main, 22 failed on start, 23 failed while running,
101 uncaught exception, 137 killed, 138 stopped.
"""
import asyncio
import importlib.util
import inspect
import json
import os
import socket
import sys
import re
import traceback
import types

EXIT_DONE, EXIT_BAD_MAIN, EXIT_START_FAILED, EXIT_FAILED = 0, 21, 22, 23
EXIT_UNCAUGHT, EXIT_KILLED, EXIT_STOPPED = 101, 137, 138


class Runner:
    def __init__(self, loop):
        self.loop = loop
        self.listeners = {}
        self.stop_handlers = []
        self.kill_handlers = []
        self.monitoring_handlers = []
        self.health_check = None
        self.keep_alive_ms = 0
        self.leaving = False
        self.done = loop.create_future()
        self.channel_writer = None
        self.output_writer = None

    def send(self, message):
        if self.channel_writer is not None and not self.channel_writer.is_closing():
            self.channel_writer.write((json.dumps(message, default=str) + "\n").encode())

    def leave(self, code):
        if self.leaving:
            return
        self.leaving = True
        if not self.done.done():
            self.done.set_result(code)

    def fatal(self, code, error=None):
        if error is not None:
            traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
        self.leave(code)

    async def call(self, handler, *args):
        result = handler(*args)
        if inspect.isawaitable(result):
            result = await result
        return result

    # ---- control ----

    async def stop(self, timeout_ms, can_call_keepalive):
        self.keep_alive_ms = 0
        deadline = self.loop.time() + timeout_ms / 1000
        for handler, unit in self.stop_handlers:
            timeout = timeout_ms / 1000 if unit == "s" else timeout_ms
            try:
                await asyncio.wait_for(self.call(handler, timeout, can_call_keepalive), max(0, deadline - self.loop.time()))
            except Exception as error:  # a failing handler does not block the stop
                print(f"stop handler failed: {error!r}", file=sys.stderr)
        if can_call_keepalive and self.keep_alive_ms > 0:
            return
        self.leave(EXIT_STOPPED)

    def kill(self):
        for handler in self.kill_handlers:
            try:
                result = handler()
                if inspect.isawaitable(result):
                    asyncio.ensure_future(result)
            except Exception:
                pass
        self.leave(EXIT_KILLED)

    async def read_channel(self, reader):
        while True:
            line = await reader.readline()
            if not line:
                self.leave(EXIT_STOPPED)
                return
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            kind = message.get("$shardhub")
            if kind == "stop":
                self.loop.create_task(self.stop(float(message.get("timeoutMs") or 0), message.get("canCallKeepalive") is True))
            elif kind == "kill":
                self.kill()
            elif isinstance(message.get("event"), str):
                for listener in list(self.listeners.get(message["event"], [])):
                    try:
                        result = listener(message.get("data"))
                        if inspect.isawaitable(result):
                            asyncio.ensure_future(result)
                    except Exception as error:
                        self.fatal(EXIT_FAILED, error)

    async def health(self):
        while True:
            await asyncio.sleep(1)
            checks = [(handler, ({"healthy": True},)) for handler in self.monitoring_handlers]
            if self.health_check is not None:
                checks.append((self.health_check, ()))
            if not checks:
                continue
            healthy, details = True, {}
            for handler, args in checks:
                try:
                    result = await self.call(handler, *args)
                    if result is False or (isinstance(result, dict) and result.get("healthy") is False):
                        healthy = False
                    if isinstance(result, dict):
                        details.update(result)
                except Exception:
                    healthy = False
            self.send({"$shardhub": "health", **details, "healthy": healthy})

    # ---- input / output ----

    async def read_input(self, reader, queue):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await reader.read(65536)
            if not chunk:
                await queue.put(None)
                return
            head += chunk
            if len(head) > 4096 and b"\r\n\r\n" not in head:
                print("input has no Content-Type header", file=sys.stderr)
                await queue.put(None)
                return
        header, _, body = head.partition(b"\r\n\r\n")
        content_type = "application/octet-stream"
        for line in header.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-type":
                content_type = value.split(";")[0].strip().lower()
        if "x-ndjson" in content_type:
            rest = body
            while True:
                *lines, rest = rest.split(b"\n")
                for line in lines:
                    text = line.decode("utf-8", errors="replace")
                    if text.strip() == "":
                        continue
                    try:
                        await queue.put(json.loads(text))
                    except ValueError:
                        pass
                chunk = await reader.read(65536)
                if not chunk:
                    if rest.strip():
                        try:
                            await queue.put(json.loads(rest.decode("utf-8", errors="replace")))
                        except ValueError:
                            pass
                    break
                rest += chunk
        elif content_type.startswith("text/"):
            # As STH: decoded chunks, split however they came (a character is never cut).
            import codecs
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            chunk = body
            while True:
                text = decoder.decode(chunk)
                if text:
                    await queue.put(text)
                chunk = await reader.read(65536)
                if not chunk:
                    break
        else:
            if body:
                await queue.put(body)
            while True:
                chunk = await reader.read(1 << 20)
                if not chunk:
                    break
                await queue.put(chunk)
        await queue.put(None)

    async def ship(self, result, ndjson=False):
        writer = self.output_writer
        if result is None:
            return
        if inspect.isawaitable(result) and not isinstance(result, Stream):
            return await self.ship(await result, ndjson)
        ndjson = ndjson or "x-ndjson" in str(getattr(result, "content_type", "") or "")

        def encode(item):
            if ndjson:
                return (json.dumps(item, default=str) + "\n").encode()
            if isinstance(item, (bytes, bytearray, memoryview)):
                return bytes(item)
            if isinstance(item, str):
                return item.encode()
            return (json.dumps(item, default=str) + "\n").encode()

        if hasattr(result, "__aiter__"):
            async for item in result:
                if self.leaving:
                    return
                writer.write(encode(item))
                await writer.drain()
        elif hasattr(result, "__iter__") and not isinstance(result, (str, bytes, bytearray, dict)):
            for item in result:
                writer.write(encode(item))
                await writer.drain()
        else:
            writer.write(encode(result))
            await writer.drain()
        self.leave(EXIT_DONE)


_END = object()


class Stream:
    """The part of scramjet's Python DataStream / StringStream that sequences use.

    A stream is read once: each method (map, filter, ...) consumes it and returns a new one, and
    the functions given to them may be async. `Stream()` is writable: `write` (awaitable,
    resolves when there is room) and `end`.
    """

    def __init__(self, max_parallel=64, upstream=None, origin=None, name="datastream", source=None):
        self.name = name
        self._consumed = False
        self._queue = None
        if source is None:
            self._queue = asyncio.Queue()
            self._room = max(1, max_parallel)
            source = self._drain_queue()
        self._source = source

    async def _drain_queue(self):
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            yield item

    # ---- making streams ----

    @classmethod
    def read_from(cls, source, max_parallel=64, chunk_size=None):
        if chunk_size and hasattr(source, "read"):
            async def chunks():
                while True:
                    chunk = await _result(source.read(chunk_size))
                    if chunk in (b"", "", None):
                        return
                    yield chunk
            return cls(source=chunks())
        return cls.from_iterable(source)

    @classmethod
    def from_iterable(cls, iterable, max_parallel=64):
        if hasattr(iterable, "__aiter__"):
            return cls(source=iterable.__aiter__())

        async def items():
            for item in iterable:
                yield item
        return cls(source=items())

    def write(self, chunk):
        if self._queue is None:
            raise TypeError("this stream is not writable")
        self._queue.put_nowait(chunk)
        room = asyncio.get_running_loop().create_future()
        if self._queue.qsize() <= self._room:
            room.set_result(None)
        else:
            async def wait():
                while self._queue.qsize() > self._room:
                    await asyncio.sleep(0.001)
                room.set_result(None)
            asyncio.ensure_future(wait())
        return room

    def end(self):
        if self._queue is not None:
            self._queue.put_nowait(_END)

    # ---- transforming ----

    def _take(self):
        if self._consumed:
            raise RuntimeError(f"stream {self.name} was already consumed")
        self._consumed = True
        return self._source

    def __aiter__(self):
        return self._take().__aiter__()

    def __await__(self):
        raise TypeError("a stream cannot be awaited; use a sink method (such as .to_list()) and await that")

    def _then(self, transform, name):
        return Stream(source=transform(self._take()), name=f"{self.name}+{name}")

    def map(self, func, *args):
        async def mapped(source):
            async for item in source:
                yield await _result(func(item, *args))
        return self._then(mapped, "m")

    __or__ = map

    def filter(self, func, *args):
        async def kept(source):
            async for item in source:
                if await _result(func(item, *args)):
                    yield item
        return self._then(kept, "f")

    __mod__ = filter

    def each(self, func, *args):
        async def seen(source):
            async for item in source:
                await _result(func(item, *args))
                yield item
        return self._then(seen, "e")

    def flatmap(self, func, *args):
        async def flat(source):
            async for item in source:
                results = await _result(func(item, *args))
                if hasattr(results, "__aiter__"):
                    async for result in results:
                        yield result
                else:
                    for result in results:
                        yield result
        return self._then(flat, "fm")

    def batch(self, func, *args):
        async def batches(source):
            batch = []
            async for item in source:
                batch.append(item)
                if func(item, *args):
                    yield batch
                    batch = []
            if batch:
                yield batch
        return self._then(batches, "b")

    def sequence(self, sequencer, initialPartial=None):
        async def chopped(source):
            partial = initialPartial
            async for item in source:
                chunks = await _result(sequencer(partial, item))
                for chunk in chunks[:-1]:
                    yield chunk
                partial = chunks[-1]
            if partial:
                yield partial
        return self._then(chopped, "s")

    def decode(self, encoding="utf-8"):
        import codecs
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")

        async def decoded(source):
            async for item in source:
                text = item if isinstance(item, str) else decoder.decode(bytes(item))
                if text:
                    yield text
        return self._then(decoded, "d")

    def split(self, separator=None):
        def splitter(part, chunk):
            words = (part + chunk).split(sep=separator)
            if not separator and chunk and chunk[-1].isspace():
                words.append("")
            return words
        return self.sequence(splitter, "")

    def parse(self, func, *args):
        return self.map(func, *args)

    def match(self, pattern):
        regex = re.compile(pattern)

        def found(chunk):
            matches = regex.findall(chunk)
            if regex.groups <= 1:
                return matches
            return [part for group in matches for part in group]
        return self.flatmap(found)

    def use(self, func):
        return func(self)

    # ---- sinks ----

    def pipe(self, target):
        source = self._take()

        async def forward():
            async for item in source:
                await target.write(item)
            target.end()
        asyncio.ensure_future(forward())
        return target

    async def to_list(self, result=None):
        result = [] if result is None else result
        async for item in self:
            result.append(item)
        return result

    async def reduce(self, func, initial=None):
        source = self.__aiter__()
        accumulator = initial
        if accumulator is None:
            try:
                accumulator = await source.__anext__()
            except StopAsyncIteration:
                return None
        async for item in source:
            accumulator = await _result(func(accumulator, item))
        return accumulator

    async def write_to(self, target):
        async for item in self:
            target.write(item)
            if hasattr(target, "drain"):
                await target.drain()


async def _result(value):
    return await value if inspect.isawaitable(value) else value


def install_scramjet():
    """`from scramjet.streams import Stream`, for packages that do not bring scramjet themselves."""
    try:
        if importlib.util.find_spec("scramjet") is not None:
            return
    except (ImportError, ValueError):
        return
    package = types.ModuleType("scramjet")
    streams = types.ModuleType("scramjet.streams")
    streams.Stream = streams.DataStream = streams.StringStream = Stream
    package.streams = streams
    sys.modules["scramjet"] = package
    sys.modules["scramjet.streams"] = streams


class Logger:
    def __init__(self, runner):
        self.runner = runner

    def _log(self, level, *values):
        text = " ".join(v if isinstance(v, str) else json.dumps(v, default=str) for v in values)
        self.runner.send({"$shardhub": "log", "level": level, "text": text})

    def trace(self, *v): self._log("trace", *v)
    def debug(self, *v): self._log("debug", *v)
    def info(self, *v): self._log("info", *v)
    def warn(self, *v): self._log("warn", *v)
    warning = warn
    def error(self, *v): self._log("error", *v)
    def fatal(self, *v): self._log("fatal", *v)


class _Done:
    """What an STH call that is awaitable there returns here: awaiting it is a no-op, and the
    context's methods still chain on it."""

    def __init__(self, context):
        self._context = context

    def __await__(self):
        return iter(())

    def __getattr__(self, name):
        return getattr(self._context, name)


class Context:
    def __init__(self, runner, config, instance_id):
        self._runner = runner
        self.config = config
        self.instance_id = instance_id
        self.logger = Logger(runner)

    def on(self, name, listener):
        self._runner.listeners.setdefault(name, []).append(listener)
        return self

    def emit(self, name, data=None):
        self._runner.send({"event": str(name), "data": data})
        return _Done(self)

    def set_stop_handler(self, handler, *_):
        """STH: handler(timeout in seconds, can_keep_alive), awaited before the instance stops."""
        self._runner.stop_handlers.append((handler, "s"))
        return self

    def add_stop_handler(self, handler):
        """handler(timeout in ms, can_keep_alive)."""
        self._runner.stop_handlers.append((handler, "ms"))
        return self

    def set_health_check(self, check):
        """STH: check() returns {"healthy": bool, ...}; asked every second."""
        self._runner.health_check = check
        return self

    def add_kill_handler(self, handler):
        self._runner.kill_handlers.append(handler)
        return self

    def add_monitoring_handler(self, handler):
        self._runner.monitoring_handlers.append(handler)
        return self

    def keep_alive(self, timeout=0):
        """STH: keep the instance alive past a stop that allows it, for `timeout` seconds;
        awaiting it waits that long."""
        seconds = max(0, float(timeout or 0))
        self._runner.keep_alive_ms = max(1, int(seconds * 1000))
        self._runner.send({"$shardhub": "keepAlive", "ms": self._runner.keep_alive_ms})
        return asyncio.ensure_future(asyncio.sleep(seconds))

    def end(self):
        self._runner.leave(EXIT_DONE)
        return self

    def destroy(self, error=None):
        self._runner.fatal(EXIT_FAILED, error) if error is not None else self._runner.leave(EXIT_DONE)
        return self

    addStopHandler = add_stop_handler
    addKillHandler = add_kill_handler
    addMonitoringHandler = add_monitoring_handler
    setStopHandler = set_stop_handler
    setHealthCheck = set_health_check
    keepAlive = keep_alive


def load(directory, main):
    path = os.path.join(directory, main)
    if not os.path.isfile(path):
        return None
    sys.path.insert(0, os.path.dirname(path))
    install_scramjet()
    spec = importlib.util.spec_from_file_location("__sequence__", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def main():
    directory, main_file = sys.argv[1], sys.argv[2]
    args = json.loads(os.environ.pop("SHARDHUB_SEQUENCE_ARGS", "[]"))
    config = json.loads(os.environ.pop("SHARDHUB_APP_CONFIG", "{}"))
    loop = asyncio.get_running_loop()
    runner = Runner(loop)
    loop.set_exception_handler(lambda _, ctx: runner.fatal(EXIT_UNCAUGHT, ctx.get("exception")))

    channel_reader, runner.channel_writer = await asyncio.open_connection(sock=socket.socket(fileno=3))
    # Keep both halves of every stream: a collected StreamWriter closes its socket.
    input_reader, input_writer = await asyncio.open_connection(sock=socket.socket(fileno=4))
    output_reader, runner.output_writer = await asyncio.open_connection(sock=socket.socket(fileno=5))
    runner.keep = (input_writer, output_reader)
    tasks = [loop.create_task(runner.read_channel(channel_reader)), loop.create_task(runner.health())]

    try:
        module = load(directory, main_file)
    except Exception as error:
        runner.fatal(EXIT_START_FAILED, error)
        module = False
    if module is None:
        print(f"Sequence entrypoint path {main_file} is invalid. Check `main` field in package.json", file=sys.stderr)
        runner.leave(EXIT_BAD_MAIN)
    elif module is not False and not callable(getattr(module, "run", None)):
        print(f"Sequence {main_file} has no run function", file=sys.stderr)
        runner.leave(EXIT_START_FAILED)

    if not runner.leaving:
        queue = asyncio.Queue(maxsize=64)
        tasks.append(loop.create_task(runner.read_input(input_reader, queue)))
        context = Context(runner, config, os.environ.get("SHARDHUB_INSTANCE_ID", ""))

        def declare(source, keys=("requires", "provides")):
            """STH: `requires` / `provides` dicts ({"requires": name, "contentType": …}; shardhub
            also takes {"topic": name, …}) on the module or the returned stream wire topics."""
            for key in keys:
                declared = getattr(source, key, None)
                name = declared.get(key, declared.get("topic")) if isinstance(declared, dict) else None
                if isinstance(name, str) and name:
                    runner.send({"$shardhub": "topics", key: name, "contentType": declared.get("contentType")})

        declare(module)

        async def items():
            while True:
                item = await queue.get()
                if item is None:
                    await queue.put(None)
                    return
                yield item

        async def start():
            try:
                result = module.run(context, Stream(source=items(), name="input"), *args)
                runner.send({"$shardhub": "ready"})
                if inspect.isawaitable(result) and not isinstance(result, Stream):
                    result = await result
                if not isinstance(getattr(module, "provides", None), dict):
                    declare(result, ("provides",))
            except Exception as error:
                return runner.fatal(EXIT_FAILED, error)
            try:
                await runner.ship(result, ndjson="x-ndjson" in str(getattr(module, "output_type", "") or ""))
            except Exception as error:
                runner.fatal(EXIT_FAILED, error)

        tasks.append(loop.create_task(start()))

    code = await runner.done
    # Closing flushes what the transports still buffer (drain only gets below the high-water mark).
    for writer in (runner.output_writer, runner.channel_writer):
        try:
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 2)
        except Exception:
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    # Threads the sequence left blocked (a stdin reader, say) must not hold the exit.
    os._exit(code)


if __name__ == "__main__":
    asyncio.run(main())
