//! LocalZure in place of Microsoft's Service Bus emulator, through the real binary: the
//! official container's variables, a `Config.json` of the official shape (with `//` comments),
//! the official `/health` body and a start-up connection string that names the AMQP port.

mod process;

use process::*;

fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn the_official_emulator_setup_works_unchanged() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/official-config/Config.json"
    );
    let server = Server::start(&vars(&[
        ("LOCALZURE_ENTITIES_CONFIG", config),
        // The official compose file's environment block; the harness's LOCALZURE_HTTP_PORT=0
        // wins over EMULATOR_HTTP_PORT.
        ("EMULATOR_HTTP_PORT", "1"),
        ("ACCEPT_EULA", "Y"),
        ("SQL_SERVER", "sqledge"),
        ("MSSQL_SA_PASSWORD", "not-used"),
        ("SQL_WAIT_INTERVAL", "15"),
    ]));
    assert_ne!(server.port(), 1);

    // Every entity of the file exists, comments and all.
    let queues = server.http.get("$Resources/Queues").await;
    assert!(
        queues.body.contains("<title type=\"text\">orders</title>")
            && queues
                .body
                .contains("<title type=\"text\">payments</title>"),
        "{}",
        queues.body
    );
    let rules = server
        .http
        .get("events/Subscriptions/by-content-type/Rules/json-only")
        .await;
    assert_eq!(rules.status, 200, "{}", rules.body);
    assert!(rules.body.contains("application/json"), "{}", rules.body);
    assert!(!rules.body.contains("corr-7"), "{}", rules.body);
    let sql = server
        .http
        .get("events/Subscriptions/sql-routed/Rules/first-sql")
        .await;
    assert!(sql.body.contains("SET sys.To"), "{}", sql.body);

    let (status, health) = server.http.health().await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["message"], "Service is healthy.", "{health}");

    // The connection string names the (ephemeral, so non-default) AMQP port.
    let amqp = server
        .logs
        .wait_for(START_DEADLINE, |l| l.contains("AMQP listening on amqp://"))
        .and_then(|l| l.rsplit(':').next().map(|p| p.trim().to_string()))
        .expect("AMQP port logged");
    let line = server
        .logs
        .wait_for(START_DEADLINE, |l| l.contains("connection string:"))
        .expect("connection string logged");
    assert!(
        line.contains(&format!(
            "Endpoint=sb://localhost:{amqp};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
        )),
        "{line}"
    );
    // The official variables are accepted silently.
    let text = server.logs.text();
    for name in [
        "EMULATOR_HTTP_PORT",
        "ACCEPT_EULA",
        "SQL_SERVER",
        "MSSQL_SA_PASSWORD",
        "SQL_WAIT_INTERVAL",
    ] {
        assert!(!text.contains(name), "{name} mentioned in the log:\n{text}");
    }
    server.terminate();
}

/// `EMULATOR_HTTP_PORT` alone sets the HTTP port, as in the official container.
#[tokio::test]
async fn emulator_http_port_sets_the_port() {
    // A port the kernel just handed out and released: free unless something takes it in between.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut child = command(&vars(&[
        ("EMULATOR_HTTP_PORT", &port.to_string()),
        ("LOCALZURE_AMQP_PORT", "0"),
    ]))
    .arg("start")
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("spawn");
    let http = Http::new(&format!("http://127.0.0.1:{port}"));
    let deadline = std::time::Instant::now() + START_DEADLINE;
    let mut healthy = false;
    while std::time::Instant::now() < deadline {
        if let Ok(r) = http
            .try_request(reqwest::Method::GET, "health", &[], "")
            .await
        {
            healthy = r.status == 200;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        healthy,
        "nothing answered /health on EMULATOR_HTTP_PORT={port}"
    );
}
