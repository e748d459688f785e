//! The Azure Service Bus REST API on warp: messaging, ATOM management, admin and health.
//!
//! Azure entity names may contain `/`, so the URL space cannot be expressed as fixed warp path
//! segments; one catch-all filter collects method, path, query, headers and body into a
//! [`Request`] and [`route`] dispatches on the decoded path segments. Handlers return
//! `Result<Reply, HttpError>`; [`HttpError::reply`] turns a refusal into an Azure error reply,
//! with service errors' statuses from the one table in [`crate::wire_errors`].

pub mod admin;
pub mod atom;
pub mod health;
pub mod management;
pub mod messaging;
pub mod metrics;

use crate::broker::error::BrokerError;
use crate::service::{ServiceBusBackend, ServiceError};
use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use warp::http::Response;
use warp::Filter;

/// The reply type every handler returns.
pub type Reply = warp::reply::Response;

/// Shared state of the HTTP layer.
#[derive(Clone)]
pub struct HttpState {
    pub backend: ServiceBusBackend,
    pub max_message_size: usize,
    pub admin_token: Option<String>,
    /// When set, every request but `/health` and `/$admin` needs a valid SAS token.
    pub sas: Option<crate::sas::SasKey>,
    /// Cancelled to ask the server to stop (`/$admin/shutdown`).
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// The peer of a connection, put in each request's extensions by the accept loop in
/// `src/server.rs` (warp's own `addr::remote` only works under `warp::serve`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// One decoded request.
pub struct Request {
    pub method: Method,
    /// Percent-decoded path segments (empty ones dropped).
    pub segments: Vec<String>,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub remote: Option<SocketAddr>,
    /// `http://host:port` as the client addressed us, for Location headers and feed links.
    pub base_url: String,
}

/// Which API family answers, because Azure maps a missing entity differently in each
/// (management: 404; messaging: 410 Gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    Management,
    Messaging,
}

/// Request bodies larger than this are refused with 413 on every route except
/// `/$admin/import`, whatever `max_message_size` is: small enough that a stray upload cannot
/// exhaust memory, large enough for a batch of maximum-size messages in JSON.
pub fn body_limit(max_message_size: usize) -> u64 {
    (max_message_size as u64)
        .saturating_mul(2)
        .max(MIN_BODY_LIMIT)
}

/// The floor of [`body_limit`]: ATOM bodies and batches of small messages always fit.
const MIN_BODY_LIMIT: u64 = 1024 * 1024;

/// The body limit of `/$admin/import` (a whole exported namespace): 1 GiB.
pub const IMPORT_BODY_LIMIT: u64 = 1024 * 1024 * 1024;

/// Requests whose header names and values together exceed this are refused with 431
/// (Azure's front end refuses oversized headers too; hyper itself stops near 400 KiB).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The request body was larger than the route allows.
#[derive(Debug)]
struct BodyTooLarge(u64);
impl warp::reject::Reject for BodyTooLarge {}

/// The request body could not be read.
#[derive(Debug)]
struct BodyUnreadable;
impl warp::reject::Reject for BodyUnreadable {}

fn is_import(path: &str) -> bool {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    matches!(segs.as_slice(), [a, b] if eq(a, "$admin") && eq(b, "import"))
}

/// Reads the body, refusing (without buffering it) one over the route's limit: at once when
/// `Content-Length` says so, else as soon as the streamed chunks pass it.
async fn read_body<S, B>(
    path: warp::path::FullPath,
    headers: HeaderMap,
    state: Arc<HttpState>,
    mut body: S,
) -> Result<(warp::path::FullPath, HeaderMap, Arc<HttpState>, Bytes), warp::Rejection>
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Send + Unpin,
    B: bytes::Buf,
{
    use bytes::BufMut;
    use futures::StreamExt;
    let limit = if is_import(path.as_str()) {
        IMPORT_BODY_LIMIT
    } else {
        body_limit(state.max_message_size)
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(warp::reject::custom(BodyTooLarge(limit)));
    }
    let mut buf = bytes::BytesMut::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| warp::reject::custom(BodyUnreadable))?;
        if (buf.len() + chunk.remaining()) as u64 > limit {
            return Err(warp::reject::custom(BodyTooLarge(limit)));
        }
        buf.put(chunk);
    }
    Ok((path, headers, state, buf.freeze()))
}

/// Why a request is refused before routing: oversized headers, a path that is not UTF-8 or
/// that smuggles a separator or relative segment inside a percent-encoded segment.
fn precheck(raw_path: &str, headers: &HeaderMap) -> Result<Vec<String>, (StatusCode, String)> {
    let header_bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return Err((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("The request headers exceed {MAX_HEADER_BYTES} bytes."),
        ));
    }
    let mut segments = Vec::new();
    for raw in raw_path.split('/').filter(|s| !s.is_empty()) {
        let seg = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| {
                (
                    StatusCode::BAD_REQUEST,
                    "The request path is not valid UTF-8.".to_string(),
                )
            })?;
        if seg == "." || seg == ".." || seg.contains(['/', '\\', '\0']) {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "The path segment '{}' is not allowed: relative segments and encoded separators are refused.",
                    seg.escape_default()
                ),
            ));
        }
        segments.push(seg.into_owned());
    }
    Ok(segments)
}

/// The warp filter serving everything.
pub fn routes(
    state: HttpState,
) -> impl Filter<Extract = (Reply,), Error = std::convert::Infallible> + Clone {
    let state = Arc::new(state);
    warp::method()
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(
            warp::addr::remote()
                .and(warp::ext::optional::<Peer>())
                .map(|a: Option<SocketAddr>, p: Option<Peer>| p.map(|p| p.0).or(a)),
        )
        .and(
            warp::path::full()
                .and(warp::header::headers_cloned())
                .and(warp::any().map(move || state.clone()))
                .and(warp::body::stream())
                .and_then(read_body)
                .untuple_one(),
        )
        .then(
            |method: Method,
             query: String,
             remote: Option<SocketAddr>,
             path: warp::path::FullPath,
             headers: HeaderMap,
             state: Arc<HttpState>,
             body: Bytes| async move {
                let segments = match precheck(path.as_str(), &headers) {
                    Ok(s) => s,
                    Err((status, detail)) => return error_body(status, &detail),
                };
                let query = parse_query(&query);
                let host = headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("localhost")
                    .to_string();
                let started = std::time::Instant::now();
                let operation = metrics::operation(&method, &segments);
                let access = crate::logging::access_log().then(|| (method.clone(), path.as_str().to_string()));
                let req = Request {
                    method,
                    segments,
                    query,
                    headers,
                    body,
                    remote,
                    base_url: format!("http://{host}"),
                };
                let caller = crate::logging::Caller { plane: "http", peer: remote };
                let reply = crate::logging::with_caller(caller, route(&state, req)).await;
                let elapsed = started.elapsed();
                crate::metrics::global().request("http", operation, elapsed);
                if let Some((method, path)) = access {
                    let (status, ms) = (reply.status().as_u16(), elapsed.as_secs_f64() * 1000.0);
                    tracing::info!(%method, %path, status, ms, peer = caller.peer_text(), "{method} {path} {status} {ms:.1}ms");
                }
                reply
            },
        )
        .recover(|r: warp::Rejection| async move {
            // Only body-read failures reach here (every path is matched above).
            let reply = if let Some(BodyTooLarge(limit)) = r.find::<BodyTooLarge>() {
                error_body(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("The request body is larger than the limit of {limit} bytes."),
                )
            } else {
                error_body(StatusCode::BAD_REQUEST, "The request could not be read.")
            };
            Ok::<Reply, std::convert::Infallible>(reply)
        })
        .unify()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Dispatches a request on its path. The route table, in order:
async fn route(state: &HttpState, req: Request) -> Reply {
    let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
    let m = req.method.clone();
    // The web console (`/`, `/$console/…`): an open page; its API checks SAS itself.
    if let Some(reply) = crate::console::route(state, &req, |r| authorize(state, r)).await {
        return reply;
    }
    // SAS (when configured) guards everything but liveness and `/$admin`, which has its own rule.
    let open = matches!(segs.as_slice(), ["health"] | ["metrics"]) && m == Method::GET
        || segs.first().is_some_and(|f| eq(f, "$admin"));
    if !open {
        if let Err(detail) = authorize(state, &req) {
            return error_body(StatusCode::UNAUTHORIZED, &detail);
        }
    }
    match segs.as_slice() {
        // GET /health — liveness, as the official emulator answers it.
        ["health"] if m == Method::GET => health::health(state),
        // GET /metrics — Prometheus text exposition (its own rule: SAS token or loopback).
        ["metrics"] if m == Method::GET => metrics::metrics(state, &req),
        // /$admin/... — storage administration (loopback or token only).
        [first, ..] if eq(first, "$admin") => admin::handle(state, &req).await,
        // GET /$namespaceinfo — namespace description.
        [first] if eq(first, "$namespaceinfo") && m == Method::GET => {
            management::namespace_info(state, &req)
        }
        // GET /$Resources/Queues | /$Resources/Topics — entity lists with $skip/$top.
        [first, kind] if eq(first, "$resources") && m == Method::GET => answer(
            management::list_entities(state, &req, kind),
            Plane::Management,
        ),
        _ => route_entity_paths(state, &req, &segs).await,
    }
}

/// Checks the request's SAS token (`Authorization` header, or the `ServiceBusAuthorization`
/// header some clients use) against the configured key, for the entity the path addresses.
fn authorize(state: &HttpState, req: &Request) -> Result<(), String> {
    let Some(key) = &state.sas else {
        return Ok(());
    };
    let token = req
        .headers
        .get(http::header::AUTHORIZATION)
        .or_else(|| req.headers.get("servicebusauthorization"))
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            "MissingToken: The request has no SharedAccessSignature in its Authorization header."
                .to_string()
        })?;
    let now = u64::try_from(state.backend.now().div_euclid(1000)).unwrap_or(0);
    let path = req.segments.join("/");
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok());
    crate::sas::validate_at(key, token, host, Some(&path), now)
}

async fn route_entity_paths(state: &HttpState, req: &Request, segs: &[&str]) -> Reply {
    use Plane::{Management, Messaging};
    let m = &req.method;
    let n = segs.len();
    if n == 0 {
        return HttpError::no_resource().reply(Management);
    }
    // .../messages/head — receive (POST peek-lock, DELETE receive-and-delete).
    if n >= 3 && eq(segs[n - 2], "messages") && eq(segs[n - 1], "head") {
        return answer(
            messaging::receive(state, req, &segs[..n - 2]).await,
            Messaging,
        );
    }
    // .../messages — send (POST).
    if n >= 2 && eq(segs[n - 1], "messages") {
        if *m == Method::POST {
            return answer(messaging::send(state, req, &segs[..n - 1]).await, Messaging);
        }
        return HttpError::method_not_allowed().reply(Messaging);
    }
    // .../messages/{id}/{lockToken} — unlock (PUT), complete (DELETE), renew (POST).
    if n >= 4 && eq(segs[n - 3], "messages") {
        let settled = messaging::settle(state, req, &segs[..n - 3], segs[n - 2], segs[n - 1]);
        return answer(settled.await, Messaging);
    }
    // {topic}/Subscriptions/{sub}/Rules[/{rule}] — rules.
    if let Some(i) = segs.iter().position(|s| eq(s, "subscriptions")) {
        let topic = segs[..i].join("/");
        let rest = &segs[i + 1..];
        let result = match rest {
            // GET {topic}/Subscriptions — list subscriptions.
            [] => management::list_subscriptions(state, req, &topic),
            // PUT|GET|DELETE {topic}/Subscriptions/{sub}.
            [sub] => management::subscription(state, req, &topic, sub).await,
            // GET {topic}/Subscriptions/{sub}/Rules — list rules.
            [sub, rules] if eq(rules, "rules") => management::list_rules(state, req, &topic, sub),
            // PUT|GET|DELETE {topic}/Subscriptions/{sub}/Rules/{rule}.
            [sub, rules, rule] if eq(rules, "rules") => {
                management::rule(state, req, &topic, sub, rule).await
            }
            _ => Err(HttpError::no_resource()),
        };
        return answer(result, Management);
    }
    // PUT|GET|DELETE /{queue or topic}.
    answer(
        management::entity(state, req, &segs.join("/")).await,
        Management,
    )
}

/// An Azure-style XML error body with the status code.
pub fn error_body(status: StatusCode, detail: &str) -> Reply {
    let body = atom::error_body(status.as_u16(), detail);
    Response::builder()
        .status(status)
        .header("Content-Type", "application/xml; charset=utf-8")
        .body(Bytes::from(body).into())
        .unwrap_or_default()
}

/// Why a handler refused a request: a service error (mapped by the one table in
/// [`crate::wire_errors`]) or a refusal of the HTTP layer itself (bad path, body or query).
/// Handlers return `Result<Reply, HttpError>` and use `?`; the route family turns the error
/// into a reply with [`HttpError::reply`], choosing the [`Plane`].
#[derive(Debug)]
pub enum HttpError {
    Service(ServiceError),
    Status(StatusCode, String),
}

impl HttpError {
    /// A 400 Bad Request with this detail.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        HttpError::Status(StatusCode::BAD_REQUEST, detail.into())
    }

    /// 405 for a method the resource does not have.
    pub fn method_not_allowed() -> Self {
        HttpError::Status(
            StatusCode::METHOD_NOT_ALLOWED,
            "The requested HTTP method is not supported on this resource.".to_string(),
        )
    }

    /// 404 for a path that names no resource.
    pub fn no_resource() -> Self {
        HttpError::Status(
            StatusCode::NOT_FOUND,
            "No resource at this address.".to_string(),
        )
    }

    /// The Azure error reply: status and `<Error>` body.
    pub fn reply(&self, plane: Plane) -> Reply {
        match self {
            HttpError::Service(e) => error_reply(e, plane),
            HttpError::Status(status, detail) => error_body(*status, detail),
        }
    }
}

impl From<ServiceError> for HttpError {
    fn from(e: ServiceError) -> Self {
        HttpError::Service(e)
    }
}

impl From<BrokerError> for HttpError {
    fn from(e: BrokerError) -> Self {
        HttpError::Service(e.into())
    }
}

impl From<atom::AtomError> for HttpError {
    fn from(e: atom::AtomError) -> Self {
        HttpError::bad_request(e.0)
    }
}

/// A handler's result, turned into a reply on `plane`.
fn answer(result: Result<Reply, HttpError>, plane: Plane) -> Reply {
    result.unwrap_or_else(|e| e.reply(plane))
}

/// The Azure reply for a service error: status from [`crate::wire_errors`], `<Error>` body.
pub fn error_reply(err: &ServiceError, plane: Plane) -> Reply {
    let code = crate::wire_errors::wire_code(err);
    let status = match plane {
        Plane::Management => code.http_management,
        Plane::Messaging => code.http_messaging,
    };
    if let ServiceError::Storage(e) = err {
        tracing::error!("storage failure answering a request: {e}");
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error_body(status, &err.to_string())
}

/// A reply with a status, content type and body.
pub fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .body(body.into().into())
        .unwrap_or_default()
}

/// An empty reply with a status.
pub fn empty(status: StatusCode) -> Reply {
    Response::builder()
        .status(status)
        .body(Bytes::new().into())
        .unwrap_or_default()
}
