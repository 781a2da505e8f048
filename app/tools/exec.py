"""`exec` tools: one subprocess per call (PromptKit's exec protocol).

* The process gets `{"args": {...}}` as JSON on stdin and answers on stdout with
  `{"result": ...}` (the output), `{"error": "..."}` (a tool error the model sees), or any
  other JSON document (the output itself, as PromptKit accepts). `pending` results are
  refused (Parley's client tools cover deferred results).
* It starts in a new session (its own process group) in the RuntimeConfig's directory,
  with exactly the environment variables its binding lists in `env` (the command itself was
  resolved on `PATH` at load time).
* At the deadline, on cancellation, and after it exits, the whole process group is killed
  with SIGKILL: a hung tool and anything it spawned are gone.
* Non-zero exit status, death by a signal, output that is not JSON, or more than
  `max_output_bytes` on stdout are tool errors (with the tail of stderr for context).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
from collections.abc import Mapping
from typing import Any, ClassVar

from app.json_text import loads_strict
from app.tools.base import ToolExecutor, ToolFailure, ToolMode
from app.tools.bindings import ExecBindingSpec

STDERR_TAIL_BYTES = 2048
CHUNK = 65536


class ExecExecutor(ToolExecutor):
    mode: ClassVar[ToolMode] = "exec"

    def __init__(
        self,
        spec: ExecBindingSpec,
        *,
        max_output_bytes: int,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.spec = spec
        self.max_output_bytes = max_output_bytes
        self._environ = environ if environ is not None else os.environ

    async def call(self, arguments: dict[str, Any], *, timeout_s: float) -> Any:
        timeout = min(timeout_s, self.spec.timeout_s or math.inf)
        env = {name: self._environ[name] for name in self.spec.env if name in self._environ}
        payload = json.dumps({"args": arguments}).encode()
        try:
            proc = await asyncio.create_subprocess_exec(
                self.spec.command,
                *self.spec.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.spec.cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise ToolFailure(f"could not start the tool: {exc.strerror or exc}") from None
        try:
            async with asyncio.timeout(timeout):
                stdout, stderr = await self._run(proc, payload)
        except TimeoutError:
            raise ToolFailure(
                f"the tool did not answer within {timeout:g} s and was killed"
            ) from None
        finally:
            _kill_group(proc)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())
        return self._result(proc.returncode, stdout, stderr)

    async def _run(self, proc: asyncio.subprocess.Process, payload: bytes) -> tuple[bytes, bytes]:
        assert proc.stdin and proc.stdout and proc.stderr
        out = asyncio.ensure_future(_read_capped(proc.stdout, self.max_output_bytes + 1))
        err = asyncio.ensure_future(_read_tail(proc.stderr, STDERR_TAIL_BYTES))
        exited = asyncio.ensure_future(proc.wait())
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(payload)
                await proc.stdin.drain()
            proc.stdin.close()
            await asyncio.wait({exited, out}, return_when=asyncio.FIRST_COMPLETED)
            if out.done() and len(out.result()) > self.max_output_bytes:
                _kill_group(proc)  # too much output: stop it now
            await exited
            _kill_group(proc)  # anything it left behind; its pipes then close
            return await out, await err
        finally:
            for task in (out, err, exited):
                task.cancel()

    def _result(self, code: int | None, stdout: bytes, stderr: bytes) -> Any:
        tail = stderr.decode("utf-8", "replace").strip()
        detail = f" (stderr: {tail})" if tail else ""
        if len(stdout) > self.max_output_bytes:
            raise ToolFailure(
                f"the tool wrote more than {self.max_output_bytes} bytes "
                "(PARLEY_TOOL_MAX_RESULT_BYTES) and was stopped"
            )
        if code is not None and code < 0:
            raise ToolFailure(f"the tool was killed by signal {-code}{detail}")
        if code:
            raise ToolFailure(f"the tool exited with status {code}{detail}")
        if len(stdout) > self.max_output_bytes:
            raise ToolFailure(f"the tool wrote more than {self.max_output_bytes} bytes")
        try:
            doc = loads_strict(stdout)
        except ValueError:
            raise ToolFailure(f"the tool did not write JSON to stdout{detail}") from None
        if not isinstance(doc, dict):
            return doc
        if doc.get("error"):
            raise ToolFailure(str(doc["error"]))
        if doc.get("pending"):
            raise ToolFailure("the tool answered 'pending', which Parley does not support")
        return doc.get("result", doc)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> bytes:
    """Until EOF or `limit` bytes, whichever comes first."""
    data = bytearray()
    while len(data) < limit and (chunk := await stream.read(CHUNK)):
        data.extend(chunk[: limit - len(data)])
    return bytes(data)


async def _read_tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    tail = b""
    while chunk := await stream.read(CHUNK):
        tail = (tail + chunk)[-keep:]
    return tail
