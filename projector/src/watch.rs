//! The live feed behind `WatchUsage`: events as they are folded, filtered, as a stream. A
//! watcher that falls more than the feed's capacity behind skips ahead (and the skip is
//! logged); the feed never slows the fold.

use std::sync::Arc;

use floodgate_proto::v1::UsageEvent;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::dims::Filter;
use crate::store::Projection;

/// The events folded from now on that pass `filter`.
pub fn events(
    projection: &Projection,
    filter: Filter,
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
}
