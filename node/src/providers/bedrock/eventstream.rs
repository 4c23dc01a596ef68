//! The `application/vnd.amazon.eventstream` framing of Bedrock's streaming answers
//! (ConverseStream, InvokeModelWithResponseStream): binary messages, each a prelude (total
//! and header lengths, CRC), typed headers, a payload and a message CRC. Frames are cut
//! from the byte stream here and decoded and checksum-verified by AWS's own
//! `aws-smithy-eventstream`; this module only classifies them by their `:message-type`.

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::{Buf, Bytes, BytesMut};

/// Largest message accepted (AWS's event-stream limit is 16 MiB per message).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// Prelude: total length, headers length, prelude CRC.
const PRELUDE: usize = 12;

/// One decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `:message-type: event`: an event of the stream's union, named by `:event-type`.
    Event {
        /// `:event-type` (`messageStart`, `contentBlockDelta`, `chunk`, ...).
        kind: String,
        /// The event's JSON payload.
        payload: Bytes,
    },
    /// `:message-type: exception`: a modeled error, named by `:exception-type`.
    Exception {
        /// `:exception-type` (`throttlingException`, ...).
        kind: String,
        /// The exception's JSON payload (`{"message": ...}`).
        payload: Bytes,
    },
    /// `:message-type: error`: an unmodeled error with `:error-code`/`:error-message`.
    Error {
        /// `:error-code`.
        code: String,
        /// `:error-message`.
        message: String,
    },
}

/// Why the byte stream is not a valid event stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A message declares a length outside the protocol's bounds.
    #[error("an event-stream message declares an invalid length of {0} bytes")]
    BadLength(usize),
    /// The framing library rejected a message (CRC mismatch, bad header encoding...).
    #[error("an event-stream message is corrupt: {0}")]
    Corrupt(String),
    /// A message lacks `:message-type` or the header naming its event.
    #[error("an event-stream message has no `{0}` header")]
    MissingHeader(&'static str),
    /// The stream ended inside a message.
    #[error("the event stream ended inside a message ({0} bytes left over)")]
    Truncated(usize),
}

/// Cuts messages out of the bytes received so far.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: BytesMut,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        if self.buffer.len() < PRELUDE {
            return Ok(None);
        }
        let total = (&self.buffer[..4]).get_u32() as usize;
        if !(PRELUDE + 4..=MAX_MESSAGE).contains(&total) {
            return Err(DecodeError::BadLength(total));
        }
        if self.buffer.len() < total {
            return Ok(None);
        }
        let bytes = self.buffer.split_to(total).freeze();
        let message = read_message_from(bytes).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
        classify(&message).map(Some)
    }

    /// Checks, once the body has ended, that no partial message is left.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buffer.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Truncated(self.buffer.len()))
        }
    }
}

fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

fn classify(message: &Message) -> Result<Frame, DecodeError> {
    let payload = message.payload().clone();
    match header(message, ":message-type") {
        Some("event") => Ok(Frame::Event {
            kind: header(message, ":event-type")
                .ok_or(DecodeError::MissingHeader(":event-type"))?
                .to_owned(),
            payload,
        }),
        Some("exception") => Ok(Frame::Exception {
            kind: header(message, ":exception-type")
                .ok_or(DecodeError::MissingHeader(":exception-type"))?
                .to_owned(),
            payload,
        }),
        Some("error") => Ok(Frame::Error {
            code: header(message, ":error-code")
                .unwrap_or("InternalFailure")
                .to_owned(),
            message: header(message, ":error-message")
                .unwrap_or("the event stream reported an error")
                .to_owned(),
        }),
        _ => Err(DecodeError::MissingHeader(":message-type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::Header;

    fn encode(headers: &[(&str, &str)], payload: &str) -> Vec<u8> {
        let mut message = Message::new(Bytes::from(payload.to_owned()));
        for (name, value) in headers {
            message = message.add_header(Header::new(
                (*name).to_owned(),
                HeaderValue::String((*value).to_owned().into()),
            ));
        }
        let mut out = Vec::new();
        write_message_to(&message, &mut out).unwrap();
        out
    }

    fn event(kind: &str, payload: &str) -> Vec<u8> {
        encode(
            &[
                (":event-type", kind),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload,
        )
    }

    #[test]
    fn messages_split_across_reads_are_reassembled() {
        let mut bytes = event("messageStart", r#"{"role":"assistant"}"#);
        bytes.extend(event("contentBlockDelta", r#"{"delta":{"text":"hi"}}"#));
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        for byte in &bytes {
            decoder.push(std::slice::from_ref(byte));
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        decoder.finish().unwrap();
        assert_eq!(
            frames,
            vec![
                Frame::Event {
                    kind: "messageStart".into(),
                    payload: Bytes::from_static(br#"{"role":"assistant"}"#)
                },
                Frame::Event {
                    kind: "contentBlockDelta".into(),
                    payload: Bytes::from_static(br#"{"delta":{"text":"hi"}}"#)
                },
            ]
        );
    }

    #[test]
    fn exceptions_and_errors_are_classified() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&encode(
            &[
                (":exception-type", "throttlingException"),
                (":content-type", "application/json"),
                (":message-type", "exception"),
            ],
            r#"{"message":"slow down"}"#,
        ));
        decoder.push(&encode(
            &[
                (":error-code", "InternalFailure"),
                (":error-message", "boom"),
                (":message-type", "error"),
            ],
            "",
        ));
        assert!(matches!(
            decoder.next_frame().unwrap(),
            Some(Frame::Exception { kind, .. }) if kind == "throttlingException"
        ));
        assert_eq!(
            decoder.next_frame().unwrap(),
            Some(Frame::Error {
                code: "InternalFailure".into(),
                message: "boom".into()
            })
        );
    }

    #[test]
    fn corruption_and_truncation_are_errors() {
        let mut bytes = event("chunk", r#"{"bytes":"e30="}"#);
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let mut decoder = FrameDecoder::new();
        decoder.push(&bytes);
        assert!(matches!(decoder.next_frame(), Err(DecodeError::Corrupt(_))));

        let bytes = event("chunk", r#"{"bytes":"e30="}"#);
        let mut decoder = FrameDecoder::new();
        decoder.push(&bytes[..bytes.len() - 3]);
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(
            decoder.finish(),
            Err(DecodeError::Truncated(bytes.len() - 3))
        );

        let mut decoder = FrameDecoder::new();
        decoder.push(&[0xff; 16]);
        assert!(matches!(
            decoder.next_frame(),
            Err(DecodeError::BadLength(_))
        ));
    }
}
