#!/usr/bin/env python3
"""Client compatibility: the official `openai` and `anthropic` Python SDKs, and MLflow's
deployments client when `mlflow.deployments` is importable, against a real `floodgate dev`
process.

    python tests/sdk/run.py --floodgate target/debug/floodgate

Needs `openai` and `anthropic` (and optionally `mlflow-skinny`) installed in the interpreter
that runs it. Prints one line per check and ends with exactly `N passed, M failed`; exits 1
if a check failed. The floodgate child is always stopped (SIGTERM, then SIGKILL) before exit.
"""

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

START_DEADLINE_S = 20.0
STOP_DEADLINE_S = 15.0
PROMPT = "hello from the python sdk"


class Floodgate:
    """A `floodgate dev --listen 127.0.0.1:0` child with its output collected by threads."""

    def __init__(self, binary):
        env = dict(os.environ)
        env["FLOODGATE_LOG_FORMAT"] = "json"
        env.pop("RUST_LOG", None)
        self.data_dir = tempfile.mkdtemp(prefix="floodgate-sdk-")
        self.proc = subprocess.Popen(
            [binary, "dev", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir,
             "--admin-listen", "127.0.0.1:0", "--usage-listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            errors="replace",
        )
        self.stdout_lines = []
        self.stderr_lines = []
        self._lines = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout_lines, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr_lines, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, into, announce):
        for line in stream:
            into.append(line)
            if announce:
                self._lines.put(line)
        if announce:
            self._lines.put(None)

    def address(self):
        """Waits for the JSON `floodgate listening` line and returns its `address`."""
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("no `floodgate listening` line within %.0fs" % START_DEADLINE_S)
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(
                    "floodgate exited before listening (code %s): %s"
                    % (self.proc.wait(), "".join(self.stderr_lines[-20:]))
                )
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("message") == "floodgate listening":
                return record["address"]

    def stop(self):
        """SIGTERM, wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for reader in self._readers:
            reader.join(timeout=STOP_DEADLINE_S)
        return self.proc.returncode

    def usage_traces(self, want_any):
        """The traces dev's in-process projector holds for the last hour, newest first,
        read from its usage query API; waits (with a deadline) until there are some when
        `want_any`, since events reach the projector through the local log a moment after
        the answers."""
        base = None
        for line in self.stdout_lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("message") == "usage query API listening":
                base = "http://" + record["http"]
        if base is None:
            raise AssertionError("dev printed no `usage query API listening` line")
        now = int(time.time())
        url = "%s/usage/v1/traces?from=%d&to=%d&limit=500" % (base, now - 3600, now + 60)
        deadline = time.monotonic() + STOP_DEADLINE_S
        while True:
            with urllib.request.urlopen(url, timeout=5) as response:
                traces = json.load(response)["traces"]
            if traces or not want_any or time.monotonic() > deadline:
                return traces
            time.sleep(0.05)


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, name, check):
        try:
            detail = check()
        except Exception as error:  # noqa: BLE001 - every failure is reported, none aborts
            self.failed += 1
            print("FAIL %s: %s: %s" % (name, type(error).__name__, error), flush=True)
            if os.environ.get("SDK_TRACEBACK"):
                traceback.print_exc()
            return
        self.passed += 1
        print("ok   %s%s" % (name, (": " + detail) if detail else ""), flush=True)


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def openai_checks(checks, base_url, label):
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=10.0)
    words = len(PROMPT.split())

    def chat():
        response = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": PROMPT}]
        )
        content = response.choices[0].message.content
        expect(content == PROMPT, "content %r" % content)
        expect(response.choices[0].finish_reason == "stop", "finish_reason")
        usage = response.usage
        expect(usage is not None, "no usage")
        expect(usage.completion_tokens == words, "completion_tokens %s" % usage.completion_tokens)
        expect(usage.prompt_tokens > 0, "prompt_tokens %s" % usage.prompt_tokens)
        expect(usage.total_tokens == usage.prompt_tokens + usage.completion_tokens, "total_tokens")
        return "usage %s/%s" % (usage.prompt_tokens, usage.completion_tokens)

    def stream_with_usage():
        stream = client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
        deltas, usage, finish = [], None, None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.delta.content:
                    deltas.append(choice.delta.content)
                finish = choice.finish_reason or finish
        expect("".join(deltas) == PROMPT, "deltas %r" % deltas)
        expect(len(deltas) == words, "%d deltas" % len(deltas))
        expect(finish == "stop", "finish_reason %r" % finish)
        expect(usage is not None, "no usage chunk")
        expect(usage.completion_tokens == words, "completion_tokens %s" % usage.completion_tokens)
        return "%d deltas, usage %s/%s" % (len(deltas), usage.prompt_tokens, usage.completion_tokens)

    def stream_without_usage():
        stream = client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        expect(text == PROMPT, "text %r" % text)
        expect(all(c.usage is None for c in chunks), "usage sent though not asked for")

    def completions():
        response = client.completions.create(model="completions", prompt=PROMPT)
        expect(response.choices[0].text == PROMPT, "text %r" % response.choices[0].text)
        expect(response.usage.completion_tokens == words, "usage")

    def embeddings():
        response = client.embeddings.create(model="embeddings", input=["first text", "second text"])
        expect(len(response.data) == 2, "%d vectors" % len(response.data))
        expect([d.index for d in response.data] == [0, 1], "indexes")
        dims = {len(d.embedding) for d in response.data}
        expect(len(dims) == 1 and dims.pop() > 0, "dimensions")
        expect(response.data[0].embedding != response.data[1].embedding, "identical vectors")
        expect(response.usage.prompt_tokens > 0, "usage")
        return "%d x %d" % (len(response.data), len(response.data[0].embedding))

    def models():
        ids = [m.id for m in client.models.list()]
        expect("chat" in ids and "embeddings" in ids, "ids %r" % ids)
        return ", ".join(ids)

    def not_found():
        try:
            client.chat.completions.create(
                model="no-such-endpoint", messages=[{"role": "user", "content": "hi"}]
            )
        except openai.NotFoundError as error:
            expect(error.status_code == 404, "status %s" % error.status_code)
            expect(error.code == "model_not_found", "code %r" % error.code)
            return "404 %s" % error.code
        raise AssertionError("no NotFoundError")

    def wrong_kind():
        try:
            client.embeddings.create(model="chat", input="hi")
        except openai.BadRequestError as error:
            expect(error.code == "endpoint_kind_mismatch", "code %r" % error.code)
            return "400 %s" % error.code
        raise AssertionError("no BadRequestError")

    for name, check in [
        ("chat completion", chat),
        ("streamed chat with include_usage", stream_with_usage),
        ("streamed chat without usage", stream_without_usage),
        ("completion", completions),
        ("embeddings", embeddings),
        ("models.list", models),
        ("unknown model -> NotFoundError", not_found),
        ("embeddings on a chat endpoint -> BadRequestError", wrong_kind),
    ]:
        checks.run("openai %s: %s" % (label, name), check)


def anthropic_checks(checks, addr):
    """The official `anthropic` SDK against the native passthrough, answered by the mock."""
    import anthropic

    client = anthropic.Anthropic(
        base_url="http://%s/gateway/anthropic" % addr, api_key="unused", max_retries=0, timeout=10.0
    )
    words = len(PROMPT.split())
    messages = [{"role": "user", "content": PROMPT}]

    def create():
        message = client.messages.create(model="chat", max_tokens=256, system="Be brief.", messages=messages)
        expect(message.type == "message", "type %r" % message.type)
        expect(message.role == "assistant", "role %r" % message.role)
        text = "".join(block.text for block in message.content if block.type == "text")
        expect(text == PROMPT, "text %r" % text)
        expect(message.stop_reason == "end_turn", "stop_reason %r" % message.stop_reason)
        expect(message.usage.output_tokens == words, "output_tokens %s" % message.usage.output_tokens)
        expect(message.usage.input_tokens > 0, "input_tokens %s" % message.usage.input_tokens)
        return "usage %s/%s" % (message.usage.input_tokens, message.usage.output_tokens)

    def stream():
        with client.messages.stream(model="chat", max_tokens=256, messages=messages) as events:
            pieces = list(events.text_stream)
            final = events.get_final_message()
        expect("".join(pieces) == PROMPT, "pieces %r" % pieces)
        expect(len(pieces) == words, "%d pieces" % len(pieces))
        text = "".join(block.text for block in final.content if block.type == "text")
        expect(text == PROMPT, "final text %r" % text)
        expect(final.stop_reason == "end_turn", "stop_reason %r" % final.stop_reason)
        expect(final.usage.output_tokens == words, "output_tokens %s" % final.usage.output_tokens)
        expect(final.usage.input_tokens > 0, "input_tokens %s" % final.usage.input_tokens)
        return "%d pieces, usage %s/%s" % (len(pieces), final.usage.input_tokens, final.usage.output_tokens)

    def max_tokens():
        message = client.messages.create(model="chat", max_tokens=2, messages=messages)
        expect(message.stop_reason == "max_tokens", "stop_reason %r" % message.stop_reason)
        expect(message.usage.output_tokens == 2, "output_tokens %s" % message.usage.output_tokens)

    def not_found():
        try:
            client.messages.create(model="no-such-endpoint", max_tokens=16, messages=messages)
        except anthropic.NotFoundError as error:
            expect(error.status_code == 404, "status %s" % error.status_code)
            body = error.body if isinstance(error.body, dict) else {}
            kind = (body.get("error") or {}).get("type", body.get("type"))
            expect(kind == "not_found_error", "error type %r in %r" % (kind, error.body))
            return "404 %s" % kind
        raise AssertionError("no NotFoundError")

    for name, check in [
        ("messages.create", create),
        ("messages.stream (text and final usage)", stream),
        ("max_tokens stop", max_tokens),
        ("unknown model -> NotFoundError", not_found),
    ]:
        checks.run("anthropic /gateway/anthropic: %s" % name, check)


def mlflow_checks(checks, addr):
    from mlflow.deployments import get_deploy_client

    client = get_deploy_client("http://%s" % addr)

    def list_endpoints():
        names = [e.name for e in client.list_endpoints()]
        expect("chat" in names and "embeddings" in names, "names %r" % names)
        return ", ".join(names)

    def get_endpoint():
        endpoint = client.get_endpoint("chat")
        expect(endpoint.name == "chat", "name")
        expect(endpoint.endpoint_type == "llm/v1/chat", "type %r" % endpoint.endpoint_type)
        expect(endpoint.endpoint_url.startswith("http://%s/" % addr), "url %r" % endpoint.endpoint_url)
        return endpoint.endpoint_url

    def predict_chat():
        response = client.predict(
            endpoint="chat", inputs={"messages": [{"role": "user", "content": PROMPT}]}
        )
        content = response["choices"][0]["message"]["content"]
        expect(content == PROMPT, "content %r" % content)
        expect(response["usage"]["completion_tokens"] == len(PROMPT.split()), "usage")

    def predict_embeddings():
        response = client.predict(endpoint="embeddings", inputs={"input": ["a", "b", "c"]})
        expect(len(response["data"]) == 3, "%d vectors" % len(response["data"]))

    def predict_unknown():
        try:
            client.predict(endpoint="no-such-endpoint", inputs={"messages": [{"role": "user", "content": "x"}]})
        except Exception as error:  # noqa: BLE001 - MLflow raises its own or requests' error
            expect("404" in str(error) or "not exist" in str(error), "error %r" % error)
            return type(error).__name__
        raise AssertionError("no error for an unknown endpoint")

    for name, check in [
        ("list_endpoints", list_endpoints),
        ("get_endpoint", get_endpoint),
        ("predict chat", predict_chat),
        ("predict embeddings", predict_embeddings),
        ("predict unknown endpoint fails", predict_unknown),
    ]:
        checks.run("mlflow %s" % name, check)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floodgate", required=True, help="path to the built floodgate binary")
    args = parser.parse_args()

    checks = Checks()
    node = None
    try:
        node = Floodgate(args.floodgate)
        addr = None

        def started():
            nonlocal addr
            addr = node.address()
            return addr

        checks.run("floodgate dev starts", started)
        if addr is not None:
            called = False
            try:
                import openai  # noqa: F401
            except ImportError as error:
                checks.run("import openai", lambda: (_ for _ in ()).throw(error))
            else:
                called = True
                openai_checks(checks, "http://%s/gateway/mlflow/v1" % addr, "/gateway/mlflow/v1")
                openai_checks(checks, "http://%s/v1" % addr, "/v1")
            try:
                import anthropic  # noqa: F401
            except ImportError as error:
                checks.run("import anthropic", lambda: (_ for _ in ()).throw(error))
            else:
                called = True
                anthropic_checks(checks, addr)
            try:
                import mlflow.deployments  # noqa: F401
            except ImportError:
                print("skip mlflow: mlflow.deployments is not importable", flush=True)
            else:
                called = True
                mlflow_checks(checks, addr)

            def sigterm():
                records = node.usage_traces(called)
                expect(records or not called, "no usage recorded by dev's projector")
                expect(any(r["streamed"] for r in records) or not called, "no streamed record")
                expect(all(r["status"] for r in records), "record without status")
                code = node.stop()
                expect(code == 0, "exit code %s" % code)
                return "exit 0, %d usage records" % len(records)

            checks.run("SIGTERM stops floodgate with exit 0", sigterm)
    except Exception as error:  # noqa: BLE001
        checks.run("harness", lambda: (_ for _ in ()).throw(error))
    finally:
        if node is not None:
            node.stop()
    print("%d passed, %d failed" % (checks.passed, checks.failed), flush=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
