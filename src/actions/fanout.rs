//! Fan-out: one frame to many connections through the [`Push`] transport, with
//! bounded concurrency, per-recipient retries and pruning of gone connections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use std::collections::VecDeque;

use futures::future::Either;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::backend::{BackendError, Connection, Connections, ErrorKind, Frame, Push, Queue};
use crate::telemetry::Metrics;

/// How one recipient's delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Posted.
    Ok,
    /// 410 Gone: the connection is closed; its item was pruned.
    Gone,
    /// Still throttled after every retry.
    Throttled,
    /// Failed for another reason (after retries where retriable).
    Failed,
}

impl Delivery {
    fn label(self) -> &'static str {
        match self {
            Delivery::Ok => "ok",
            Delivery::Gone => "gone",
            Delivery::Throttled => "throttled",
            Delivery::Failed => "failed",
        }
    }
}

/// Counts of a fan-out's outcomes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FanoutReport {
    /// Delivered.
    pub ok: u64,
    /// Gone (and pruned where the item still matched).
    pub gone: u64,
    /// Throttled after all retries.
    pub throttled: u64,
    /// Failed otherwise.
    pub failed: u64,
}

impl FanoutReport {
    fn merge(&mut self, other: FanoutReport) {
        self.ok += other.ok;
        self.gone += other.gone;
        self.throttled += other.throttled;
        self.failed += other.failed;
    }

    fn add(&mut self, d: Delivery) {
        match d {
            Delivery::Ok => self.ok += 1,
            Delivery::Gone => self.gone += 1,
            Delivery::Throttled => self.throttled += 1,
            Delivery::Failed => self.failed += 1,
        }
    }

    /// Recipients attempted.
    pub fn total(&self) -> u64 {
        self.ok + self.gone + self.throttled + self.failed
    }
}

/// One recipient's delivery as a report.
fn one(d: Delivery) -> FanoutReport {
    let mut r = FanoutReport::default();
    r.add(d);
    r
}

/// The next `take` (at least 1) of `from`: one recipient alone (no
/// allocation on the one-by-one path), or several.
fn batch_of(
    take: usize,
    mut from: impl Iterator<Item = Connection>,
) -> Either<Connection, Vec<Connection>> {
    if take == 1 {
        Either::Left(from.next().expect("a recipient is waiting"))
    } else {
        Either::Right(from.take(take).collect())
    }
}

/// Retry policy for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: usize,
    /// First delay; doubles each time, with jitter.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 3,
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(self.max)
            .with_max_times(self.retries)
            .with_jitter()
            .build()
    }
}

/// Delivers frames; shared by every message being handled, so its semaphore
/// bounds the posts in flight for the whole process.
#[derive(Clone)]
pub struct Fanout {
    push: Arc<dyn Push>,
    connections: Arc<dyn Connections>,
    permits: Arc<Semaphore>,
    concurrency: usize,
    /// Recipients posted together (one HTTP/1.1 pipeline); 1: one by one.
    pipeline: usize,
    retry: RetryPolicy,
    metrics: Arc<Metrics>,
    struggling: Arc<Struggling>,
    /// Where the `$leave` of a pruned connection goes (presence events on).
    leaves: Option<Arc<dyn Queue>>,
}

/// How long a recipient that exhausted its retries gets only one attempt per
/// frame: a client that does not read (the gateway answers 429 when its buffer
/// is full) must not hold up its session, whose next message waits until this
/// one reached every recipient.
const STRUGGLING_FOR: Duration = Duration::from_secs(30);
/// Bound on remembered struggling recipients; expired ones are dropped first.
const STRUGGLING_MAX: usize = 100_000;

type Until = std::collections::HashMap<String, tokio::time::Instant>;

/// Recipients that recently failed after all retries, until when.
#[derive(Default)]
struct Struggling(std::sync::Mutex<Until>);

impl Struggling {
    fn lock(&self) -> std::sync::MutexGuard<'_, Until> {
        crate::sync::lock(&self.0)
    }

    fn contains(&self, id: &str) -> bool {
        let mut map = self.lock();
        match map.get(id) {
            Some(until) if *until > tokio::time::Instant::now() => true,
            Some(_) => {
                map.remove(id);
                false
            }
            None => false,
        }
    }

    fn mark(&self, id: &str) {
        let now = tokio::time::Instant::now();
        let mut map = self.lock();
        if map.len() >= STRUGGLING_MAX {
            map.retain(|_, until| *until > now);
            if map.len() >= STRUGGLING_MAX {
                return;
            }
        }
        map.insert(id.to_owned(), now + STRUGGLING_FOR);
    }

    fn clear(&self, id: &str) {
        let mut map = self.lock();
        if !map.is_empty() {
            map.remove(id);
        }
    }
}

/// The span of one fan-out; [`record_report`] fills in its counts.
fn fanout_span() -> tracing::Span {
    tracing::info_span!(
        "fanout",
        recipients = tracing::field::Empty,
        ok = tracing::field::Empty,
        gone = tracing::field::Empty,
        throttled = tracing::field::Empty,
        failed = tracing::field::Empty,
    )
}

fn record_report(span: &tracing::Span, r: &FanoutReport) {
    span.record("recipients", r.total());
    span.record("ok", r.ok);
    span.record("gone", r.gone);
    span.record("throttled", r.throttled);
    span.record("failed", r.failed);
}

impl Fanout {
    /// At most `concurrency` posts in flight at once.
    pub fn new(
        push: Arc<dyn Push>,
        connections: Arc<dyn Connections>,
        concurrency: usize,
        retry: RetryPolicy,
        metrics: Arc<Metrics>,
    ) -> Self {
        let concurrency = concurrency.max(1);
        Fanout {
            push,
            connections,
            permits: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            pipeline: 1,
            retry,
            metrics,
            struggling: Arc::default(),
            leaves: None,
        }
    }

    /// Puts the `$leave` of every connection it prunes in `queue` (the
    /// inbound FIFO queue), with the id `$disconnect` gives it: a member
    /// pruned before its `$disconnect` read its record still gets exactly
    /// one leave.
    pub fn with_leaves(mut self, queue: Arc<dyn Queue>) -> Self {
        self.leaves = Some(queue);
        self
    }

    /// Posts up to `pipeline` recipients of one frame together
    /// ([`Push::post_frame_many`]: the lean client pipelines them on one
    /// keep-alive connection), within the concurrency bound; retries are
    /// still per recipient. 1 (the default) posts them one by one.
    pub fn with_pipeline(mut self, pipeline: usize) -> Self {
        self.pipeline = pipeline.clamp(1, self.concurrency);
        self
    }

    /// The connections table this fan-out reads and prunes.
    pub fn connections(&self) -> &Arc<dyn Connections> {
        &self.connections
    }

    /// The metrics it counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// To every connection of `session_id` except `exclude`. Pages of the
    /// session's connections are read one ahead while earlier recipients are
    /// being delivered. Fails only if reading the connections fails.
    ///
    /// Traced as one `fanout` span with the counts; each page read is a
    /// `connections.query` span, each delivery a `deliver` span at debug level.
    pub async fn to_session(
        &self,
        endpoint: &str,
        session_id: &str,
        frame: Bytes,
        exclude: Option<&str>,
    ) -> Result<FanoutReport, BackendError> {
        let span = fanout_span();
        let result = self
            .to_session_untraced(endpoint, session_id, frame, exclude)
            .instrument(span.clone())
            .await;
        if let Ok(report) = &result {
            record_report(&span, report);
        }
        result
    }

    async fn to_session_untraced(
        &self,
        endpoint: &str,
        session_id: &str,
        frame: Bytes,
        exclude: Option<&str>,
    ) -> Result<FanoutReport, BackendError> {
        // Every recipient gets the same bytes: what the transport derives from
        // them (the payload hash) is computed once, here.
        let frame = Frame::new(frame);
        let mut report = FanoutReport::default();
        let mut waiting: VecDeque<Connection> = VecDeque::new();
        let mut in_flight = FuturesUnordered::new();
        let query = |cursor: Option<String>| {
            let span = tracing::info_span!(
                "connections_query",
                otel.name = "connections.query",
                session = session_id,
                first_page = cursor.is_none(),
            );
            self.connections
                .by_session(session_id, cursor)
                .instrument(span)
        };
        let mut next_page = Some(query(None));
        let mut last_page_len = 0;
        let mut posts = 0;
        loop {
            while posts < self.concurrency && !waiting.is_empty() {
                let take = self.batch_len(posts, waiting.len());
                posts += take;
                let batch = batch_of(take, waiting.drain(..take));
                in_flight.push(self.post_batch(endpoint, &frame, batch));
            }
            // Read the next page as soon as the previous one arrived, so a slow
            // Query never stalls deliveries; at most about two pages are buffered.
            let want_page = next_page.is_some() && waiting.len() <= last_page_len;
            if in_flight.is_empty() && !want_page {
                return Ok(report);
            }
            tokio::select! {
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    posts -= done.total() as usize;
                    report.merge(done);
                }
                page = async {
                    match next_page.as_mut() {
                        Some(p) => p.await,
                        None => std::future::pending().await,
                    }
                }, if want_page => {
                    let page = page?;
                    last_page_len = page.items.len();
                    next_page = page.next.map(|cursor| query(Some(cursor)));
                    waiting.extend(
                        page.items
                            .into_iter()
                            .filter(|c| Some(c.connection_id.as_str()) != exclude),
                    );
                }
            }
        }
    }

    /// To the given connections.
    pub async fn to_connections(
        &self,
        endpoint: &str,
        recipients: Vec<Connection>,
        frame: Bytes,
    ) -> FanoutReport {
        let span = fanout_span();
        let report = self
            .to_connections_untraced(endpoint, recipients, frame)
            .instrument(span.clone())
            .await;
        record_report(&span, &report);
        report
    }

    async fn to_connections_untraced(
        &self,
        endpoint: &str,
        recipients: Vec<Connection>,
        frame: Bytes,
    ) -> FanoutReport {
        let frame = Frame::new(frame);
        let mut report = FanoutReport::default();
        let mut left = recipients.len();
        let mut waiting = recipients.into_iter();
        let mut in_flight = FuturesUnordered::new();
        let mut posts = 0;
        loop {
            while posts < self.concurrency && left > 0 {
                let take = self.batch_len(posts, left);
                posts += take;
                left -= take;
                let batch = batch_of(take, waiting.by_ref());
                in_flight.push(self.post_batch(endpoint, &frame, batch));
            }
            match in_flight.next().await {
                Some(done) => {
                    posts -= done.total() as usize;
                    report.merge(done);
                }
                None => return report,
            }
        }
    }

    /// How many of `waiting` recipients go in the next post while `posts`
    /// are in flight (at least 1; `posts` is under the concurrency bound).
    fn batch_len(&self, posts: usize, waiting: usize) -> usize {
        self.pipeline
            .min(self.concurrency - posts)
            .min(waiting)
            .max(1)
    }

    /// Delivers one recipient ([`Fanout::deliver`]) or several together
    /// ([`Fanout::deliver_batch`]).
    fn post_batch<'a>(
        &'a self,
        endpoint: &'a str,
        frame: &'a Frame,
        batch: Either<Connection, Vec<Connection>>,
    ) -> impl Future<Output = FanoutReport> + 'a {
        match batch {
            Either::Left(c) => Either::Left(self.deliver(endpoint, c, frame).map(one)),
            Either::Right(conns) => Either::Right(self.deliver_batch(endpoint, conns, frame)),
        }
    }

    /// Posts `conns` together (one attempt each), then finishes each
    /// recipient as [`Fanout::deliver`] does: retries where retriable,
    /// prunes where gone.
    async fn deliver_batch(
        &self,
        endpoint: &str,
        conns: Vec<Connection>,
        frame: &Frame,
    ) -> FanoutReport {
        let first = {
            let ids: Vec<&str> = conns.iter().map(|c| c.connection_id.as_str()).collect();
            let n = u32::try_from(ids.len()).unwrap_or(u32::MAX);
            // Closed only if the Fanout is dropped, which cannot happen while
            // `self` is borrowed; `n` is at most the semaphore's permits.
            let _permits = self.permits.acquire_many(n).await.ok();
            let started = Instant::now();
            let results = self.push.post_frame_many(endpoint, &ids, frame).await;
            let took = started.elapsed().as_secs_f64();
            for _ in 0..ids.len() {
                self.metrics.delivery_duration.observe(took);
            }
            results
        };
        let each = conns.into_iter().zip(first).map(|(c, first)| {
            let span = tracing::debug_span!("deliver", connection_id = %c.connection_id);
            self.deliver_untraced(endpoint, c, frame, Some(first))
                .instrument(span)
        });
        let mut report = FanoutReport::default();
        for d in futures::future::join_all(each).await {
            report.add(d);
        }
        report
    }

    /// To one connection known only by id (the sender). If it is gone, its item
    /// is looked up and pruned.
    pub async fn to_connection_id(
        &self,
        endpoint: &str,
        connection_id: &str,
        frame: Bytes,
    ) -> Delivery {
        let frame = Frame::new(frame);
        let d = self
            .post_with_retries(endpoint, connection_id, &frame, None)
            .await;
        if d == Delivery::Gone {
            match self.connections.get(connection_id).await {
                Ok(Some(c)) => self.prune(endpoint, &c).await,
                Ok(None) => {}
                Err(e) => self.prune_failed(connection_id, &e),
            }
        }
        self.metrics
            .deliveries
            .with_label_values(&[d.label()])
            .inc();
        d
    }

    /// Posts to one recipient; on 410 prunes exactly that connection item.
    async fn deliver(&self, endpoint: &str, conn: Connection, frame: &Frame) -> Delivery {
        let span = tracing::debug_span!("deliver", connection_id = %conn.connection_id);
        self.deliver_untraced(endpoint, conn, frame, None)
            .instrument(span)
            .await
    }

    /// `first`: the first attempt's result, when it was made already.
    async fn deliver_untraced(
        &self,
        endpoint: &str,
        conn: Connection,
        frame: &Frame,
        first: Option<crate::backend::Result<()>>,
    ) -> Delivery {
        let d = self
            .post_with_retries(endpoint, &conn.connection_id, frame, first)
            .await;
        if d == Delivery::Gone {
            self.prune(endpoint, &conn).await;
        }
        self.metrics
            .deliveries
            .with_label_values(&[d.label()])
            .inc();
        d
    }

    async fn post_with_retries(
        &self,
        endpoint: &str,
        connection_id: &str,
        frame: &Frame,
        first: Option<crate::backend::Result<()>>,
    ) -> Delivery {
        let d = self
            .post_until_final(endpoint, connection_id, frame, first)
            .await;
        match d {
            Delivery::Ok => self.struggling.clear(connection_id),
            Delivery::Throttled | Delivery::Failed => self.struggling.mark(connection_id),
            Delivery::Gone => {}
        }
        d
    }

    async fn post_until_final(
        &self,
        endpoint: &str,
        connection_id: &str,
        frame: &Frame,
        mut first: Option<crate::backend::Result<()>>,
    ) -> Delivery {
        let mut delays = self.retry.delays();
        let retry = !self.struggling.contains(connection_id);
        loop {
            let result = if let Some(r) = first.take() {
                r
            } else {
                // Closed only if the Fanout is dropped, which cannot happen while
                // `self` is borrowed.
                let _permit = self.permits.acquire().await.ok();
                let started = Instant::now();
                let r = self.push.post_frame(endpoint, connection_id, frame).await;
                self.metrics
                    .delivery_duration
                    .observe(started.elapsed().as_secs_f64());
                r
            };
            let err = match result {
                Ok(()) => return Delivery::Ok,
                Err(e) if e.kind == ErrorKind::Gone => return Delivery::Gone,
                Err(e) => e,
            };
            if err.is_retriable()
                && retry
                && let Some(delay) = delays.next()
            {
                self.metrics
                    .delivery_retries
                    .with_label_values(&[err.kind.as_str()])
                    .inc();
                tracing::debug!(connection_id, error = %err, ?delay, "retrying delivery");
                tokio::time::sleep(delay).await;
                continue;
            }
            tracing::warn!(connection_id, error = %err, "delivery failed");
            return if err.kind == ErrorKind::Throttled {
                Delivery::Throttled
            } else {
                Delivery::Failed
            };
        }
    }

    /// Deletes exactly this connection item (same id, session and connect time),
    /// never another one; then, with presence events, enqueues its `$leave`
    /// (its `$disconnect` may find no record now).
    async fn prune(&self, endpoint: &str, conn: &Connection) {
        match self.connections.delete_if_same(conn).await {
            Ok(true) => {
                self.metrics.connections_pruned.inc();
                tracing::info!(connection_id = %conn.connection_id, "pruned gone connection");
                if let Some(queue) = &self.leaves {
                    super::leave::enqueue(queue.as_ref(), &self.metrics, endpoint, conn).await;
                }
            }
            Ok(false) => {
                tracing::debug!(connection_id = %conn.connection_id, "gone connection already removed")
            }
            Err(e) => self.prune_failed(&conn.connection_id, &e),
        }
    }

    fn prune_failed(&self, connection_id: &str, e: &BackendError) {
        self.metrics
            .backend_errors
            .with_label_values(&["prune", e.kind.as_str()])
            .inc();
        tracing::warn!(connection_id, error = %e, "could not prune gone connection");
    }
}
