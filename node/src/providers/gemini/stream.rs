//! Gemini SSE streams (`:streamGenerateContent?alt=sse`, each event `data:
//! {GenerateContentResponse}`, no terminator) → the gateway's [`EventStream`].
//!
//! Two translations share one driver:
//! * [`ChatStream`]: OpenAI `chat.completion.chunk`s ending `data: [DONE]`, the usage chunk
//!   only when the client asked for it;
//! * [`NativeStream`]: each event passed through unchanged (native passthrough).
//!
//! Both report usage as [`StreamEvent::Usage`] from `usageMetadata` whenever an event carries
//! output counts (Google's counts are running totals, so a cut stream still records what was
//! produced), and both end with [`ProviderError::Interrupted`] when the upstream closes before
//! every candidate has a `finishReason`. The first item is read before the stream is handed
//! over, so an error or a blocked prompt in the first event becomes an HTTP error rather than
//! a 200 followed by an error event.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use serde_json::{Value, json};

use super::errors::{error_object, from_stream_error};
use super::response::{self, CallIds};
use crate::providers::{
    DONE_FRAME, EventStream, ProviderError, StreamEvent, TimeoutPhase, data_frame,
};
use crate::usage::Usage;

type Item = Result<StreamEvent, ProviderError>;

/// One stream translation: what each upstream event becomes, and what the end becomes.
pub(crate) trait Translate: Send + 'static {
    /// Items for one event's `data`.
    fn event(&mut self, data: &str) -> Vec<Item>;
    /// Items once the upstream closed.
    fn end(&mut self) -> Vec<Item>;
}

type Upstream =
    std::pin::Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

struct Driver<T> {
    events: Upstream,
    translator: T,
    pending: VecDeque<Item>,
    finished: bool,
}

impl<T: Translate> Driver<T> {
    async fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                if item.is_err() {
                    self.finished = true;
                    self.pending.clear();
                }
                return Some(item);
            }
            if self.finished {
                return None;
            }
            match self.events.next().await {
                None => {
                    self.finished = true;
                    self.pending.extend(self.translator.end());
                }
                Some(Err(EventStreamError::Transport(e))) => {
                    self.finished = true;
                    return Some(Err(ProviderError::from_transport(e, TimeoutPhase::Total)));
                }
                Some(Err(other)) => {
                    self.finished = true;
                    return Some(Err(ProviderError::InvalidResponse {
                        detail: other.to_string(),
                    }));
                }
                Some(Ok(event)) => self.pending.extend(self.translator.event(&event.data)),
            }
        }
    }
}

/// Reads `response` as SSE through `translator`. The first item is awaited here: if it is
/// an error, that error is returned instead of a stream.
pub(crate) async fn event_stream<T: Translate>(
    response: reqwest::Response,
    translator: T,
) -> Result<EventStream, ProviderError> {
    let events: Upstream = Box::pin(response.bytes_stream().eventsource());
    let mut driver = Driver {
        events,
        translator,
        pending: VecDeque::new(),
        finished: false,
    };
    match driver.next().await {
        Some(Err(err)) => return Err(err),
        Some(Ok(first)) => driver.pending.push_front(Ok(first)),
        None => {}
    }
    Ok(Box::pin(futures::stream::unfold(
        driver,
        |mut driver| async move { driver.next().await.map(|item| (item, driver)) },
    )))
}

/// Parses an event's data as a JSON object, or turns it into the error it carries.
fn parse(data: &str, key: Option<&str>) -> Result<Value, ProviderError> {
    let value: Value = serde_json::from_str(data)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| ProviderError::InvalidResponse {
            detail: "a stream event was not a JSON object".into(),
        })?;
    match error_object(&value) {
        Some(error) => Err(from_stream_error(error, key)),
        None => Ok(value),
    }
}

/// Tracks which candidates have finished, and the latest usage.
#[derive(Debug, Default)]
struct Progress {
    /// Candidate index → finished.
    candidates: BTreeMap<u64, bool>,
    usage: Option<Usage>,
    usage_metadata: Option<Value>,
}

impl Progress {
    /// Notes an event's candidates and usage; returns the usage item to report, if any.
    fn note(&mut self, event: &Value) -> Option<Item> {
        let mut finishes = false;
        for (position, candidate) in response::candidates(event).iter().enumerate() {
            let index = candidate_index(candidate, position);
            let done = candidate.get("finishReason").is_some_and(|r| !r.is_null());
            finishes |= done;
            let entry = self.candidates.entry(index).or_insert(false);
            *entry |= done;
        }
        let metadata = event.get("usageMetadata")?;
        let usage = response::usage(metadata)?;
        self.usage = Some(usage);
        self.usage_metadata = Some(metadata.clone());
        let counts_output = metadata.get("candidatesTokenCount").is_some();
        (counts_output || finishes).then_some(Ok(StreamEvent::Usage(usage)))
    }

    fn complete(&self) -> bool {
        !self.candidates.is_empty() && self.candidates.values().all(|done| *done)
    }
}

fn candidate_index(candidate: &Value, position: usize) -> u64 {
    candidate
        .get("index")
        .and_then(Value::as_u64)
        .unwrap_or(position as u64)
}

fn interrupted() -> ProviderError {
    ProviderError::Interrupted {
        detail: "the Gemini stream ended before a finishReason".into(),
    }
}

/// Gemini events → OpenAI chat chunks.
#[derive(Debug)]
pub(crate) struct ChatStream {
    id: Option<String>,
    created: u64,
    model: String,
    forward_usage: bool,
    key: Option<String>,
    ids: CallIds,
    /// Candidate index → (role sent, tool calls so far).
    choices: BTreeMap<u64, (bool, usize)>,
    progress: Progress,
}

impl ChatStream {
    /// A translation for `model`; the usage chunk is sent only if `forward_usage`; `key`
    /// is scrubbed from upstream error messages.
    pub(crate) fn new(model: &str, forward_usage: bool, key: Option<String>) -> Self {
        Self {
            id: None,
            created: response::now_secs(),
            model: model.to_owned(),
            forward_usage,
            key,
            ids: CallIds::default(),
            choices: BTreeMap::new(),
            progress: Progress::default(),
        }
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> Item {
        let mut chunk = json!({
            "id": self.id.as_deref().unwrap_or("chatcmpl-gemini"),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        Ok(StreamEvent::Frame(data_frame(chunk.to_string().as_bytes())))
    }
}

impl Translate for ChatStream {
    fn event(&mut self, data: &str) -> Vec<Item> {
        let event = match parse(data, self.key.as_deref()) {
            Ok(event) => event,
            Err(err) => return vec![Err(err)],
        };
        if self.id.is_none() {
            self.id = Some(response::completion_id(&event));
            if let Some(version) = event.get("modelVersion").and_then(Value::as_str) {
                self.model = version.to_owned();
            }
        }
        let candidates = response::candidates(&event);
        if candidates.is_empty() && event.pointer("/promptFeedback/blockReason").is_some() {
            return vec![Err(response::no_candidates(&event))];
        }
        let mut choices = Vec::with_capacity(candidates.len());
        for (position, candidate) in candidates.iter().enumerate() {
            let index = candidate_index(candidate, position);
            let said = response::said(candidate, &mut self.ids);
            let (role_sent, calls_so_far) = self.choices.entry(index).or_insert((false, 0));
            let mut delta = serde_json::Map::new();
            if let Some(text) = said.text {
                delta.insert("content".into(), json!(text));
            }
            if let Some(reasoning) = said.reasoning {
                delta.insert("reasoning_content".into(), json!(reasoning));
            }
            let has_calls = !said.calls.is_empty() || *calls_so_far > 0;
            if !said.calls.is_empty() {
                let calls: Vec<Value> = said
                    .calls
                    .into_iter()
                    .map(|mut call| {
                        call["index"] = json!(*calls_so_far);
                        *calls_so_far += 1;
                        call
                    })
                    .collect();
                delta.insert("tool_calls".into(), Value::Array(calls));
            }
            let finish = candidate
                .get("finishReason")
                .and_then(Value::as_str)
                .map(|reason| response::finish_reason(reason, has_calls));
            if delta.is_empty() && finish.is_none() {
                continue;
            }
            if !*role_sent {
                delta.insert("role".into(), json!("assistant"));
                *role_sent = true;
            }
            choices.push(json!({ "index": index, "delta": delta, "logprobs": null,
                                 "finish_reason": finish }));
        }
        let mut out: Vec<Item> = choices
            .into_iter()
            .map(|choice| self.chunk(json!([choice]), None))
            .collect();
        if let Some(usage) = self.progress.note(&event) {
            out.push(usage);
        }
        out
    }

    fn end(&mut self) -> Vec<Item> {
        if !self.progress.complete() {
            return vec![Err(interrupted())];
        }
        let mut out = Vec::with_capacity(3);
        if let (true, Some(metadata)) = (self.forward_usage, &self.progress.usage_metadata) {
            out.push(self.chunk(json!([]), Some(response::openai_usage(metadata))));
        }
        if let Some(usage) = self.progress.usage {
            out.push(Ok(StreamEvent::Usage(usage)));
        }
        out.push(Ok(StreamEvent::Frame(Bytes::from_static(DONE_FRAME))));
        out
    }
}

/// Gemini events passed through unchanged, usage read on the way.
#[derive(Debug)]
pub(crate) struct NativeStream {
    key: Option<String>,
    progress: Progress,
    blocked: bool,
}

impl NativeStream {
    /// A passthrough; `key` is scrubbed from upstream error messages.
    pub(crate) fn new(key: Option<String>) -> Self {
        Self {
            key,
            progress: Progress::default(),
            blocked: false,
        }
    }
}

impl Translate for NativeStream {
    fn event(&mut self, data: &str) -> Vec<Item> {
        let event = match parse(data, self.key.as_deref()) {
            Ok(event) => event,
            Err(err) => return vec![Err(err)],
        };
        // A blocked prompt is a complete native answer: no candidates, a blockReason.
        self.blocked |= event.pointer("/promptFeedback/blockReason").is_some();
        let mut out = vec![Ok(StreamEvent::Frame(data_frame(data.as_bytes())))];
        let usage = self.progress.note(&event);
        if let Some(usage) = usage.or_else(|| {
            (self.blocked)
                .then_some(self.progress.usage)
                .flatten()
                .map(|u| Ok(StreamEvent::Usage(u)))
        }) {
            out.push(usage);
        }
        out
    }

    fn end(&mut self) -> Vec<Item> {
        if self.blocked || self.progress.complete() {
            Vec::new()
        } else {
            vec![Err(interrupted())]
        }
    }
}
