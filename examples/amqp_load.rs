//! AMQP 1.0 load generator for `scripts/bench.sh`: a native client (fe2o3-amqp) in its own
//! process that sends or receives 1 KB `data` messages over N links against any AMQP 1.0
//! broker (LocalZure, or RabbitMQ with its `rabbitmq_amqp1_0` plugin), and prints the rate.
//!
//! Usage: `amqp_load URL ADDRESS PHASE LINKS MESSAGES [WINDOW]`
//! - `URL`: `amqp://host:port` (SASL ANONYMOUS) or `amqp://user:pass@host:port` (SASL PLAIN).
//! - `PHASE`: `send`: every message is sent unsettled and counts once the broker settled it
//!   with `accepted` (at-least-once sends; up to WINDOW, default 100, outstanding per link).
//!   `receive`: peek-lock (the broker sends unsettled deliveries; receiver settle mode
//!   `first`), each delivery accepted by its own disposition; link credit WINDOW, refilled as
//!   deliveries arrive.
//! - `LINKS`: links used at once, each on its own connection and session (so client-side work
//!   spreads over the runtime's threads); `MESSAGES` is the total over all links.
//!
//! Timing starts once every link is attached and stops when the last message was settled
//! (send) or accepted (receive); a run that takes longer than `AMQP_LOAD_TIMEOUT_SECS`
//! (default 300) fails, saying how far it got. Prints one line:
//! `amqp_load phase=send links=16 messages=20000 seconds=0.812 rate=24630`.

use fe2o3_amqp::link::delivery::DeliveryFut;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::link::SendError;
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::types::messaging::{Body, Message, Outcome, Properties};
use fe2o3_amqp::types::primitives::{Binary, Value};
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Barrier};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const BODY_BYTES: usize = 1024;

struct Args {
    url: String,
    address: String,
    phase: Phase,
    links: usize,
    messages: u64,
    window: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Send,
    Receive,
}

fn parse_args() -> Result<Args, BoxError> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 5 {
        return Err("usage: amqp_load URL ADDRESS send|receive LINKS MESSAGES [WINDOW]".into());
    }
    let phase = match a[2].as_str() {
        "send" => Phase::Send,
        "receive" => Phase::Receive,
        p => return Err(format!("unknown phase {p}").into()),
    };
    Ok(Args {
        url: a[0].clone(),
        address: a[1].clone(),
        phase,
        links: a[3].parse::<usize>()?.max(1),
        messages: a[4].parse()?,
        window: a
            .get(5)
            .map(|w| w.parse())
            .transpose()?
            .unwrap_or(100)
            .max(1),
    })
}

/// Opens a connection and a session: SASL PLAIN with the URL's `user:pass@`, else ANONYMOUS.
/// The socket is opened here to set TCP_NODELAY (fe2o3-amqp's `open` leaves Nagle on, which
/// holds back the small disposition and flow frames and makes one link latency-bound).
async fn connect(
    url: &str,
    id: usize,
) -> Result<
    (
        fe2o3_amqp::connection::ConnectionHandle<()>,
        fe2o3_amqp::session::SessionHandle<()>,
    ),
    BoxError,
> {
    let rest = url
        .strip_prefix("amqp://")
        .ok_or("the URL must start with amqp://")?;
    let (profile, host_port) = match rest.rsplit_once('@') {
        Some((user_pass, host_port)) => {
            let (user, pass) = user_pass.split_once(':').unwrap_or((user_pass, ""));
            (SaslProfile::from((user, pass)), host_port)
        }
        None => (SaslProfile::Anonymous, rest),
    };
    let host_port = host_port.trim_end_matches('/');
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, _)| h);
    let stream = tokio::net::TcpStream::connect(host_port).await?;
    stream.set_nodelay(true)?;
    let mut conn = Connection::builder()
        .container_id(format!("amqp-load-{id}"))
        .hostname(host)
        .sasl_profile(profile)
        .open_with_stream(stream)
        .await?;
    let session = Session::begin(&mut conn).await?;
    Ok((conn, session))
}

/// Sends `count` messages on one link, keeping up to `window` deliveries outstanding.
async fn send_link(
    args: Arc<Args>,
    id: usize,
    count: u64,
    settled: Arc<AtomicU64>,
    start: Arc<Barrier>,
) -> Result<Option<Instant>, BoxError> {
    let (mut conn, mut session) = connect(&args.url, id).await?;
    let mut sender =
        Sender::attach(&mut session, format!("load-send-{id}"), &*args.address).await?;
    let body = Binary::from(vec![b'x'; BODY_BYTES]);
    start.wait().await;
    let mut outstanding: VecDeque<DeliveryFut<Result<Outcome, SendError>>> = VecDeque::new();
    let settle = |o: Result<Outcome, SendError>| -> Result<(), BoxError> {
        match o? {
            Outcome::Accepted(_) => {
                settled.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            other => Err(format!("send not accepted: {other:?}").into()),
        }
    };
    for n in 0..count {
        if outstanding.len() >= args.window {
            if let Some(f) = outstanding.pop_front() {
                settle(f.await)?;
            }
        }
        let m = Message::builder()
            .properties(
                Properties::builder()
                    .message_id(format!("{id}-{n}"))
                    .build(),
            )
            .data(body.clone())
            .build();
        outstanding.push_back(sender.send_batchable(m).await?);
    }
    for f in outstanding {
        settle(f.await)?;
    }
    let end = Instant::now();
    close(async {
        let _ = sender.close().await;
        let _ = session.end().await;
        let _ = conn.close().await;
    })
    .await;
    Ok(Some(end))
}

/// Receives and accepts messages on one link until `total` were accepted over all links.
async fn receive_link(
    args: Arc<Args>,
    id: usize,
    accepted: Arc<AtomicU64>,
    mut done: watch::Receiver<bool>,
    done_tx: Arc<watch::Sender<bool>>,
    start: Arc<Barrier>,
) -> Result<Option<Instant>, BoxError> {
    let (mut conn, mut session) = connect(&args.url, id).await?;
    let mut receiver = Receiver::builder()
        .name(format!("load-receive-{id}"))
        .source(&*args.address)
        .credit_mode(CreditMode::Auto(args.window as u32))
        .auto_accept(false)
        .attach(&mut session)
        .await?;
    start.wait().await;
    let mut end = None;
    loop {
        let delivery = tokio::select! {
            d = receiver.recv::<Body<Value>>() => d?,
            _ = done.wait_for(|d| *d) => break,
        };
        receiver.accept(&delivery).await?;
        if accepted.fetch_add(1, Ordering::SeqCst) + 1 >= args.messages {
            end = Some(Instant::now());
            let _ = done_tx.send(true);
            break;
        }
    }
    close(async {
        let _ = receiver.close().await;
        let _ = session.end().await;
        let _ = conn.close().await;
    })
    .await;
    Ok(end)
}

/// Closes a link, its session and connection, waiting at most 5 s: the figures are taken
/// before, and a broker that does not answer a detach (seen with RabbitMQ's plugin under 16
/// links) must not hold the run.
async fn close(f: impl std::future::Future<Output = ()>) {
    let _ = tokio::time::timeout(Duration::from_secs(5), f).await;
}

async fn run(args: Args) -> Result<(), BoxError> {
    let args = Arc::new(args);
    let links = args.links;
    // Every link plus this task: timing starts when all are attached.
    let start = Arc::new(Barrier::new(links + 1));
    let accepted = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = watch::channel(false);
    let done_tx = Arc::new(done_tx);
    let mut tasks = Vec::new();
    for id in 0..links {
        let (a, s) = (args.clone(), start.clone());
        tasks.push(match args.phase {
            Phase::Send => {
                // The total split over the links; the first ones take the remainder.
                let share = args.messages / links as u64
                    + u64::from((id as u64) < args.messages % links as u64);
                tokio::spawn(send_link(a, id, share, accepted.clone(), s))
            }
            Phase::Receive => tokio::spawn(receive_link(
                a,
                id,
                accepted.clone(),
                done_rx.clone(),
                done_tx.clone(),
                s,
            )),
        });
    }
    // A link that fails to attach never reaches the barrier: give up after a while.
    let attached = tokio::time::timeout(Duration::from_secs(60), start.wait()).await;
    if attached.is_err() {
        for t in tasks {
            if t.is_finished() {
                t.await??;
            }
        }
        return Err("links not attached within 60 s".into());
    }
    let started = Instant::now();
    // The last settlement (send) or the accept that completed the total (receive); closing
    // the links afterwards is not timed.
    let limit = std::env::var("AMQP_LOAD_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let joined = tokio::time::timeout(Duration::from_secs(limit), async {
        let mut end = started;
        for t in tasks {
            if let Some(e) = t.await?? {
                end = end.max(e);
            }
        }
        Ok::<_, BoxError>(end)
    })
    .await;
    let end = match joined {
        Ok(end) => end?,
        Err(_) => {
            return Err(format!(
                "timed out after {limit} s with {} of {} messages settled",
                accepted.load(Ordering::SeqCst),
                args.messages
            )
            .into())
        }
    };
    let secs = end.duration_since(started).as_secs_f64().max(1e-9);
    println!(
        "amqp_load phase={} links={links} messages={} seconds={secs:.3} rate={:.0}",
        match args.phase {
            Phase::Send => "send",
            Phase::Receive => "receive",
        },
        args.messages,
        args.messages as f64 / secs
    );
    Ok(())
}

fn main() {
    let result = parse_args().and_then(|args| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(run(args))
    });
    if let Err(e) = result {
        eprintln!("amqp_load: {e}");
        std::process::exit(1);
    }
}
