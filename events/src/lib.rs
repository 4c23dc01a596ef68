//! # floodgate-events
//!
//! The usage event log between the edges and the projector (see `ARCHITECTURE.md`, event
//! log). Every request becomes one [`floodgate_proto::v1::UsageEvent`]; the edge writes it
//! to a local spool, a publisher moves it to NATS JetStream (or, under `floodgate dev`, to
//! a local event log in sled), and the projector reads it back through an [`EventSource`].

mod source;

pub use source::{Delivered, EventSource, SourceError};
