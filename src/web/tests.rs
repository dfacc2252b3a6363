//! The pages through the real router on 127.0.0.1:0: escaping of billing-API text, the
//! silence form's answers (303, 400, 401, 403), and pages that have nothing to show yet.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use jiff::Timestamp;

use crate::config::Secret;
use crate::metrics::Metrics;
use crate::model::{AlertRecord, AlertState, ContributorLine, Severity};
use crate::server::{EvalView, ServerState, router};
use crate::store::{SqliteStore, Store};

const TOKEN: &str = "web-test-token-81c2";
const HOSTILE: &str = "<script>alert(1)</script>";

fn alert() -> AlertRecord {
    AlertRecord {
        fingerprint: "f00dfeed".into(),
        rule: "unit-cost".into(),
        labels: BTreeMap::from([
            ("alertname".to_string(), "unit-cost".to_string()),
            ("account".to_string(), HOSTILE.to_string()),
        ]),
        annotations: BTreeMap::new(),
        severity: Severity::Warning,
        state: AlertState::Firing,
        active_at: Some(Timestamp::now()),
        fired_at: Some(Timestamp::now()),
        resolved_at: None,
        keep_firing_since: None,
        value: "1".into(),
        threshold: "1".into(),
        summary: format!("unit cost rose for {HOSTILE}"),
        seq: 1,
        contributors: vec![ContributorLine {
            item: HOSTILE.into(),
            amount: "¥4,330".into(),
            delta: "+¥864".into(),
        }],
    }
}

async fn serve(token: Option<&str>) -> (String, Arc<dyn Store>) {
    serve_with(token, Arc::new(Metrics::new())).await
}

async fn serve_with(token: Option<&str>, metrics: Arc<Metrics>) -> (String, Arc<dyn Store>) {
    crate::ensure_crypto_provider();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory().unwrap());
    let state = ServerState {
        metrics,
        ready: Arc::new(AtomicBool::new(true)),
        status: Arc::new(RwLock::new(EvalView {
            rules: Vec::new(),
            alerts: vec![alert()],
        })),
        store: store.clone(),
        inhibit_rules: Arc::new(Vec::new()),
        api_token: token.map(Secret::new),
        pages: Arc::new(super::PageContext::default()),
        cluster: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(state)).await;
    });
    (format!("http://{addr}"), store)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn post_form(url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    client().post(url).form(fields).send().await.unwrap()
}

#[tokio::test]
async fn every_page_renders_and_escapes_billing_text() {
    let (base, _) = serve(Some(TOKEN)).await;
    for path in ["/", "/alerts/f00dfeed", "/rules", "/sources"] {
        let (status, html) = get(&format!("{base}{path}")).await;
        assert_eq!(status, 200, "{path}: {html}");
        assert!(html.contains(r#"name="viewport""#), "{path}");
        assert!(
            !html.contains(HOSTILE),
            "{path} shows raw markup from a label"
        );
    }
    let (_, html) = get(&format!("{base}/alerts/f00dfeed")).await;
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains(r#"id="silence""#) && html.contains(r#"type="password""#));
    let (_, overview) = get(&format!("{base}/")).await;
    assert!(
        overview.contains(r#"href="/alerts/f00dfeed""#),
        "{overview}"
    );
    let (status, missing) = get(&format!("{base}/alerts/nope")).await;
    assert_eq!(status, 404);
    assert!(missing.contains("no alert with fingerprint"), "{missing}");
}

#[tokio::test]
async fn the_silence_form_checks_the_token_and_input_then_redirects() {
    let (base, store) = serve(Some(TOKEN)).await;
    let url = format!("{base}/alerts/f00dfeed/silence");
    let form = |duration, token| {
        vec![
            ("duration", duration),
            ("comment", "looking into it"),
            ("created_by", "ana"),
            ("token", token),
        ]
    };

    let r = post_form(&url, &form("2h", "wrong")).await;
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap().contains(TOKEN));
    assert_eq!(
        post_form(&url, &form("2h", "")).await.status(),
        401,
        "no token at all"
    );
    for bad in ["soon", "0s", "365d", ""] {
        let r = post_form(&url, &form(bad, TOKEN)).await;
        assert_eq!(r.status(), 400, "{bad:?}");
        let page = r.text().await.unwrap();
        assert!(
            page.contains("duration") && page.contains("<html"),
            "{page}"
        );
    }
    let r = post_form(
        &url,
        &[
            ("duration", "2h"),
            ("comment", " "),
            ("created_by", "ana"),
            ("token", TOKEN),
        ],
    )
    .await;
    assert_eq!(r.status(), 400, "the API's own checks apply");
    assert!(
        store.silences().unwrap().is_empty(),
        "nothing stored by failed posts"
    );

    let r = post_form(&url, &form("90m", TOKEN)).await;
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("/alerts/f00dfeed?silenced="),
        "{location}"
    );
    let silences = store.silences().unwrap();
    assert_eq!(silences.len(), 1);
    let mut matchers = silences[0].matchers.clone();
    matchers.sort();
    assert_eq!(
        matchers,
        vec![
            format!("account=\"{}\"", HOSTILE.replace('"', "\\\"")),
            "alertname=\"unit-cost\"".to_string()
        ]
    );
    let minutes = silences[0]
        .ends_at
        .duration_since(silences[0].starts_at)
        .as_mins();
    assert!((89..=90).contains(&minutes), "{minutes}");

    // The bearer header works in place of the field; the page then shows it silenced.
    let r = client()
        .post(&url)
        .bearer_auth(TOKEN)
        .form(&[("duration", "1h"), ("comment", "c"), ("created_by", "b")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (_, page) = get(&format!("{base}{location}")).await;
    assert!(
        page.contains(r#"id="silenced""#) && page.contains(r#"id="notice""#),
        "{page}"
    );
    let (_, overview) = get(&format!("{base}/")).await;
    assert!(overview.contains(">silenced<"), "{overview}");
}

#[tokio::test]
async fn without_a_token_the_form_explains_and_refuses() {
    let (base, store) = serve(None).await;
    let (_, page) = get(&format!("{base}/alerts/f00dfeed")).await;
    assert!(
        page.contains("Silencing from this page is disabled"),
        "{page}"
    );
    assert!(!page.contains(r#"type="password""#));
    let r = post_form(
        &format!("{base}/alerts/f00dfeed/silence"),
        &[
            ("duration", "2h"),
            ("comment", "c"),
            ("created_by", "b"),
            ("token", "x"),
        ],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(store.silences().unwrap().is_empty());
}

#[tokio::test]
async fn the_sources_page_shows_each_accounts_last_poll_and_failures() {
    let metrics = Arc::new(Metrics::new());
    let polled: Timestamp = "2026-11-25T09:00:00Z".parse().unwrap();
    metrics.poll_succeeded("rackspace-us", "020-1001", 0.2, polled);
    metrics.poll_failed("rackspace-us", "020-2002", "auth", 0.1);
    let (base, _) = serve_with(None, metrics).await;
    let (status, html) = get(&format!("{base}/sources")).await;
    assert_eq!(status, 200);
    let row = |account: &str| {
        let at = html
            .find(account)
            .unwrap_or_else(|| panic!("{account} missing: {html}"));
        html[at..]
            .split("</tr>")
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        row("020-1001").contains("2026-11-25 09:00"),
        "{}",
        row("020-1001")
    );
    let failing = row("020-2002");
    assert!(
        failing.contains("never") && failing.contains("auth: 1"),
        "{failing}"
    );
}
