//! One scenario over both planes against both harness modes: a message sent over HTTP is
//! received over AMQP (waking a receiver link already waiting with credit) and completed
//! there, which HTTP then sees (the queue is empty).

mod amqp_client;
mod harness;

use amqp_client::*;
use fe2o3_amqp_types::messaging::{Accepted, DeliveryState};
use fe2o3_amqp_types::performatives::Performative;
use harness::{Mode, Running};
use localzure::amqp::convert;

const ATOM_CT: &str = "application/atom+xml;type=entry;charset=utf-8";

/// A queue's ATOM entry with default properties.
fn queue_entry() -> String {
    "<entry xmlns=\"http://www.w3.org/2005/Atom\"><content type=\"application/xml\">\
     <QueueDescription xmlns=\"http://schemas.microsoft.com/netservices/2010/10/servicebus/connect\"/>\
     </content></entry>"
        .to_string()
}

async fn http_send_amqp_receive(mode: Mode) {
    let s = Running::start(mode).await;
    let http = reqwest::Client::new();
    let base = s.base_url();
    let r = http
        .put(format!("{base}/planes"))
        .header("Content-Type", ATOM_CT)
        .body(queue_entry())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{mode:?}: create queue");

    // The AMQP receiver waits with credit before anything is sent.
    let mut c = Client::connect(s.amqp_addr()).await;
    c.attach_receiver(0, "planes", false).await;
    c.flow(0, 0, 1, false).await;
    s.wait_parked(1).await;

    let r = http
        .post(format!("{base}/planes/messages"))
        .header("BrokerProperties", r#"{"MessageId":"over-http"}"#)
        .body("hello from http")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{mode:?}: HTTP send");

    let (p, payload) = c.recv().await;
    let Performative::Transfer(t) = p else {
        panic!("{mode:?}: expected a transfer, got {p:?}");
    };
    let m = convert::decode_message(&payload).unwrap().to_new_message();
    assert_eq!(m.message_id, "over-http", "{mode:?}");
    assert_eq!(m.body, b"hello from http", "{mode:?}");
    let d = c
        .settle(t.delivery_id.unwrap(), DeliveryState::Accepted(Accepted {}))
        .await;
    assert!(matches!(d.state, Some(DeliveryState::Accepted(_))), "{d:?}");

    // Completed over AMQP: nothing left for HTTP.
    let r = http
        .delete(format!("{base}/planes/messages/head?timeout=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        204,
        "{mode:?}: queue empty after the AMQP complete"
    );
    s.stop().await;
}

#[tokio::test]
async fn http_send_amqp_receive_in_process() {
    http_send_amqp_receive(Mode::InProcess).await;
}

#[tokio::test]
async fn http_send_amqp_receive_binary() {
    http_send_amqp_receive(Mode::Binary).await;
}
