//! The live feed behind `WatchUsage`: events as they are folded, filtered, as a stream. A
//! watcher that falls more than the feed's capacity behind skips ahead (and the skip is
//! logged); the feed never slows the fold. Streams end when the server stops, so a
//! graceful shutdown does not wait on open watches.

use std::sync::Arc;

use floodgate_proto::v1::UsageEvent;
use futures::Stream;
use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::dims::Filter;
use crate::store::Projection;

/// The events folded from now on that pass `filter`, until `stop` is cancelled.
pub fn events(
    projection: &Projection,
    filter: Filter,
    stop: CancellationToken,
) -> impl Stream<Item = Arc<UsageEvent>> + Send + 'static {
    let receiver = projection.subscribe();
    futures::stream::unfold((receiver, filter), |(mut receiver, filter)| async move {
        loop {
            match receiver.recv().await {
                Ok(event) if filter.admits(&event) => return Some((event, (receiver, filter))),
                Ok(_) => {}
                Err(RecvError::Lagged(skipped)) => {
                    tracing::warn!(skipped, "a usage watcher fell behind and skipped events");
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .take_until(stop.cancelled_owned())
}
