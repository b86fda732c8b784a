//! Request intake: slow and oversized bodies cannot hold the gateway.
//!
//! actix cuts off a client that is slow to send its headers (`client_request_timeout`) but
//! not one that trickles its body. [`intake`] wraps every request body in a stream that
//!
//! - ends with an error once `server.client_body_timeout_secs` have passed since the
//!   request arrived, whatever the handler was doing with it (the answer is 408
//!   `body_timeout` and the connection closes);
//! - takes room for each chunk from one budget shared by all requests
//!   (`server.max_inflight_body_bytes`), held until the response is ready. A body that
//!   declares its length reserves it whole before the first byte is read, so two half-read
//!   bodies never wait on each other; a chunked one reserves chunk by chunk. Room that does
//!   not come within [`ROOM_WAIT`] makes the answer 503 `server_busy` with `Retry-After`.
//!
//! The per-request limit (`limits.max_body_bytes`) stays where the body is read
//! ([`super::body::FhirJson`], actix's JSON and form configs); this module bounds the sum.
//!
//! Before any of that, a `HEAD` request becomes the `GET` it asks about (answered without
//! content), and a FHIR request for a format the API does not produce is refused
//! ([`super::negotiate`]), its body unread.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{CONNECTION, CONTENT_LENGTH, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, Data};
use actix_web::{Error, HttpMessage};
use futures_util::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::error::{ApiError, Flavor};

/// Longest wait for room in the body budget before the request is answered 503.
pub const ROOM_WAIT: Duration = Duration::from_secs(3);

/// The shared body budget and the body deadline; one per application.
#[derive(Debug, Clone)]
pub struct Intake {
    budget: Arc<Semaphore>,
    capacity: usize,
    body_timeout: Duration,
}

impl Intake {
    /// A budget of `max_inflight_bytes` and a deadline of `body_timeout` per body.
    pub fn new(max_inflight_bytes: usize, body_timeout: Duration) -> Intake {
        let capacity = max_inflight_bytes.min(Semaphore::MAX_PERMITS);
        Intake {
            budget: Arc::new(Semaphore::new(capacity)),
            capacity,
            body_timeout,
        }
    }

    /// Body bytes currently held by requests.
    pub fn in_flight(&self) -> usize {
        self.capacity - self.budget.available_permits()
    }
}

/// What went wrong while the body was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    None,
    TimedOut,
    NoRoom,
}

/// Room taken for one request, released when the response is ready.
#[derive(Default)]
struct Held(Option<OwnedSemaphorePermit>);

impl Held {
    fn add(&mut self, permit: OwnedSemaphorePermit) {
        match &mut self.0 {
            Some(held) => held.merge(permit),
            None => self.0 = Some(permit),
        }
    }
}

struct BodyState {
    inner: Payload,
    intake: Intake,
    deadline: Instant,
    trouble: Rc<Cell<Trouble>>,
    held: Rc<std::cell::RefCell<Held>>,
    reserved_whole: bool,
    done: bool,
}

async fn room(intake: &Intake, bytes: usize) -> Option<OwnedSemaphorePermit> {
    let n = u32::try_from(bytes.min(intake.capacity)).ok()?;
    if n == 0 {
        return None;
    }
    tokio::time::timeout(ROOM_WAIT, intake.budget.clone().acquire_many_owned(n))
        .await
        .ok()?
        .ok()
}

async fn next_chunk(mut state: BodyState) -> Option<(Result<Bytes, PayloadError>, BodyState)> {
    if state.done {
        return None;
    }
    let fail = |mut state: BodyState, trouble: Trouble, kind: std::io::ErrorKind| {
        state.trouble.set(trouble);
        state.done = true;
        let error = PayloadError::Io(std::io::Error::new(kind, "request body refused"));
        Some((Err(error), state))
    };
    if Instant::now() >= state.deadline {
        // A trickle that never pauses long enough for the timeout below still ends here.
        return fail(state, Trouble::TimedOut, std::io::ErrorKind::TimedOut);
    }
    let next = tokio::time::timeout_at(state.deadline, state.inner.next()).await;
    match next {
        Err(_) => fail(state, Trouble::TimedOut, std::io::ErrorKind::TimedOut),
        Ok(None) => None,
        Ok(Some(Err(e))) => {
            state.done = true;
            Some((Err(e), state))
        }
        Ok(Some(Ok(chunk))) => {
            if !state.reserved_whole && !chunk.is_empty() {
                match room(&state.intake, chunk.len()).await {
                    Some(permit) => state.held.borrow_mut().add(permit),
                    None => return fail(state, Trouble::NoRoom, std::io::ErrorKind::OutOfMemory),
                }
            }
            Some((Ok(chunk), state))
        }
    }
}

/// The middleware function (`actix_web::middleware::from_fn(intake)`).
pub async fn intake(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    // HEAD is GET without the content (RFC 9110, 9.3.2): the GET route answers it, audited as
    // the read it is, and the HTTP encoder, which saw HEAD on the request line, sends the
    // answer's status and headers only.
    if req.method() == Method::HEAD {
        req.head_mut().method = Method::GET;
    }
    if let Err(refusal) = super::negotiate::check(req.path(), req.query_string(), &req) {
        let (request, _) = req.into_parts();
        return Ok(refused_with(request, &refusal).map_into_right_body());
    }
    let Some(intake) = req.app_data::<Data<Intake>>().map(|d| d.get_ref().clone()) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    let deadline = Instant::now() + intake.body_timeout;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0);
    let trouble = Rc::new(Cell::new(Trouble::None));
    let held = Rc::new(std::cell::RefCell::new(Held::default()));
    let mut reserved_whole = false;
    if let Some(length) = declared
        && length <= intake.capacity
        && req.method() != Method::GET
    {
        // The whole declared body at once: partly read bodies never wait on each other.
        // A length above the budget is left to the per-request limit, which refuses it.
        match room(&intake, length).await {
            Some(permit) => {
                held.borrow_mut().add(permit);
                reserved_whole = true;
            }
            None => return Ok(refuse(req, Trouble::NoRoom)),
        }
    }
    let state = BodyState {
        inner: req.take_payload(),
        intake,
        deadline,
        trouble: trouble.clone(),
        held: held.clone(),
        reserved_whole,
        done: false,
    };
    let stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(futures_util::stream::unfold(state, next_chunk));
    req.set_payload(Payload::from(stream));
    let response = next.call(req).await?;
    drop(held.take());
    match trouble.get() {
        Trouble::None => Ok(response.map_into_left_body()),
        other => {
            let (request, _) = response.into_parts();
            Ok(refused_response(request, other))
        }
    }
}

fn refuse<B>(req: ServiceRequest, trouble: Trouble) -> ServiceResponse<EitherBody<B>> {
    let (request, _) = req.into_parts();
    refused_response(request, trouble)
}

fn refused_response<B>(
    request: actix_web::HttpRequest,
    trouble: Trouble,
) -> ServiceResponse<EitherBody<B>> {
    let error = match trouble {
        Trouble::TimedOut => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive in time",
        ),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            "the server is receiving too many request bodies at once; retry shortly",
        ),
    };
    refused_with(request, &error).map_into_right_body()
}

/// `error` as the answer to a request whose body is left unread: the rest of it is never
/// read, so the connection cannot carry another request.
fn refused_with(request: actix_web::HttpRequest, error: &ApiError) -> ServiceResponse {
    let mut response = error.render(Flavor::for_path(request.path()));
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    ServiceResponse::new(request, response)
}
