//! `GET /v1/apps/{app}/events`: the app's events as Server-Sent Events, the same ones (and
//! ids) its webhooks carry. A reader that sends `Last-Event-ID` first gets what the event log
//! kept after that id, then follows live; idle streams get keep-alive comments; a reader
//! whose `[event_stream] buffer` stays full for two keep-alive intervals is cut off (it
//! reconnects and resumes).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::Request;
use pushgate_engine::clock::now_ms;
use pushgate_engine::metrics as m;
use pushgate_engine::model::{EventRecord, MessageId};
use pushgate_engine::Engine;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use ulid::Ulid;

use crate::http::response::{ApiError, ChannelBody, HttpResponse};
use crate::http::ApiState;

/// Events read from the log at a time.
const PAGE: usize = 500;
/// How often a stream on a shared store reads the log (other nodes' events), and how soon
/// it reads again after the log could not be read.
const POLL: Duration = Duration::from_secs(1);

/// `GET /v1/apps/{app}/events` → 200 `text/event-stream`.
pub async fn stream(
    state: &Arc<ApiState>,
    app: &str,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    if !state.engine.event_log_enabled() {
        return Err(ApiError::not_found(
            "event_stream_disabled",
            "the event stream is off ([event_stream] retention_seconds = 0)",
        ));
    }
    let settings = &state.event_stream;
    let after = match request.headers().get("last-event-id") {
        // From about now: what was logged within the settling time before is included.
        None => {
            let ms = now_ms().saturating_sub(settings.settle.as_millis() as u64);
            MessageId(Ulid::from_parts(ms, 0))
        }
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<MessageId>().ok())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_last_event_id",
                    "Last-Event-ID must be an event id (26 characters of Crockford base32)",
                )
            })?,
    };
    // Fails now, with an error answer, if the store cannot be read.
    state.engine.logged_events(app, Some(after), 1).await?;
    let (tx, rx) = mpsc::channel(settings.buffer);
    let reader = Reader {
        engine: state.engine.clone(),
        app: app.to_string(),
        tx,
        cursor: after,
        settle: settings.settle,
        // A reader whose buffer stays full this long is cut off.
        stall: settings.keepalive * 2,
    };
    tokio::spawn(reader.follow(
        state.engine.subscribe_events(),
        settings.keepalive,
        settings.poll_store,
        settings.shutdown.clone(),
    ));
    let mut response = Response::new(Either::Right(ChannelBody(rx)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Reverse proxies (nginx) pass the stream on as it comes.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}

/// Why a stream ended.
enum End {
    /// The client went away (or the gateway is stopping).
    Gone,
    /// The client took nothing while its buffer was full.
    CutOff,
}

/// One client's stream. Events go out in id order, read from the log once they are older
/// than the settling time, so an event whose write commits after a later one's is never
/// passed over: resuming after the last id received misses nothing. This node's feed and
/// (on a shared store) a poll say when to read.
struct Reader {
    engine: Arc<Engine>,
    app: String,
    tx: mpsc::Sender<Bytes>,
    /// The last id sent (or where the stream starts).
    cursor: MessageId,
    settle: Duration,
    stall: Duration,
}

impl Reader {
    async fn follow(
        mut self,
        mut feed: tokio::sync::broadcast::Receiver<Arc<EventRecord>>,
        keepalive: Duration,
        poll_store: bool,
        mut shutdown: watch::Receiver<bool>,
    ) {
        metrics::gauge!(m::EVENT_STREAM_READERS).increment(1.0);
        let end = self
            .run(&mut feed, keepalive, poll_store, &mut shutdown)
            .await;
        metrics::gauge!(m::EVENT_STREAM_READERS).decrement(1.0);
        if let End::CutOff = end {
            metrics::counter!(m::EVENT_STREAM_CUTOFFS_TOTAL, "app" => self.app.clone())
                .increment(1);
            tracing::info!(app = %self.app, "event stream reader too slow; cut off (it resumes with Last-Event-ID)");
        }
    }

    async fn run(
        &mut self,
        feed: &mut tokio::sync::broadcast::Receiver<Arc<EventRecord>>,
        keepalive: Duration,
        poll_store: bool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let mut keepalive =
            tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        let mut poll = tokio::time::interval(POLL);
        loop {
            let settles_in = match self.drain().await {
                Ok(wait) => wait,
                Err(end) => return end,
            };
            let settled = tokio::time::sleep(settles_in.unwrap_or(Duration::MAX));
            tokio::pin!(settled);
            loop {
                tokio::select! {
                    received = feed.recv() => match received {
                        Ok(event) if event.app == self.app => break,
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => return End::Gone,
                    },
                    _ = &mut settled, if settles_in.is_some() => break,
                    _ = poll.tick(), if poll_store => break,
                    _ = keepalive.tick() => {
                        // A full buffer skips it: events are waiting to go anyway.
                        if let Err(TrySendError::Closed(_)) =
                            self.tx.try_send(Bytes::from_static(b": keep-alive\n\n"))
                        {
                            return End::Gone;
                        }
                    }
                    _ = self.tx.closed() => return End::Gone,
                    _ = shutdown.changed() => return End::Gone,
                }
            }
        }
    }

    /// Sends the settled events after the cursor; how long until the first unsettled one
    /// settles, if there is one.
    async fn drain(&mut self) -> Result<Option<Duration>, End> {
        loop {
            let page = match self
                .engine
                .logged_events(&self.app, Some(self.cursor), PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    // Read again soon; nothing is skipped meanwhile.
                    tracing::warn!(app = %self.app, error = %e, "reading the event log failed");
                    return Ok(Some(POLL));
                }
            };
            let horizon = now_ms().saturating_sub(self.settle.as_millis() as u64);
            for event in &page {
                let made = event.id.0.timestamp_ms();
                if made > horizon {
                    return Ok(Some(Duration::from_millis(made - horizon)));
                }
                self.send(event).await?;
                self.cursor = event.id;
            }
            if page.len() < PAGE {
                return Ok(None);
            }
        }
    }

    /// Queues one event, waiting while the buffer is full; cuts the reader off when it
    /// stays full for the stall time.
    async fn send(&self, event: &EventRecord) -> Result<(), End> {
        match tokio::time::timeout(self.stall, self.tx.send(sse_event(event))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::CutOff),
        }
    }
}

/// One event in SSE form: `id`, `event` (its type) and `data` (the webhook's JSON body).
fn sse_event(event: &EventRecord) -> Bytes {
    let data = String::from_utf8_lossy(&crate::webhook::event_body(event)).into_owned();
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.id,
        event.kind.as_str(),
        data
    ))
}
