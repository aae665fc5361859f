//! The `$leave` of a connection the fan-out pruned. Between a member's close
//! and its `$disconnect`, @connections already answers 410 for it (on AWS as
//! locally); a fan-out in that window prunes its record, and `$disconnect`,
//! which learns the member's session from that record, then finds none and
//! sends no leave. So the worker sends it, with the id `$disconnect` uses
//! ([`leave_id`]): the FIFO queue keeps whichever comes first.

use crate::backend::{Connection, OutgoingMessage, Queue};
use crate::envelope::{Callback, Envelope, LEAVE_ACTION, Sender, leave_id};
use crate::telemetry::Metrics;

/// Puts `conn`'s `$leave` in its session's group, for the API at `endpoint`
/// (the one that answered 410). A failure is logged and counted, never
/// returned: the fan-out that pruned goes on.
pub(super) async fn enqueue(
    queue: &dyn Queue,
    metrics: &Metrics,
    endpoint: &str,
    conn: &Connection,
) {
    let callback = Callback::from_endpoint(endpoint).or_else(|| {
        Some(Callback {
            domain_name: conn.domain_name.clone()?,
            stage: conn.stage.clone()?,
        })
    });
    let envelope = Envelope::presence_event(
        leave_id(&conn.connection_id),
        LEAVE_ACTION,
        conn.session_id.clone(),
        Sender {
            connection_id: conn.connection_id.clone(),
            user_id: conn.user_id.clone(),
        },
        callback,
        crate::sync::now_ms(),
    );
    let counter = &metrics.presence_events;
    match queue.send(&OutgoingMessage::of_envelope(&envelope)).await {
        Ok(message_id) => {
            counter.with_label_values(&["leave", "enqueued"]).inc();
            tracing::info!(
                connection_id = %conn.connection_id,
                session = %conn.session_id,
                %message_id,
                "enqueued the leave of a pruned connection"
            );
        }
        Err(e) => {
            counter
                .with_label_values(&["leave", "enqueue_failed"])
                .inc();
            metrics
                .backend_errors
                .with_label_values(&["leave", e.kind.as_str()])
                .inc();
            tracing::warn!(
                connection_id = %conn.connection_id,
                session = %conn.session_id,
                error = %e,
                "could not enqueue the leave of a pruned connection: the session's \
                 members are not told it left"
            );
        }
    }
}
