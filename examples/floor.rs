//! The floor of the HTTP send benchmark (`scripts/bench.sh`): a minimal warp server that
//! accepts the same `POST /{queue}/messages` LocalZure does (path, headers, whole body read)
//! and answers `201 Created` with an empty body, served by the same hyper-util connection
//! builder as `src/server.rs`. Whatever LocalZure costs above this is its own per-send work.
//!
//! Usage: `cargo run --release --example floor` — binds 127.0.0.1 on a free port and prints
//! `listening on 127.0.0.1:PORT`; stops on SIGTERM/SIGINT or when stdin closes.

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use warp::Filter;

fn main() -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    let send = warp::post()
        .and(warp::path!(String / "messages"))
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .and_then(
            |_queue: String, _headers: warp::http::HeaderMap, _body: Bytes| async move {
                Ok::<_, Infallible>(warp::reply::with_status(
                    warp::reply(),
                    warp::http::StatusCode::CREATED,
                ))
            },
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (io, _) = listener.accept().await?;
        let svc = warp::service(send);
        let svc = hyper::service::service_fn(move |req| {
            use tower_service::Service;
            svc.clone().call(req)
        });
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(io), svc)
                .await;
        });
    }
}
