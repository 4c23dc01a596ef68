//! Streaming: SSE forwarded chunk by chunk, usage always captured, client disconnects and
//! upstream failures mid-stream, the built-in mock's streams, completions streams, and the
//! total timeout applied to a stream.

use crate::common::upstream::{
    CACHED_TOKENS, COMPLETION_TOKENS, PROMPT_TOKENS, UPSTREAM_KEY, Upstream,
};
use crate::common::{TestGateway, client, wait_until, within};
use serde_json::{Value, json};

/// One endpoint of a test config: name, kind, upstream model, extra YAML lines (indented
/// for the endpoint mapping).
struct Ep<'a> {
    name: &'a str,
    kind: &'a str,
    model: &'a str,
    extra: &'a str,
}

const fn ep<'a>(name: &'a str, kind: &'a str, model: &'a str) -> Ep<'a> {
    Ep {
        name,
        kind,
        model,
        extra: "",
    }
}

/// A gateway whose endpoints all target the mock OpenAI upstream.
async fn gateway(upstream: &Upstream, endpoints: &[Ep<'_>]) -> TestGateway {
    let mut yaml = String::from("auth: none\nendpoints:\n");
    for e in endpoints {
        yaml.push_str(&format!(
            "  - name: {}\n    kind: {}\n    targets:\n      - provider: openai\n        model: {}\n        api_base: {}\n        credentials: {{api_key: $UPSTREAM_KEY}}\n{}",
            e.name,
            e.kind,
            e.model,
            upstream.base(),
            e.extra
        ));
    }
    TestGateway::from_yaml(&yaml, &[("UPSTREAM_KEY", UPSTREAM_KEY)]).await
}

/// A gateway with one chat and one completions endpoint on the built-in mock provider.
async fn mock_gateway(model: &str) -> TestGateway {
    let yaml = format!(
        "auth: none\nendpoints:\n  - name: chat\n    kind: chat\n    targets:\n      - provider: mock\n        model: {model}\n  - name: text\n    kind: completions\n    targets:\n      - provider: mock\n        model: {model}\n"
    );
    TestGateway::from_yaml(&yaml, &[]).await
}

/// One SSE event as the client saw it.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    /// `data: {json}`.
    Data(Value),
    /// `data: [DONE]`.
    Done,
}

impl Event {
    fn json(&self) -> &Value {
        match self {
            Self::Data(value) => value,
            Self::Done => panic!("expected a JSON event, got [DONE]"),
        }
    }

    /// A chunk carrying answer content (chat delta content or completion text).
    fn is_content(&self) -> bool {
        let Self::Data(value) = self else {
            return false;
        };
        let choice = &value["choices"][0];
        choice["delta"]["content"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
            || choice["text"].as_str().is_some_and(|s| !s.is_empty())
    }

    /// A chunk with a non-null `usage`.
    fn has_usage(&self) -> bool {
        matches!(self, Self::Data(value) if value.get("usage").is_some_and(|u| !u.is_null()))
    }

    fn is_error(&self) -> bool {
        matches!(self, Self::Data(value) if value.get("error").is_some())
    }
}

/// Reads a streamed response incrementally and splits it into SSE events.
struct Sse {
    response: reqwest::Response,
    buffer: Vec<u8>,
    ended: bool,
}

impl Sse {
    fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "content-type {content_type}"
        );
        Self {
            response,
            buffer: Vec::new(),
            ended: false,
        }
    }

    fn request_id(&self) -> String {
        self.response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned()
    }

    /// The next complete event, or `None` at the end of the body.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(at) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buffer.drain(..at + 2).collect();
                return Some(parse(&String::from_utf8(raw).unwrap()));
            }
            if self.ended {
                assert!(
                    self.buffer.iter().all(u8::is_ascii_whitespace),
                    "stream ended inside an event: {:?}",
                    String::from_utf8_lossy(&self.buffer)
                );
                return None;
            }
            match within("the next stream bytes", self.response.chunk()).await {
                Ok(Some(bytes)) => self.buffer.extend_from_slice(&bytes),
                Ok(None) => self.ended = true,
                Err(e) => panic!("stream body failed: {e}"),
            }
        }
    }

    /// Every remaining event.
    async fn rest(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

fn parse(raw: &str) -> Event {
    let data: Vec<&str> = raw
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim_start)
        .collect();
    assert_eq!(data.len(), 1, "one data line per event: {raw:?}");
    if data[0] == "[DONE]" {
        Event::Done
    } else {
        Event::Data(serde_json::from_str(data[0]).unwrap_or_else(|e| panic!("{e}: {:?}", data[0])))
    }
}

async fn post(gw: &TestGateway, path: &str, body: Value) -> reqwest::Response {
    within(
        "response headers",
        client().post(gw.url(path)).json(&body).send(),
    )
    .await
    .unwrap()
}

fn chat_body(endpoint: &str) -> Value {
    json!({"model": endpoint, "stream": true, "messages": [{"role": "user", "content": "hi there"}]})
}

#[tokio::test]
async fn sse_is_forwarded_chunk_by_chunk() {
    let upstream = Upstream::start().await;
    let gw = gateway(&upstream, &[ep("held", "chat", "hold")]).await;
    let mut sse = Sse::new(post(&gw, "/v1/chat/completions", chat_body("held")).await);
    assert_eq!(sse.response.headers()["cache-control"], "no-cache");

    // The upstream has sent one chunk and is holding the rest: the client must already
    // have it, and the upstream stream must still be open.
    let first = sse.next().await.expect("a first chunk before release");
    assert_eq!(first.json()["choices"][0]["delta"]["content"], "Hello");
    assert_eq!(first.json()["object"], "chat.completion.chunk");
    assert_eq!(upstream.streams_finished(), 0, "upstream already finished");
    assert_eq!(upstream.streams_dropped(), 0);

    upstream.release();
    let rest = sse.rest().await;
    assert_eq!(rest.last(), Some(&Event::Done), "{rest:?}");
    let contents: Vec<&str> = rest
        .iter()
        .filter(|e| e.is_content())
        .map(|e| e.json()["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, vec![" later"]);
    assert_eq!(rest.iter().filter(|e| **e == Event::Done).count(), 1);
    wait_until("the upstream stream to finish", || {
        (upstream.streams_finished() == 1).then_some(())
    })
    .await;

    let record = gw.usage.wait_for_request(&sse.request_id()).await;
    assert_eq!(record.status, 200);
    assert!(record.streamed);
    assert!(!record.client_cancelled);
    assert!(record.ttft_us.is_some());
}

#[tokio::test]
async fn usage_is_captured_even_when_the_client_did_not_ask() {
    let upstream = Upstream::start().await;
    let gw = gateway(&upstream, &[ep("chat", "chat", "gpt-4o-mini")]).await;

    let mut sse = Sse::new(post(&gw, "/v1/chat/completions", chat_body("chat")).await);
    let events = sse.rest().await;
    assert_eq!(events.last(), Some(&Event::Done), "{events:?}");
    assert_eq!(events.iter().filter(|e| e.is_content()).count(), 3);
    assert!(
        !events.iter().any(Event::has_usage),
        "a client that did not ask got a usage chunk: {events:?}"
    );

    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body["stream"], true);
    assert_eq!(seen[0].body["stream_options"]["include_usage"], true);
    assert_eq!(seen[0].body["model"], "gpt-4o-mini");

    let record = gw.usage.wait_for_request(&sse.request_id()).await;
    assert_eq!(record.status, 200);
    assert_eq!(record.error_type, None);
    assert_eq!(record.usage.input_tokens, PROMPT_TOKENS);
    assert_eq!(record.usage.output_tokens, COMPLETION_TOKENS);
    assert_eq!(record.usage.cached_tokens, CACHED_TOKENS);
    assert!(record.streamed);
    assert!(record.ttft_us.is_some());
    assert!(!record.client_cancelled);
}

#[tokio::test]
async fn usage_chunk_reaches_a_client_that_asked() {
    let upstream = Upstream::start().await;
    let gw = gateway(&upstream, &[ep("chat", "chat", "gpt-4o-mini")]).await;

    let mut body = chat_body("chat");
    body["stream_options"] = json!({"include_usage": true});
    let mut sse = Sse::new(post(&gw, "/v1/chat/completions", body).await);
    let events = sse.rest().await;
    assert_eq!(events.last(), Some(&Event::Done), "{events:?}");
    let usage: Vec<&Event> = events.iter().filter(|e| e.has_usage()).collect();
    assert_eq!(usage.len(), 1, "{events:?}");
    let usage = usage[0].json();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(usage["usage"]["completion_tokens"], COMPLETION_TOKENS);
    assert_eq!(
        usage["usage"]["prompt_tokens_details"]["cached_tokens"],
        CACHED_TOKENS
    );
    // The usage chunk comes just before [DONE], after every content chunk.
    assert!(events[events.len() - 2].has_usage());

    assert_eq!(
        upstream.seen()[0].body["stream_options"]["include_usage"],
        true
    );
    let record = gw.usage.wait_for_request(&sse.request_id()).await;
    assert_eq!(record.status, 200);
    assert_eq!(record.usage.input_tokens, PROMPT_TOKENS);
    assert_eq!(record.usage.output_tokens, COMPLETION_TOKENS);
    assert_eq!(record.usage.cached_tokens, CACHED_TOKENS);
    assert!(record.streamed);
    assert!(record.ttft_us.is_some());
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_and_is_recorded() {
    let upstream = Upstream::start().await;
    let gw = gateway(&upstream, &[ep("held", "chat", "hold")]).await;
    let mut sse = Sse::new(post(&gw, "/v1/chat/completions", chat_body("held")).await);
    let request_id = sse.request_id();
    let first = sse.next().await.expect("a first chunk");
    assert!(first.is_content());
    assert_eq!(upstream.streams_dropped(), 0);

    drop(sse);

    // Without release the upstream never ends on its own: only cancellation can drop it.
    wait_until("the upstream request to be cancelled", || {
        (upstream.streams_dropped() == 1).then_some(())
    })
    .await;
    assert_eq!(upstream.streams_finished(), 0);

    let record = gw.usage.wait_for_request(&request_id).await;
    assert!(record.client_cancelled);
    assert_eq!(record.status, 499);
    assert!(record.streamed);
    assert_eq!(record.error_type, Some("client_cancelled"));
    assert!(record.ttft_us.is_some());
    assert_eq!(
        gw.usage.all().len(),
        1,
        "the record is emitted exactly once"
    );
}

#[tokio::test]
async fn upstream_cut_mid_stream_ends_with_an_error_event() {
    let upstream = Upstream::start().await;
    let gw = gateway(&upstream, &[ep("cut", "chat", "cut")]).await;
    let mut sse = Sse::new(post(&gw, "/v1/chat/completions", chat_body("cut")).await);
    let events = sse.rest().await;

    assert!(!events.contains(&Event::Done), "{events:?}");
    assert_eq!(events.iter().filter(|e| e.is_content()).count(), 2);
    let last = events.last().expect("events");
    assert!(last.is_error(), "{events:?}");
    let error = &last.json()["error"];
    assert_eq!(error["code"], "upstream_interrupted");
    assert_eq!(error["type"], "upstream_error");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(error.get("param").is_some());
    assert_eq!(events.iter().filter(|e| e.is_error()).count(), 1);

    let record = gw.usage.wait_for_request(&sse.request_id()).await;
    assert_eq!(record.error_type, Some("upstream_interrupted"));
    assert!(record.streamed);
    assert!(!record.client_cancelled);
    assert_eq!(record.usage.output_tokens, 2, "partial output counted");
    assert!(record.usage.input_tokens > 0, "input estimated");
}

#[tokio::test]
async fn builtin_mock_streams_exactly_n_chunks() {
    let gw = mock_gateway("stream-5").await;

    let mut sse = Sse::new(post(&gw, "/v1/chat/completions", chat_body("chat")).await);
    let events = sse.rest().await;
    assert_eq!(events.len(), 6, "{events:?}");
    assert!(events[..5].iter().all(Event::is_content), "{events:?}");
    assert_eq!(events[5], Event::Done);
    assert!(!events.iter().any(Event::has_usage));
    assert_eq!(events[4].json()["choices"][0]["finish_reason"], "stop");
    let record = gw.usage.wait_for_request(&sse.request_id()).await;
    assert_eq!(record.status, 200);
    assert_eq!(record.usage.output_tokens, 5);
    assert!(record.streamed);

    let mut body = chat_body("chat");
    body["stream_options"] = json!({"include_usage": true});
    let mut sse = Sse::new(post(&gw, "/v1/chat/completions", body).await);
    let events = sse.rest().await;
    assert_eq!(events.len(), 7, "{events:?}");
    assert_eq!(events.iter().filter(|e| e.is_content()).count(), 5);
    assert!(events[5].has_usage(), "{events:?}");
    assert_eq!(events[5].json()["usage"]["completion_tokens"], 5);
    assert_eq!(events[6], Event::Done);
}

#[tokio::test]
async fn completions_stream_through_the_openai_client() {
    let upstream = Upstream::start().await;
    let gw = gateway(
        &upstream,
        &[ep("text", "completions", "gpt-3.5-turbo-instruct")],
    )
    .await;

    let body = json!({"model": "text", "prompt": "Say something", "stream": true});
    let mut sse = Sse::new(post(&gw, "/v1/completions", body).await);
    let events = sse.rest().await;
    assert_eq!(events.last(), Some(&Event::Done), "{events:?}");
    let text: String = events
        .iter()
        .filter(|e| e.is_content())
        .map(|e| e.json()["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "completed text here");
    assert!(
        events[..events.len() - 1]
            .iter()
            .all(|e| e.json()["object"] == "text_completion")
    );
    assert!(!events.iter().any(Event::has_usage));

    let seen = upstream.seen();
    assert_eq!(seen[0].path, "/v1/completions");
    assert_eq!(seen[0].body["stream_options"]["include_usage"], true);
    let record = gw.usage.wait_for_request(&sse.request_id()).await;
    assert_eq!(record.status, 200);
    assert_eq!(record.usage.input_tokens, PROMPT_TOKENS);
    assert_eq!(record.usage.output_tokens, COMPLETION_TOKENS);
    assert_eq!(record.usage.cached_tokens, CACHED_TOKENS);
    assert!(record.streamed);
}

#[tokio::test]
async fn completions_stream_from_the_builtin_mock() {
    let gw = mock_gateway("stream-3").await;
    let body = json!({"model": "text", "prompt": "one two three", "stream": true,
                      "stream_options": {"include_usage": true}});
    let mut sse = Sse::new(post(&gw, "/v1/completions", body).await);
    let events = sse.rest().await;
    assert_eq!(events.len(), 5, "{events:?}");
    let text: String = events[..3]
        .iter()
        .map(|e| e.json()["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "one two three");
    assert_eq!(events[0].json()["object"], "text_completion");
    assert_eq!(events[3].json()["usage"]["completion_tokens"], 3);
    assert_eq!(events[4], Event::Done);
    let record = gw.usage.wait_for_request(&sse.request_id()).await;
    assert_eq!(record.usage.output_tokens, 3);
    assert!(record.streamed);
}

#[tokio::test]
async fn total_timeout_ends_a_stream_with_an_error_event() {
    let upstream = Upstream::start().await;
    let gw = gateway(
        &upstream,
        &[Ep {
            extra: "    timeouts: {total: 450ms}\n",
            ..ep("drip", "chat", "drip-300")
        }],
    )
    .await;
    let mut sse = Sse::new(post(&gw, "/v1/chat/completions", chat_body("drip")).await);
    let events = sse.rest().await;

    assert!(!events.contains(&Event::Done), "{events:?}");
    let content = events.iter().filter(|e| e.is_content()).count();
    assert!((1..3).contains(&content), "{events:?}");
    let last = events.last().expect("events");
    assert!(last.is_error(), "{events:?}");
    assert_eq!(last.json()["error"]["code"], "upstream_timeout");
    assert!(
        last.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("total"),
        "{last:?}"
    );

    let record = gw.usage.wait_for_request(&sse.request_id()).await;
    assert_eq!(record.error_type, Some("upstream_timeout"));
    assert!(record.streamed);
    // The upstream request is abandoned, not left running.
    wait_until("the timed-out upstream stream to be dropped", || {
        (upstream.streams_dropped() == 1).then_some(())
    })
    .await;
    assert_eq!(upstream.streams_finished(), 0);
}
