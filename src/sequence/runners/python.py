"""shardhub's in-child runner for Python sequences: standard library only (asyncio).

    python3 python.py <package dir> <main>
    env SHARDHUB_SEQUENCE_ARGS (JSON array), SHARDHUB_APP_CONFIG (JSON object), SHARDHUB_INSTANCE_ID

The same protocol as the Node runner (node.cjs): fd 3 is the NDJSON message channel, fd 4 the
input (a `Content-Type: <type>\\r\\n\\r\\n` header, then the body), fd 5 the output; stdio stays
the process's own.

The programming model is STH's: `async def run(context, input, *args)` in the main module. The
context offers on/emit, add_stop_handler, add_kill_handler, keep_alive, add_monitoring_handler,
logger, config, instance_id, end, destroy (camelCase aliases too). What `run` returns (an async
iterable, a value) is the output: bytes and str raw, anything else as NDJSON. Text input comes
as lines, NDJSON as objects, anything else as bytes.

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
import traceback

EXIT_DONE, EXIT_BAD_MAIN, EXIT_START_FAILED, EXIT_FAILED = 0, 21, 22, 23
EXIT_UNCAUGHT, EXIT_KILLED, EXIT_STOPPED = 101, 137, 138


class Runner:
    def __init__(self, loop):
        self.loop = loop
        self.listeners = {}
        self.stop_handlers = []
        self.kill_handlers = []
        self.monitoring_handlers = []
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
        for handler in self.stop_handlers:
            try:
                await asyncio.wait_for(self.call(handler, timeout_ms, can_call_keepalive), max(0, deadline - self.loop.time()))
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
                    self.loop.create_task(result)
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
                            self.loop.create_task(result)
                    except Exception as error:
                        self.fatal(EXIT_FAILED, error)

    async def health(self):
        while True:
            await asyncio.sleep(1)
            if not self.monitoring_handlers:
                continue
            healthy, details = True, {}
            for handler in self.monitoring_handlers:
                try:
                    result = await self.call(handler, {"healthy": healthy})
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
        if "x-ndjson" in content_type or content_type.startswith("text/"):
            parse = json.loads if "x-ndjson" in content_type else (lambda line: line)
            rest = body
            while True:
                *lines, rest = rest.split(b"\n")
                for line in lines:
                    text = line.decode("utf-8", errors="replace")
                    if "x-ndjson" in content_type and text.strip() == "":
                        continue
                    try:
                        await queue.put(parse(text))
                    except ValueError:
                        pass
                chunk = await reader.read(65536)
                if not chunk:
                    if rest:
                        try:
                            await queue.put(parse(rest.decode("utf-8", errors="replace")))
                        except ValueError:
                            pass
                    break
                rest += chunk
        else:
            if body:
                await queue.put(body)
            while True:
                chunk = await reader.read(1 << 20)
                if not chunk:
                    break
                await queue.put(chunk)
        await queue.put(None)

    async def ship(self, result):
        writer = self.output_writer
        if result is None:
            return
        if inspect.isawaitable(result):
            return await self.ship(await result)

        def encode(item):
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


class Input:
    """The input: an async iterator of lines, objects or bytes."""

    def __init__(self, queue):
        self.queue = queue

    def __aiter__(self):
        return self

    async def __anext__(self):
        item = await self.queue.get()
        if item is None:
            await self.queue.put(None)
            raise StopAsyncIteration
        return item


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
        return self

    def add_stop_handler(self, handler):
        self._runner.stop_handlers.append(handler)
        return self

    def add_kill_handler(self, handler):
        self._runner.kill_handlers.append(handler)
        return self

    def add_monitoring_handler(self, handler):
        self._runner.monitoring_handlers.append(handler)
        return self

    def keep_alive(self, ms=0):
        self._runner.keep_alive_ms = max(1, int(ms or 0))
        self._runner.send({"$shardhub": "keepAlive", "ms": self._runner.keep_alive_ms})
        return self

    def end(self):
        self._runner.leave(EXIT_DONE)
        return self

    def destroy(self, error=None):
        self._runner.fatal(EXIT_FAILED, error) if error is not None else self._runner.leave(EXIT_DONE)
        return self

    addStopHandler = add_stop_handler
    addKillHandler = add_kill_handler
    addMonitoringHandler = add_monitoring_handler
    keepAlive = keep_alive


def load(directory, main):
    path = os.path.join(directory, main)
    if not os.path.isfile(path):
        return None
    sys.path.insert(0, os.path.dirname(path))
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

        # STH: module-level `requires` / `provides` ({"topic", "contentType"}) wire topics.
        for key in ("requires", "provides"):
            declared = getattr(module, key, None)
            if isinstance(declared, dict) and isinstance(declared.get("topic"), str):
                runner.send({"$shardhub": "topics", key: declared["topic"], "contentType": declared.get("contentType")})

        async def start():
            try:
                result = module.run(context, Input(queue), *args)
                runner.send({"$shardhub": "ready"})
                if inspect.isawaitable(result):
                    result = await result
            except Exception as error:
                return runner.fatal(EXIT_FAILED, error)
            try:
                await runner.ship(result)
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
