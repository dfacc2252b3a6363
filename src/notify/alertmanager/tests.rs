use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;

use super::*;
use crate::config::{AlertmanagerReceiver, HttpAuth, Secret};
use crate::model::{ContributorLine, Link, Severity};
use crate::store::SqliteStore;

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn notification() -> Notification {
    Notification {
        idempotency_key: "fp1-1-firing-am".into(),
        receiver: "am".into(),
        status: NotificationStatus::Firing,
        fingerprint: "fp1".into(),
        rule: "budget".into(),
        labels: BTreeMap::from([
            ("alertname".to_string(), "budget".to_string()),
            ("account".to_string(), "020-1001".to_string()),
            ("severity".to_string(), "critical".to_string()),
        ]),
        annotations: BTreeMap::from([(
            "summary".to_string(),
            "Spend $6,100.00 crossed the $5,000.00 budget".to_string(),
        )]),
        value: "6100".into(),
        threshold: "5000".into(),
        starts_at: ts("2026-11-12T00:00:00Z"),
        ends_at: None,
        contributors: vec![
            ContributorLine {
                item: "RCDN/BWOUT".into(),
                amount: "$412.00".into(),
                delta: "+$380.00".into(),
            },
            ContributorLine {
                item: "CLOUD_SERVERS".into(),
                amount: "$6,000.00".into(),
                delta: "+$6,000.00".into(),
            },
        ],
        links: vec![
            Link {
                title: "Grafana panel".into(),
                url: "https://grafana.example/d/spend?viewPanel=2".into(),
            },
            Link {
                title: "alert".into(),
                url: "http://spendwatch.example:9750/api/v1/alerts".into(),
            },
        ],
    }
}

fn resolved(mut n: Notification, at: &str) -> Notification {
    n.status = NotificationStatus::Resolved;
    n.ends_at = Some(ts(at));
    n
}

fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[test]
fn postable_alert_has_the_openapi_fields_and_nothing_else() {
    let now = ts("2026-11-12T01:00:00Z");
    let body = &render(&[notification()], now, Duration::from_secs(60)).unwrap()[0];
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    let alerts = v.as_array().expect("postableAlerts is an array");
    assert_eq!(alerts.len(), 1);
    let a = &alerts[0];
    assert_eq!(
        keys(a),
        [
            "annotations",
            "endsAt",
            "generatorURL",
            "labels",
            "startsAt"
        ]
    );
    // labelSet: an object of strings.
    assert_eq!(
        a["labels"],
        serde_json::json!({"alertname": "budget", "account": "020-1001", "severity": "critical"})
    );
    assert_eq!(
        a["annotations"],
        serde_json::json!({
            "summary": "Spend $6,100.00 crossed the $5,000.00 budget",
            "value": "6100",
            "threshold": "5000",
            "contributors": "RCDN/BWOUT: $412.00 (+$380.00)\nCLOUD_SERVERS: $6,000.00 (+$6,000.00)",
            "grafana_panel_url": "https://grafana.example/d/spend?viewPanel=2",
            "alert_url": "http://spendwatch.example:9750/api/v1/alerts",
        })
    );
    // date-time (RFC 3339).
    assert_eq!(a["startsAt"], "2026-11-12T00:00:00Z");
    assert_eq!(a["endsAt"], "2026-11-12T01:04:00Z");
    assert_eq!(
        a["generatorURL"],
        "http://spendwatch.example:9750/api/v1/alerts"
    );
    // And it reads back.
    let back: Vec<PostableAlert> = serde_json::from_slice(body).unwrap();
    assert_eq!(back[0].ends_at, ts("2026-11-12T01:04:00Z"));
}

#[test]
fn generator_url_is_omitted_without_an_alert_link() {
    let mut n = notification();
    n.links.retain(|l| l.title != "alert");
    let a =
        serde_json::to_value(postable(&n, Timestamp::UNIX_EPOCH, Duration::from_secs(60)).unwrap())
            .unwrap();
    assert!(a.get("generatorURL").is_none(), "{a}");
    // An unusable URL is left out too, rather than having Alertmanager refuse the alert.
    n.links.push(Link {
        title: "Alert".into(),
        url: "not a url".into(),
    });
    assert_eq!(generator_url(&n), None);
}

#[test]
fn ends_at_is_four_resend_intervals_ahead_while_firing() {
    let now = ts("2026-11-12T10:00:00Z");
    let n = notification();
    assert_eq!(
        ends_at(&n, now, Duration::from_secs(60)),
        ts("2026-11-12T10:04:00Z")
    );
    assert_eq!(
        ends_at(&n, now, Duration::from_secs(90)),
        ts("2026-11-12T10:06:00Z")
    );
    assert_eq!(
        ends_at(&n, now, Duration::from_millis(1500)),
        ts("2026-11-12T10:00:06Z")
    );
    // Absurd intervals saturate instead of overflowing.
    assert_eq!(
        ends_at(&n, now, Duration::from_secs(u64::MAX)),
        Timestamp::MAX
    );
    // A resolved alert ends when it was resolved, whatever the interval.
    let r = resolved(n, "2026-11-12T09:30:00Z");
    assert_eq!(
        ends_at(&r, now, Duration::from_secs(60)),
        ts("2026-11-12T09:30:00Z")
    );
    let mut unknown = r.clone();
    unknown.ends_at = None;
    assert_eq!(ends_at(&unknown, now, Duration::from_secs(60)), now);
}

#[test]
fn label_names_are_sanitized_and_alertname_is_always_there() {
    assert_eq!(
        sanitize_label_name("team-name").as_deref(),
        Some("team_name")
    );
    assert_eq!(sanitize_label_name("1st").as_deref(), Some("_1st"));
    assert_eq!(sanitize_label_name("a.b/c d").as_deref(), Some("a_b_c_d"));
    assert_eq!(sanitize_label_name("ünïcode").as_deref(), Some("_n_code"));
    assert_eq!(sanitize_label_name("ok_Name9").as_deref(), Some("ok_Name9"));
    assert_eq!(sanitize_label_name(""), None);

    let mut n = notification();
    n.labels.remove("alertname");
    n.labels.insert("cost-center".into(), "42".into());
    n.labels.insert("empty".into(), String::new());
    let labels = label_set(&n).unwrap();
    assert_eq!(labels["alertname"], "budget", "filled in from the rule");
    assert_eq!(labels["cost_center"], "42");
    assert!(!labels.contains_key("empty"), "empty values are dropped");
    assert!(labels.keys().all(|k| crate::config::is_label_name(k)));
}

#[test]
fn names_that_collide_after_sanitizing_are_refused_clearly() {
    let mut n = notification();
    n.labels.insert("team-a".into(), "x".into());
    n.labels.insert("team_a".into(), "y".into());
    let err = label_set(&n).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("\"team-a\"") && text.contains("\"team_a\"") && text.contains("fp1"),
        "{text}"
    );
    let send_err = render(&[n], Timestamp::UNIX_EPOCH, Duration::from_secs(60)).unwrap_err();
    assert!(!send_err.recoverable);
    assert_eq!(send_err.reason, "invalid_labels");

    let mut n = notification();
    n.annotations.insert(String::new(), "x".into());
    assert!(matches!(
        annotation_set(&n),
        Err(LabelError::Empty {
            kind: "annotation",
            ..
        })
    ));
}

#[test]
fn a_rules_own_annotation_wins_over_a_computed_one() {
    let mut n = notification();
    n.annotations.insert("value".into(), "see dashboard".into());
    n.contributors.clear();
    n.links.clear();
    let a = annotation_set(&n).unwrap();
    assert_eq!(a["value"], "see dashboard");
    assert_eq!(a["threshold"], "5000");
    assert!(!a.contains_key("contributors"), "no empty annotation");
}

#[test]
fn statuses_are_classified() {
    let e = classify_status(StatusCode::INTERNAL_SERVER_ERROR, "", "http://am:9093/");
    assert!(e.recoverable);
    assert_eq!(e.reason, "http_5xx");
    assert!(e.message.contains("http://am:9093/api/v2/alerts"), "{e}");
    let e = classify_status(StatusCode::TOO_MANY_REQUESTS, "", "http://am/");
    assert!(e.recoverable);
    assert_eq!(e.reason, "rate_limited");
    let e = classify_status(StatusCode::REQUEST_TIMEOUT, "", "http://am/");
    assert!(e.recoverable);
    let e = classify_status(
        StatusCode::BAD_REQUEST,
        "start time must be before end time\n",
        "http://am/",
    );
    assert!(!e.recoverable);
    assert_eq!(e.reason, "http_4xx");
    assert!(
        e.message
            .ends_with("400 Bad Request: start time must be before end time"),
        "{e}"
    );
    let e = classify_status(StatusCode::NOT_FOUND, "", "http://am/");
    assert!(!e.recoverable);
    assert_eq!(e.reason, "http_4xx");
    // Long bodies are cut, on a character boundary.
    let e = classify_status(StatusCode::BAD_REQUEST, &"é".repeat(1000), "http://am/");
    assert!(e.message.len() < 700, "{}", e.message.len());
    assert!(e.message.ends_with('…'));
}

// ---------------------------------------------------------------- small fake Alertmanagers

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: serde_json::Value,
}

type OnPost = Box<dyn Fn(&serde_json::Value) + Send + Sync>;

#[derive(Clone)]
struct Fake {
    received: Arc<Mutex<Vec<Received>>>,
    status: StatusCode,
    answer: &'static str,
    on_post: Arc<Option<OnPost>>,
}

impl Fake {
    fn new(status: StatusCode, answer: &'static str) -> Self {
        Fake {
            received: Arc::default(),
            status,
            answer,
            on_post: Arc::new(None),
        }
    }
    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
    async fn start(self, prefix: &str) -> (Self, String) {
        async fn handle(
            State(fake): State<Fake>,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> (StatusCode, &'static str) {
            let body: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            if let Some(hook) = fake.on_post.as_ref() {
                hook(&body);
            }
            fake.received.lock().unwrap().push(Received {
                path: uri.path().to_string(),
                headers,
                body,
            });
            (fake.status, fake.answer)
        }
        let app = Router::new()
            .route(&format!("{prefix}/api/v2/alerts"), post(handle))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (self, format!("http://{addr}{prefix}"))
    }
}

/// An Alertmanager that accepts the connection and never answers.
async fn silent_alertmanager() -> String {
    let app = Router::new().route("/api/v2/alerts", post(std::future::pending::<StatusCode>));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// A loopback address nothing listens on.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

fn receiver(urls: &[String], auth: Option<HttpAuth>) -> AlertmanagerReceiver {
    AlertmanagerReceiver {
        name: "am".into(),
        urls: urls.iter().map(|u| url::Url::parse(u).unwrap()).collect(),
        timeout: Duration::from_secs(2),
        resend_interval: Duration::from_secs(60),
        auth,
    }
}

fn group(alerts: Vec<Notification>) -> NotificationGroup {
    NotificationGroup {
        receiver: "am".into(),
        key: "fp1".into(),
        labels: BTreeMap::new(),
        alerts,
    }
}

#[tokio::test]
async fn every_alertmanager_gets_the_same_alerts() {
    let (a, url_a) = Fake::new(StatusCode::OK, "").start("").await;
    // A base URL with a path prefix, as behind a reverse proxy.
    let (b, url_b) = Fake::new(StatusCode::OK, "").start("/alertmanager").await;
    let metrics = Arc::new(Metrics::new());
    let sender = AlertmanagerSender::new(receiver(&[url_a.clone(), url_b.clone()], None))
        .unwrap()
        .with_metrics(metrics.clone());
    let before = Timestamp::now();
    let delivery = sender
        .send(&group(vec![notification()]), Some("ignored"))
        .await
        .unwrap();
    assert_eq!(
        delivery,
        Delivery::default(),
        "Alertmanager keeps no thread"
    );
    let (ra, rb) = (a.received(), b.received());
    assert_eq!((ra.len(), rb.len()), (1, 1));
    assert_eq!(ra[0].path, "/api/v2/alerts");
    assert_eq!(rb[0].path, "/alertmanager/api/v2/alerts");
    assert_eq!(ra[0].body, rb[0].body);
    assert_eq!(ra[0].headers["content-type"], "application/json");
    assert!(ra[0].headers.get("authorization").is_none());
    let ends: Timestamp = ra[0].body[0]["endsAt"].as_str().unwrap().parse().unwrap();
    let validity = ends.duration_since(before);
    assert!(
        validity >= SignedDuration::from_secs(240) && validity < SignedDuration::from_secs(250),
        "{validity:?}"
    );
    let text = metrics.render();
    for url in [&url_a, &url_b] {
        let line = format!(
            "spendwatch_alertmanager_requests_total{{alertmanager=\"{url}/\",outcome=\"accepted\",receiver=\"am\"}} 1"
        );
        assert!(text.contains(&line), "{line}\n{text}");
    }
}

#[tokio::test]
async fn one_accepting_alertmanager_is_enough() {
    let (up, url_up) = Fake::new(StatusCode::OK, "").start("").await;
    let (_down, url_down) = Fake::new(StatusCode::SERVICE_UNAVAILABLE, "")
        .start("")
        .await;
    let metrics = Arc::new(Metrics::new());
    let sender = AlertmanagerSender::new(receiver(&[url_down.clone(), url_up], None))
        .unwrap()
        .with_metrics(metrics.clone());
    let report = sender
        .post(&[notification()], Timestamp::now())
        .await
        .unwrap();
    assert_eq!(report.accepted, 1);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].0, format!("{url_down}/"));
    assert_eq!(report.failures[0].1.reason, "http_5xx");
    assert_eq!(up.received().len(), 1);
    assert!(metrics.render().contains("outcome=\"http_5xx\""));
}

#[tokio::test]
async fn all_unreachable_or_failing_is_recoverable() {
    let (_down, url_down) = Fake::new(StatusCode::BAD_GATEWAY, "").start("").await;
    let closed = closed_port();
    let sender = AlertmanagerSender::new(receiver(&[closed.clone(), url_down], None)).unwrap();
    let err = sender
        .send(&group(vec![notification()]), None)
        .await
        .unwrap_err();
    assert!(err.recoverable, "{err}");
    assert_eq!(err.reason, "connect", "the first recoverable reason");
    assert!(err.message.contains(&closed), "{err}");
    assert!(err.message.contains("502"), "{err}");

    // A 4xx from one and a 5xx from the other: the 5xx one may come back, so retry.
    let (_bad, url_bad) = Fake::new(StatusCode::BAD_REQUEST, "bad").start("").await;
    let (_down, url_down) = Fake::new(StatusCode::INTERNAL_SERVER_ERROR, "")
        .start("")
        .await;
    let sender = AlertmanagerSender::new(receiver(&[url_bad, url_down], None)).unwrap();
    let err = sender
        .post(&[notification()], Timestamp::now())
        .await
        .unwrap_err();
    assert!(err.recoverable);
    assert_eq!(err.reason, "http_5xx");
}

#[tokio::test]
async fn all_refusing_is_permanent_and_says_why() {
    let answer = "{\"code\":400,\"message\":\"invalid label set: invalid name \\\"1x\\\"\"}";
    let (_a, url_a) = Fake::new(StatusCode::BAD_REQUEST, answer).start("").await;
    let (_b, url_b) = Fake::new(StatusCode::BAD_REQUEST, answer).start("").await;
    let sender = AlertmanagerSender::new(receiver(&[url_a, url_b], None)).unwrap();
    let err = sender
        .send(&group(vec![notification()]), None)
        .await
        .unwrap_err();
    assert!(!err.recoverable);
    assert_eq!(err.reason, "http_4xx");
    assert!(err.message.contains("invalid label set"), "{err}");
}

#[tokio::test]
async fn a_silent_alertmanager_times_out_recoverably() {
    let url = silent_alertmanager().await;
    let mut config = receiver(&[url], None);
    config.timeout = Duration::from_millis(300);
    let sender = AlertmanagerSender::new(config).unwrap();
    let started = Instant::now();
    let err = sender
        .post(&[notification()], Timestamp::now())
        .await
        .unwrap_err();
    assert!(err.recoverable);
    assert_eq!(err.reason, "timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn many_alerts_go_in_batches() {
    let (fake, url) = Fake::new(StatusCode::OK, "").start("").await;
    let sender = AlertmanagerSender::new(receiver(&[url], None)).unwrap();
    let alerts: Vec<Notification> = (0..300)
        .map(|i| {
            let mut n = notification();
            n.labels.insert("account".into(), format!("acct-{i}"));
            n
        })
        .collect();
    sender.post(&alerts, Timestamp::now()).await.unwrap();
    let sizes: Vec<usize> = fake
        .received()
        .iter()
        .map(|r| r.body.as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [MAX_BATCH, 300 - MAX_BATCH]);
}

#[tokio::test]
async fn credentials_are_sent_and_never_leak() {
    const TOKEN: &str = "am-bearer-t0ken-9c1d";
    const PASSWORD: &str = "am-basic-pa55-77ef";
    let (fake, url) = Fake::new(StatusCode::UNAUTHORIZED, "unauthorized")
        .start("")
        .await;
    let leaks = |text: &str| text.contains(TOKEN) || text.contains(PASSWORD);

    let bearer = receiver(
        std::slice::from_ref(&url),
        Some(HttpAuth::Bearer(Secret::new(TOKEN))),
    );
    assert!(!leaks(&format!("{bearer:?}")));
    let sender = AlertmanagerSender::new(bearer).unwrap();
    let err = sender
        .post(&[notification()], Timestamp::now())
        .await
        .unwrap_err();
    assert!(!err.recoverable, "401 is permanent");
    assert!(!leaks(&format!("{err} {err:?}")), "{err:?}");

    let basic = receiver(
        &[url],
        Some(HttpAuth::Basic {
            username: "spendwatch".into(),
            password: Secret::new(PASSWORD),
        }),
    );
    assert!(!leaks(&format!("{basic:?}")));
    let metrics = Arc::new(Metrics::new());
    let sender = AlertmanagerSender::new(basic)
        .unwrap()
        .with_metrics(metrics.clone());
    let err = sender
        .post(&[notification()], Timestamp::now())
        .await
        .unwrap_err();
    assert!(!leaks(&format!("{err} {err:?}")));
    assert!(!leaks(&metrics.render()));

    let auth: Vec<String> = fake
        .received()
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_string())
        .collect();
    // base64("spendwatch:am-basic-pa55-77ef"), computed outside reqwest.
    assert_eq!(
        auth,
        [
            format!("Bearer {TOKEN}"),
            "Basic c3BlbmR3YXRjaDphbS1iYXNpYy1wYTU1LTc3ZWY=".to_string()
        ]
    );
}

// ---------------------------------------------------------------- re-sending

fn record(fingerprint: &str, state: AlertState, labels: &[(&str, &str)]) -> AlertRecord {
    AlertRecord {
        fingerprint: fingerprint.into(),
        rule: "budget".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        annotations: BTreeMap::from([("summary".to_string(), "over budget".to_string())]),
        severity: Severity::Critical,
        state,
        active_at: None,
        fired_at: Some(ts("2026-11-12T00:00:00Z")),
        resolved_at: (state == AlertState::Resolved).then(|| ts("2026-11-12T00:30:00Z")),
        keep_firing_since: None,
        value: "6100".into(),
        threshold: "5000".into(),
        summary: "over budget".into(),
        seq: 1,
        contributors: Vec::new(),
    }
}

fn store_with(records: &[AlertRecord]) -> Arc<SqliteStore> {
    let store = SqliteStore::open_in_memory().unwrap();
    for r in records {
        store.save_alert(r, &[], Timestamp::UNIX_EPOCH).unwrap();
    }
    Arc::new(store)
}

#[tokio::test]
async fn resender_posts_the_firing_alerts_the_filter_accepts_with_a_fresh_ends_at() {
    let store = store_with(&[
        record(
            "f1",
            AlertState::Firing,
            &[("alertname", "budget"), ("team", "pay")],
        ),
        record(
            "f2",
            AlertState::Firing,
            &[("alertname", "budget"), ("team", "ops")],
        ),
        record(
            "r1",
            AlertState::Resolved,
            &[("alertname", "budget"), ("team", "pay")],
        ),
        record(
            "p1",
            AlertState::Pending,
            &[("alertname", "budget"), ("team", "pay")],
        ),
    ]);
    let (fake, url) = Fake::new(StatusCode::OK, "").start("").await;
    let filter: AlertFilter = Arc::new(|labels| labels.get("team").is_some_and(|t| t == "pay"));
    let resender = Resender::new(
        AlertmanagerSender::new(receiver(&[url], None)).unwrap(),
        store,
        filter,
        Arc::new(Metrics::new()),
    );
    let before = Timestamp::now();
    let stats = resender.resend_once().await.unwrap();
    assert_eq!(
        stats,
        ResendStats {
            firing: 1,
            resolved_meanwhile: 0
        }
    );
    let received = fake.received();
    assert_eq!(received.len(), 1);
    let alerts = received[0].body.as_array().unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["labels"]["team"], "pay");
    assert_eq!(alerts[0]["startsAt"], "2026-11-12T00:00:00Z");
    assert_eq!(alerts[0]["annotations"]["summary"], "over budget");
    let ends: Timestamp = alerts[0]["endsAt"].as_str().unwrap().parse().unwrap();
    assert!(ends >= before.checked_add(SignedDuration::from_secs(240)).unwrap());

    // A second round moves endsAt on.
    resender.resend_once().await.unwrap();
    let again: Timestamp = fake.received()[1].body[0]["endsAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(again >= ends);
}

#[tokio::test]
async fn nothing_firing_posts_nothing() {
    let store = store_with(&[record("r1", AlertState::Resolved, &[("alertname", "b")])]);
    let (fake, url) = Fake::new(StatusCode::OK, "").start("").await;
    let resender = Resender::new(
        AlertmanagerSender::new(receiver(&[url], None)).unwrap(),
        store,
        accept_all(),
        Arc::new(Metrics::new()),
    );
    assert_eq!(
        resender.resend_once().await.unwrap(),
        ResendStats::default()
    );
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn an_alert_resolved_while_its_resend_is_in_flight_is_posted_resolved() {
    let firing = record("f1", AlertState::Firing, &[("alertname", "budget")]);
    let store = store_with(std::slice::from_ref(&firing));
    // The alert resolves (and its resolution is saved) while the firing copy is on the wire.
    let mut fake = Fake::new(StatusCode::OK, "");
    let (hook_store, mut resolution) = (store.clone(), firing.clone());
    resolution.state = AlertState::Resolved;
    resolution.resolved_at = Some(ts("2026-11-12T00:45:00Z"));
    fake.on_post = Arc::new(Some(Box::new(move |_body| {
        hook_store
            .save_alert(&resolution, &[], Timestamp::UNIX_EPOCH)
            .unwrap();
    })));
    let (fake, url) = fake.start("").await;
    let resender = Resender::new(
        AlertmanagerSender::new(receiver(&[url], None)).unwrap(),
        store,
        accept_all(),
        Arc::new(Metrics::new()),
    );
    let stats = resender.resend_once().await.unwrap();
    assert_eq!(
        stats,
        ResendStats {
            firing: 1,
            resolved_meanwhile: 1
        }
    );
    let received = fake.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].body[0]["endsAt"], "2026-11-12T00:45:00Z");
    assert_eq!(received[1].body[0]["labels"], received[0].body[0]["labels"]);
}

#[tokio::test]
async fn resender_counts_failures_keeps_going_and_stops_on_shutdown() {
    let store = store_with(&[record("f1", AlertState::Firing, &[("alertname", "b")])]);
    let (fake, url) = Fake::new(StatusCode::INTERNAL_SERVER_ERROR, "")
        .start("")
        .await;
    let mut config = receiver(&[url], None);
    config.resend_interval = Duration::from_millis(50);
    let metrics = Arc::new(Metrics::new());
    let resender = Resender::new(
        AlertmanagerSender::new(config).unwrap(),
        store,
        accept_all(),
        metrics.clone(),
    );
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(resender.run(shutdown));
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.received().len() < 2 {
        assert!(Instant::now() < deadline, "two re-send rounds expected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        metrics.render().contains(
            "spendwatch_alertmanager_resends_total{outcome=\"http_5xx\",receiver=\"am\"}"
        ),
        "{}",
        metrics.render()
    );
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the resender stops on shutdown")
        .unwrap();
}

#[test]
fn resent_notifications_mirror_the_alert_with_its_links() {
    let r = record("f1", AlertState::Resolved, &[("alertname", "budget")]);
    let links = crate::alerting::links::LinkBuilder::new(crate::config::LinksConfig {
        external_url: Some(url::Url::parse("https://sw.example.com").unwrap()),
        ..Default::default()
    });
    let n = notification_for(&r, NotificationStatus::Resolved, "am", &links).unwrap();
    assert_eq!(n.links[0].url, "https://sw.example.com/alerts/f1");
    assert_eq!(n.idempotency_key, "f1-1-resolved-am");
    assert_eq!(n.starts_at, ts("2026-11-12T00:00:00Z"));
    assert_eq!(n.ends_at, Some(ts("2026-11-12T00:30:00Z")));
    let mut never = r.clone();
    never.fired_at = None;
    assert!(notification_for(&never, NotificationStatus::Firing, "am", &links).is_none());
}
