//! Sniffing on in-memory pipes and loopback sockets, TLS then sniffing, and AMQP over
//! WebSockets with a tokio-tungstenite client, on the raw route and through hyper.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::sniff::*;
use super::ws::*;

const AMQP_SASL_HEADER: &[u8] = b"AMQP\x03\x01\x00\x00";
const SHORT: Duration = Duration::from_millis(100);

#[test]
fn detect_needs_only_the_bytes_that_tell_protocols_apart() {
    assert_eq!(detect(b""), None);
    assert_eq!(detect(b"A"), None);
    assert_eq!(detect(b"AMQ"), None);
    assert_eq!(detect(b"AMQP"), Some(Protocol::Amqp));
    assert_eq!(detect(AMQP_SASL_HEADER), Some(Protocol::Amqp));
    assert_eq!(detect(b"AMQP\x00\x01\x00\x00"), Some(Protocol::Amqp));
    assert_eq!(detect(b"AB"), Some(Protocol::Http));
    assert_eq!(detect(&[0x16]), None);
    assert_eq!(detect(&[0x16, 0x03, 0x01, 0x02, 0x00]), Some(Protocol::Tls));
    assert_eq!(detect(&[0x16, 0x01]), Some(Protocol::Http));
    for method in ["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"] {
        assert_eq!(detect(method.as_bytes()), Some(Protocol::Http), "{method}");
        assert_eq!(
            detect(&method.as_bytes()[..1]),
            Some(Protocol::Http),
            "{method}"
        );
    }
}

#[tokio::test]
async fn classify_replays_the_bytes_it_read_and_passes_writes_through() {
    let (mut client, server) = duplex(1024);
    client.write_all(AMQP_SASL_HEADER).await.unwrap();
    client.write_all(b"rest").await.unwrap();
    let (protocol, mut stream) = classify(server, SHORT).await.unwrap();
    assert_eq!(protocol, Protocol::Amqp);
    let mut all = [0u8; 12];
    stream.read_exact(&mut all).await.unwrap();
    assert_eq!(&all[..8], AMQP_SASL_HEADER);
    assert_eq!(&all[8..], b"rest");
    stream.write_all(b"reply").await.unwrap();
    let mut reply = [0u8; 5];
    client.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"reply");

    let (mut client, server) = duplex(1024);
    client
        .write_all(b"GET /health HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let (protocol, stream) = classify(server, SHORT).await.unwrap();
    assert_eq!(protocol, Protocol::Http);
    let (buffered, _) = stream.into_parts();
    assert!(buffered.starts_with(b"GET"));
}

#[tokio::test]
async fn a_header_split_across_writes_is_waited_for() {
    let (mut client, server) = duplex(1024);
    let sniff = tokio::spawn(classify(server, Duration::from_secs(5)));
    client.write_all(b"A").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    client.write_all(b"MQP\x00\x01\x00\x00").await.unwrap();
    let (protocol, mut stream) = sniff.await.unwrap().unwrap();
    assert_eq!(protocol, Protocol::Amqp);
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(&header, b"AMQP\x00\x01\x00\x00");
}

#[tokio::test]
async fn silence_times_out_and_an_early_close_is_eof() {
    let (_client, server) = duplex(64);
    let err = classify(server, SHORT).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);

    let (client, server) = duplex(64);
    drop(client);
    let err = classify(server, SHORT).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);

    // Closed after "AM": not AMQP, so hyper gets it (and answers 400 or drops it).
    let (mut client, server) = duplex(64);
    client.write_all(b"AM").await.unwrap();
    drop(client);
    assert_eq!(classify(server, SHORT).await.unwrap().0, Protocol::Http);
}

#[tokio::test]
async fn classify_tcp_peeks_without_consuming() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (mut server, _) = listener.accept().await.unwrap();
    client.write_all(AMQP_SASL_HEADER).await.unwrap();
    assert_eq!(classify_tcp(&server, SHORT).await.unwrap(), Protocol::Amqp);
    let mut header = [0u8; 8];
    server.read_exact(&mut header).await.unwrap();
    assert_eq!(&header, AMQP_SASL_HEADER);

    // A silent client times out; one that closes is EOF.
    let mut silent = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    let err = classify_tcp(&server, SHORT).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    silent.shutdown().await.unwrap();
    let err = classify_tcp(&server, SHORT).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
}

/// A client trusting only the generated CA.
fn tls_connector(material: &crate::tls::TlsMaterial) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let ca = material.ca_pem().unwrap().as_bytes();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Amqp,
    Http,
    WebSocket,
}

/// The client's side of one exchange: its first bytes (in a binary message for WebSocket),
/// then the server's "ok".
async fn client_exchange<S>(stream: S, client: Client)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match client {
        Client::WebSocket => {
            let mut request = "ws://localhost/$servicebus/websocket"
                .into_client_request()
                .unwrap();
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                AMQP_WS_SUBPROTOCOL.parse().unwrap(),
            );
            let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
                .await
                .unwrap();
            ws.send(Message::binary(AMQP_SASL_HEADER)).await.unwrap();
            match ws.next().await.unwrap().unwrap() {
                Message::Binary(ok) => assert_eq!(&ok[..], b"ok"),
                other => panic!("unexpected {other:?}"),
            }
        }
        Client::Amqp | Client::Http => {
            let mut stream = stream;
            let first: &[u8] = if client == Client::Amqp {
                AMQP_SASL_HEADER
            } else {
                b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
            };
            stream.write_all(first).await.unwrap();
            let mut ok = [0u8; 2];
            stream.read_exact(&mut ok).await.unwrap();
            assert_eq!(&ok, b"ok");
        }
    }
}

/// One port, any client: plain or TLS, AMQP, HTTP or AMQP over WebSocket, all through
/// `route`; the server side reads the first 3 bytes from the routed stream and answers "ok".
#[tokio::test]
async fn route_serves_every_client_kind_on_one_port() {
    use super::route::{route, Destination};
    use rustls::pki_types::ServerName;

    let tmp = tempfile::tempdir().unwrap();
    let material =
        crate::tls::load_or_create(&crate::tls::TlsSettings::generated(tmp.path())).unwrap();
    let connector = tls_connector(&material);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    for use_tls in [false, true] {
        for client in [Client::Amqp, Client::Http, Client::WebSocket] {
            let client_tcp = TcpStream::connect(addr).await.unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            let material = material.clone();
            let server = tokio::spawn(async move {
                let routed = route(tcp, Some(&material), SHORT).await.unwrap();
                let (amqp, mut stream) = match routed.destination {
                    Destination::Amqp(stream) => (true, stream),
                    Destination::Http(stream) => (false, stream),
                };
                let mut first = [0u8; 3];
                stream.read_exact(&mut first).await.unwrap();
                stream.write_all(b"ok").await.unwrap();
                stream.flush().await.unwrap();
                (amqp, routed.tls, routed.websocket, first)
            });
            if use_tls {
                let name = ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, client_tcp).await.unwrap();
                client_exchange(tls, client).await;
            } else {
                client_exchange(client_tcp, client).await;
            }
            let (amqp, tls, websocket, first) = server.await.unwrap();
            assert_eq!(amqp, client != Client::Http, "{client:?}");
            assert_eq!(tls, use_tls, "{client:?}");
            assert_eq!(websocket, client == Client::WebSocket, "{client:?}");
            let expected: &[u8] = if client == Client::Http {
                b"GET"
            } else {
                b"AMQ"
            };
            assert_eq!(first, expected, "{client:?}");
        }
    }

    // A TLS client on a listener without TLS material is closed.
    let client_tcp = TcpStream::connect(addr).await.unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let client = tokio::spawn(async move {
        let name = ServerName::try_from("localhost").unwrap();
        connector.connect(name, client_tcp).await
    });
    let err = route(tcp, None, SHORT).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(client.await.unwrap().is_err());
}

#[test]
fn upgrade_heads_are_recognised_on_any_path() {
    let head = |path: &str, protocol: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
             Upgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
        )
    };
    let upgrade = head("/", AMQP_WS_SUBPROTOCOL);
    assert_eq!(head_is_amqp_ws_upgrade(upgrade.as_bytes()), Some(true));
    let js = head("/$servicebus/websocket", "chat, AMQPWSB10");
    assert_eq!(head_is_amqp_ws_upgrade(js.as_bytes()), Some(true));
    assert_eq!(
        head_is_amqp_ws_upgrade(head("/", "chat").as_bytes()),
        Some(false)
    );
    assert_eq!(
        head_is_amqp_ws_upgrade(&upgrade.as_bytes()[..upgrade.len() - 2]),
        None
    );
    assert_eq!(
        head_is_amqp_ws_upgrade(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
        Some(false)
    );
    assert_eq!(
        head_is_amqp_ws_upgrade(b"\x00\x01garbage\r\n\r\n"),
        Some(false)
    );
    let post = upgrade.replacen("GET", "POST", 1);
    assert_eq!(head_is_amqp_ws_upgrade(post.as_bytes()), Some(false));
}

/// A tokio-tungstenite client as the SDKs behave: subprotocol AMQPWSB10, binary messages.
async fn ws_client(
    addr: std::net::SocketAddr,
    path: &str,
    protocol: Option<&str>,
) -> Result<
    (
        tokio_tungstenite::WebSocketStream<TcpStream>,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    let mut request = format!("ws://localhost:{}{path}", addr.port())
        .into_client_request()
        .unwrap();
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(request, tcp).await
}

/// Connects to `path` offering AMQPWSB10 and checks the server selected it; sends
/// `AMQP header + payload` in three binary messages and a ping, expects the server's
/// byte-stream echo back (in any message split), then closes and expects the close reply.
async fn exercise_echo(addr: std::net::SocketAddr, path: &str) {
    let (mut ws, response) = ws_client(addr, path, Some(AMQP_WS_SUBPROTOCOL))
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("Sec-WebSocket-Protocol").unwrap(),
        AMQP_WS_SUBPROTOCOL
    );
    ws.send(Message::binary(&b"AMQP\x00\x01\x00\x00"[..]))
        .await
        .unwrap();
    ws.send(Message::Ping(bytes::Bytes::from_static(b"p")))
        .await
        .unwrap();
    ws.send(Message::binary(&b"abc"[..])).await.unwrap();
    ws.send(Message::binary(&b"d"[..])).await.unwrap();
    let mut echoed = Vec::new();
    let mut pong = false;
    while echoed.len() < 12 {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(data) => echoed.extend_from_slice(&data),
            Message::Pong(_) => pong = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(echoed, b"AMQP\x00\x01\x00\x00abcd");
    ws.close(None).await.unwrap();
    while let Some(message) = ws.next().await {
        match message {
            Ok(Message::Pong(_)) => pong = true,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(pong, "the ping was answered");
}

/// Server side: reads 12 bytes as a stream, echoes them, then expects EOF after the close.
async fn echo_server<S>(mut stream: WsByteStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut data = [0u8; 12];
    stream.read_exact(&mut data).await.unwrap();
    stream.write_all(&data[..8]).await.unwrap();
    stream.write_all(&data[8..]).await.unwrap();
    stream.flush().await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    stream.shutdown().await.unwrap();
}

#[tokio::test]
async fn amqp_over_websocket_on_the_raw_route() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let (protocol, mut stream) = classify(tcp, SHORT).await.unwrap();
        assert_eq!(protocol, Protocol::Http);
        assert!(is_upgrade_request(&mut stream, SHORT).await.unwrap());
        echo_server(accept(stream).await.unwrap()).await;

        // A WebSocket upgrade without AMQPWSB10 is refused with 400.
        let (tcp, _) = listener.accept().await.unwrap();
        let (_, mut stream) = classify(tcp, SHORT).await.unwrap();
        assert!(!is_upgrade_request(&mut stream, SHORT).await.unwrap());
        assert!(accept(stream).await.is_err());
    });

    exercise_echo(addr, "/$servicebus/websocket").await;

    let refused = ws_client(addr, "/", Some("chat")).await.unwrap_err();
    assert!(
        matches!(&refused, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 400),
        "{refused:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn amqp_over_websocket_through_hyper() {
    use hyper_util::rt::TokioIo;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let done_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(done_tx)));
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                let done_tx = done_tx.clone();
                async move {
                    let Some(response) = upgrade_response(request.method(), request.headers())
                    else {
                        let mut response = http::Response::new(String::from("not an upgrade"));
                        *response.status_mut() = http::StatusCode::NOT_FOUND;
                        return Ok::<_, std::convert::Infallible>(response);
                    };
                    let upgrade = hyper::upgrade::on(&mut request);
                    tokio::spawn(async move {
                        let upgraded = upgrade.await.unwrap();
                        echo_server(from_upgraded(TokioIo::new(upgraded)).await).await;
                        if let Some(tx) = done_tx.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                    });
                    Ok(response.map(|()| String::new()))
                }
            },
        );
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), service)
            .with_upgrades()
            .await
            .unwrap();
    });

    exercise_echo(addr, "/").await;
    done_rx.await.unwrap();
}
