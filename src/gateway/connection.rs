//! One open WebSocket connection: a reader (limits, idle and maximum-duration
//! timers, close handshake), a writer draining the bounded outbound buffer
//! (@connections posts, route responses), and a dispatcher that routes the
//! client's messages to integrations one at a time, in order. When the
//! connection ends, for whatever reason, `$disconnect` runs.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_util::sync::CancellationToken;

use super::Gateway;
use super::events::{disconnect_event, message_event};
use super::ids::new_id;
use super::registry::{CloseReason, ConnHandle, OutboundReceiver};
use crate::sync::now_ms;

/// Client messages waiting for their integration, per connection; a client
/// that sends faster than its integrations answer is slowed down (TCP
/// backpressure) instead of growing memory.
const INBOUND_QUEUE: usize = 16;

/// How long the close handshake may take before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How a connection ended: what `$disconnect` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ended {
    code: u16,
    reason: String,
    label: &'static str,
}

/// Runs an upgraded connection to its end, then `$disconnect`.
pub(super) async fn run(
    gw: Gateway,
    handle: Arc<ConnHandle>,
    socket: WebSocket,
    outbound: OutboundReceiver,
) {
    let (sink, stream) = socket.split();
    let stop_writer = CancellationToken::new();
    let mut writer = tokio::spawn(write_loop(
        sink,
        outbound,
        handle.clone(),
        stop_writer.clone(),
    ));
    // The dispatcher (a task and its queue) starts with the client's first
    // message: most connections only listen, and an idle one costs less.
    let mut dispatcher = Dispatcher::default();
    let ended = read_loop(&gw, &handle, stream, &mut dispatcher).await;
    // From here on @connections answers 410 for this id.
    gw.inner.registry.remove(&handle.id);
    if handle.close_reason().is_none() {
        // Closed by the client (its close was answered) or gone: nothing to send.
        stop_writer.cancel();
    }
    // On a server-side close the writer ends once its close frame is out.
    if timeout(CLOSE_GRACE, &mut writer).await.is_err() {
        writer.abort();
    }
    // Messages received before the close are still handled (as on AWS, where
    // their integrations are already running), then `$disconnect` runs.
    dispatcher.finish().await;
    let metrics = &gw.inner.metrics;
    metrics.open.dec();
    metrics.closes.with_label_values(&[ended.label]).inc();
    tracing::info!(connection = %handle.id, code = ended.code, reason = %ended.reason, "closed");
    // Boxed: the integration call's future is large, and inline it would be
    // part of every open connection's task for the whole connection.
    Box::pin(disconnect(&gw, &handle, ended.code, &ended.reason)).await;
}

/// Runs the `$disconnect` route for `handle`; failures are logged (best effort,
/// as on AWS).
pub(super) async fn disconnect(gw: &Gateway, handle: &ConnHandle, code: u16, reason: &str) {
    let Some(route) = gw.config().routes.get("$disconnect") else {
        return;
    };
    let event = disconnect_event(handle, code, reason, now_ms());
    match gw.inner.invoker.invoke(&route.integration, &event).await {
        Ok(r) if r.is_success() => {}
        Ok(r) => {
            tracing::warn!(connection = %handle.id, status = r.status_code, "$disconnect integration refused")
        }
        Err(e) => {
            tracing::warn!(connection = %handle.id, error = %e, "$disconnect integration failed")
        }
    }
}

/// The task that routes a connection's messages, once it has any.
#[derive(Default)]
struct Dispatcher {
    running: Option<(mpsc::Sender<String>, tokio::task::JoinHandle<()>)>,
}

impl Dispatcher {
    /// The queue of the dispatcher, started on first use.
    fn queue(&mut self, gw: &Gateway, handle: &Arc<ConnHandle>) -> &mpsc::Sender<String> {
        let (tx, _) = self.running.get_or_insert_with(|| {
            let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
            let task = tokio::spawn(dispatch_loop(gw.clone(), handle.clone(), rx));
            (tx, task)
        });
        tx
    }

    /// Waits until every queued message was handled.
    async fn finish(self) {
        if let Some((tx, task)) = self.running {
            drop(tx);
            let _ = task.await;
        }
    }
}

async fn read_loop(
    gw: &Gateway,
    handle: &Arc<ConnHandle>,
    mut stream: SplitStream<WebSocket>,
    dispatcher: &mut Dispatcher,
) -> Ended {
    let limits = gw.config().limits;
    let max_deadline = Instant::now() + limits.max_connection;
    let mut idle_deadline = Instant::now() + limits.idle_timeout;
    loop {
        let msg = tokio::select! {
            biased;
            _ = handle.closing() => break,
            _ = gw.inner.shutdown.cancelled() => { handle.close(CloseReason::GOING_AWAY); continue; }
            _ = sleep_until(max_deadline) => { handle.close(CloseReason::GOING_AWAY); continue; }
            _ = sleep_until(idle_deadline) => { handle.close(CloseReason::GOING_AWAY); continue; }
            m = stream.next() => m,
        };
        match msg {
            None => return abnormal(),
            Some(Err(e)) => match error_close(e) {
                Some(reason) => {
                    // The stream is unusable after a protocol or size error:
                    // send the close frame but do not wait for an answer.
                    handle.close(reason.clone());
                    return ended(&reason);
                }
                None => return abnormal(),
            },
            Some(Ok(Message::Text(text))) => {
                idle_deadline = Instant::now() + limits.idle_timeout;
                handle.touch();
                let in_tx = dispatcher.queue(gw, handle);
                tokio::select! {
                    _ = in_tx.send(text.to_string()) => {}
                    _ = handle.closing() => {}
                }
            }
            Some(Ok(Message::Binary(_))) => handle.close(CloseReason::BINARY),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                // tungstenite queues the pong and sends it with the next read.
                idle_deadline = Instant::now() + limits.idle_timeout;
                handle.touch();
            }
            Some(Ok(Message::Close(frame))) => {
                // One more read flushes tungstenite's close reply.
                let _ = timeout(CLOSE_GRACE, stream.next()).await;
                return match frame {
                    // A code that may not be sent (below 1000, 1004-1006,
                    // 1015, 1016-2999, 5000 and up): tungstenite has already
                    // answered 1002 "Protocol violation" and hands us that
                    // frame in place of the client's; count it as a protocol
                    // error, not as the client's own close.
                    Some(f) if f.code == 1002 && f.reason.as_str() == PROTOCOL_VIOLATION => Ended {
                        code: 1002,
                        reason: PROTOCOL_VIOLATION.into(),
                        label: "protocol",
                    },
                    Some(f) => Ended {
                        code: f.code,
                        reason: f.reason.to_string(),
                        label: "client",
                    },
                    None => Ended {
                        code: 1005,
                        reason: "Client-side close frame status not set".into(),
                        label: "client",
                    },
                };
            }
        }
    }
    // Closed by the gateway: wait for the client's close frame, briefly.
    let reason = handle.close_reason().unwrap_or(CloseReason::GOING_AWAY);
    let deadline = Instant::now() + CLOSE_GRACE;
    while let Ok(Some(Ok(m))) = timeout_at(deadline, stream.next()).await {
        if matches!(m, Message::Close(_)) {
            break;
        }
    }
    ended(&reason)
}

/// tungstenite's reason when it answers a close code a client may not send.
const PROTOCOL_VIOLATION: &str = "Protocol violation";

fn ended(reason: &CloseReason) -> Ended {
    Ended {
        code: reason.code,
        reason: reason.reason.into(),
        label: reason.label,
    }
}

fn abnormal() -> Ended {
    Ended {
        code: 1006,
        reason: "Connection closed abnormally".into(),
        label: "abnormal",
    }
}

/// The close to send for a read error, or `None` when the socket is simply gone.
fn error_close(e: axum::Error) -> Option<CloseReason> {
    use tungstenite::error::{Error as WsError, ProtocolError};
    let inner = e.into_inner();
    let ws = inner.downcast_ref::<WsError>()?;
    match ws {
        WsError::Capacity(_) => Some(CloseReason::TOO_BIG),
        WsError::Utf8(_) => Some(CloseReason::BAD_TEXT),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some(CloseReason::PROTOCOL),
        _ => None,
    }
}

/// Most frames written to a connection's socket with one flush.
const WRITE_BATCH: usize = 16;

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut outbound: OutboundReceiver,
    handle: Arc<ConnHandle>,
    stop: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = handle.closing() => {
                let r = handle.close_reason().unwrap_or(CloseReason::GOING_AWAY);
                let frame = CloseFrame { code: r.code, reason: r.reason.into() };
                let _ = timeout(CLOSE_GRACE, sink.send(Message::Close(Some(frame)))).await;
                return;
            }
            m = outbound.recv() => match m {
                Some(m) => m,
                None => return,
            },
        };
        // A client that does not read blocks this send; posts then find the
        // buffer full (429) while other connections carry on.
        // Frames already waiting go out with this one: one flush (one write
        // to the socket) for up to `WRITE_BATCH` frames.
        let send = async {
            sink.feed(msg).await?;
            for _ in 1..WRITE_BATCH {
                let Some(m) = outbound.try_recv() else { break };
                sink.feed(m).await?;
            }
            sink.flush().await
        };
        tokio::select! {
            r = send => if r.is_err() { return; },
            _ = stop.cancelled() => return,
            _ = handle.closing() => {}
        }
    }
}

async fn dispatch_loop(gw: Gateway, handle: Arc<ConnHandle>, mut inbound: mpsc::Receiver<String>) {
    while let Some(text) = inbound.recv().await {
        handle_message(&gw, &handle, text).await;
    }
}

/// Routes one client message and runs its integration, like API Gateway.
async fn handle_message(gw: &Gateway, handle: &ConnHandle, text: String) {
    let config = gw.config();
    let request_id = new_id();
    // Reserved keys cannot be selected by a message.
    let selected = config
        .route_selection
        .select(&text)
        .filter(|k| !k.starts_with('$'));
    let route = selected
        .as_deref()
        .and_then(|k| config.routes.get(k))
        .or_else(|| config.routes.get("$default"));
    let metrics = &gw.inner.metrics;
    let Some(route) = route else {
        metrics.messages.with_label_values(&["no_route"]).inc();
        tracing::debug!(connection = %handle.id, "no route and no $default: Forbidden");
        let frame =
            json!({"message": "Forbidden", "connectionId": handle.id, "requestId": request_id});
        handle.reply(Message::text(frame.to_string())).await;
        return;
    };
    let now = now_ms();
    if let Err(reason) =
        gw.inner
            .edge
            .check_message(&handle.stage, route, handle.api_key.as_deref(), now)
    {
        // As API Gateway: an error frame, the connection stays open.
        metrics.messages.with_label_values(&["rejected"]).inc();
        metrics
            .rejections
            .with_label_values(&["message", reason.label()])
            .inc();
        tracing::debug!(connection = %handle.id, route = %route.key, reason = reason.label(), "message rejected");
        let (_, text, _) = reason.answer();
        let frame = json!({"message": text, "connectionId": handle.id, "requestId": request_id});
        handle.reply(Message::text(frame.to_string())).await;
        return;
    }
    let event = message_event(handle, &route.key, text, request_id.clone(), now);
    match gw.inner.invoker.invoke(&route.integration, &event).await {
        Ok(resp) => {
            metrics.messages.with_label_values(&["routed"]).inc();
            if route.route_response
                && let Some(body) = resp.body.filter(|b| !b.is_empty())
            {
                handle.reply(Message::text(body)).await;
            }
        }
        Err(e) => {
            metrics
                .messages
                .with_label_values(&["integration_error"])
                .inc();
            tracing::warn!(connection = %handle.id, route = %route.key, error = %e, "integration failed");
            let frame = json!({
                "message": "Internal server error",
                "connectionId": handle.id,
                "requestId": request_id,
            });
            handle.reply(Message::text(frame.to_string())).await;
        }
    }
}
