//! # floodgate-events
//!
//! The usage event log between the edges and the projector (see `ARCHITECTURE.md`, event
//! log). Every request becomes one [`floodgate_proto::v1::UsageEvent`]; the edge writes it
//! to a local spool, a publisher moves it to NATS JetStream (or, under `floodgate dev`, to
//! a local event log in sled), and the projector reads it back through an [`EventSource`].
//!
//! Module map:
//!
//! * [`envelope`] — the wire form: `EventEnvelope { version: 1, event }`.
//! * [`spool`] — the edge's segment-file spool with group commit ([`Spool`], [`FlushPolicy`]).
//! * [`publish`] — the [`EventLog`] trait, JetStream's implementation and the
//!   [`Publisher`] that drains the spool.
//! * [`stream`] — connecting to NATS and creating or updating the stream `FLOODGATE_USAGE`.
//! * [`local`] — the sled event log of `floodgate dev` and its [`LocalSource`].
//! * [`jetstream`] — [`JetStreamSource`], a durable pull consumer.
//! * `source` — the [`EventSource`] trait both sources implement.
//! * `testing` (feature `test-support`) — a real `nats-server` for tests.

mod buffer;
pub mod envelope;
pub mod jetstream;
pub mod local;
pub mod publish;
mod source;
pub mod spool;
pub mod stream;
#[cfg(feature = "test-support")]
pub mod testing;

pub use jetstream::JetStreamSource;
pub use local::{LocalLog, LocalSource};
pub use publish::{EventLog, JetStreamLog, Publisher};
pub use source::{Delivered, EventSource, SourceError};
pub use spool::{FlushPolicy, Spool};
