//! Issue 11: the alert pages in a real browser. `spendwatch demo` (the real binary) runs
//! the pipeline; headless Chromium (Debian's `chromium` + `chromium-driver`), driven through
//! WebDriver, reads the overview, an alert's chart, band, contributors and history, checks
//! that no page scrolls sideways on a phone, and silences an alert with the page's form.
//! Screenshots go to `target/browser-artefacts/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::{BIN, Proc, demo_lock, eventually, free_addr, init};

/// The phone the pages must fit (an iPhone X/11 Pro viewport in CSS pixels).
const PHONE: (u64, u64) = (375, 812);

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// `target/browser-artefacts/`, next to the binary's profile directory.
fn artefacts_dir() -> PathBuf {
    let dir = Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("browser-artefacts"))
        .unwrap_or_else(|| PathBuf::from("target/browser-artefacts"));
    std::fs::create_dir_all(&dir).expect("create target/browser-artefacts");
    dir
}

async fn screenshot(browser: &Client, name: &str, saved: &mut Vec<PathBuf>) {
    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    let path = artefacts_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    println!("screenshot: {}", path.display());
    saved.push(path);
}

/// A headless Chromium session; `phone` emulates the phone's viewport exactly.
async fn session(driver: &str, chromium: &Path, phone: bool) -> Client {
    let mut options = json!({
        "binary": chromium.to_string_lossy(),
        // Root in a container: no sandbox; /dev/shm may be tiny.
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", "--hide-scrollbars"],
    });
    if phone {
        options["mobileEmulation"] = json!({
            "deviceMetrics": {"width": PHONE.0, "height": PHONE.1, "pixelRatio": 2.0, "touch": true},
        });
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .unwrap_or_else(|e| panic!("WebDriver session at {driver}: {e}"))
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
}

async fn count(browser: &Client, css: &str) -> usize {
    browser
        .find_all(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .len()
}

/// The first active alert of `rule` (and `level`, for budgets) from the API.
async fn firing(base: &str, rule: &str, level: Option<&str>) -> Option<String> {
    let body: serde_json::Value = reqwest::get(format!("{base}/api/v1/alerts"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| {
            a["rule"] == rule
                && a["state"] == "firing"
                && level.is_none_or(|l| a["labels"]["level"] == l)
        })
        .and_then(|a| a["fingerprint"].as_str().map(String::from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The lock serializes whole tests that run a demo; no task of this runtime takes it.
#[allow(clippy::await_holding_lock)]
async fn alert_pages_work_in_headless_chromium() {
    init();
    let (Some(chromedriver), Some(chromium)) = (on_path("chromedriver"), on_path("chromium"))
    else {
        let why = "chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver; .ci/run installs them)";
        assert!(std::env::var_os("CI").is_none(), "{why}");
        println!("skipped alert_pages_work_in_headless_chromium: {why}");
        return;
    };
    let _one_demo_at_a_time = demo_lock();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("demo");

    // A month per minute: the budget's 50 % level fires mid-month and stays firing to the
    // month's end; the SAKURA unit-cost alert fires on JST day 18.
    let addr = free_addr();
    let mut demo = Proc::spawn(
        Command::new(BIN)
            .args(["demo", "--duration", "900s", "--speed", "43200", "--listen"])
            .arg(addr.to_string())
            .arg("--keep")
            .arg(&kept),
        dir.path().join("demo.log"),
    );
    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("{base}/readyz"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        demo.assert_running("spendwatch demo");
        assert!(
            Instant::now() < deadline,
            "the demo was not ready in 30 s:\n{}",
            demo.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = std::fs::read_to_string(kept.join(spendwatch::demo::API_TOKEN_FILE))
        .expect("the demo writes its API token");

    let driver_port = free_addr().port();
    let mut driver_proc = Proc::spawn(
        Command::new(&chromedriver).arg(format!("--port={driver_port}")),
        dir.path().join("chromedriver.log"),
    );
    let driver = format!("http://127.0.0.1:{driver_port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        driver_proc.assert_running("chromedriver");
        let status: Option<serde_json::Value> = match reqwest::get(format!("{driver}/status")).await
        {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        if status.is_some_and(|s| s["value"]["ready"] == true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver not ready in 20 s:\n{}",
            driver_proc.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let browser = session(&driver, &chromium, false).await;
    let mut saved = Vec::new();

    // The overview lists the firing budget alert, linked to its page.
    let budget = eventually(
        "monthly-budget-usd at 50 % to fire",
        Duration::from_secs(120),
        || firing(&base, "monthly-budget-usd", Some("50")),
    )
    .await;
    browser.goto(&format!("{base}/")).await.unwrap();
    let row = format!("#alerts tr[data-fingerprint='{budget}']");
    let row_text = text_of(&browser, &row).await;
    assert!(row_text.contains("firing"), "{row_text}");
    assert_eq!(
        count(&browser, &format!("{row} a[href='/alerts/{budget}']")).await,
        1,
        "the row links to the alert page"
    );
    assert!(
        text_of(&browser, "#sources").await.contains("000000526782"),
        "sources with their newest data"
    );
    screenshot(&browser, "overview", &mut saved).await;

    // Silence it from its page: the form posts, the server answers 303 to the alert page.
    browser
        .goto(&format!("{base}/alerts/{budget}#silence"))
        .await
        .unwrap();
    for (field, value) in [
        ("#comment", "browser test: budget reviewed"),
        ("#created_by", "it-browser"),
        ("#token", token.trim()),
    ] {
        browser
            .find(Locator::Css(field))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    browser
        .find(Locator::Css("#silence button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(
        "the redirect back to the alert page",
        Duration::from_secs(10),
        || async {
            let url = browser.current_url().await.ok()?;
            (url.path() == format!("/alerts/{budget}")
                && url.query().is_some_and(|q| q.starts_with("silenced=")))
            .then_some(())
        },
    )
    .await;
    assert!(text_of(&browser, "#notice").await.contains("created"));
    assert_eq!(
        count(&browser, "#silenced").await,
        1,
        "the page shows it silenced"
    );
    screenshot(&browser, "alert-silenced", &mut saved).await;
    browser.goto(&format!("{base}/")).await.unwrap();
    let row_text = text_of(&browser, &row).await;
    assert!(
        row_text.contains("silenced"),
        "the overview shows it silenced: {row_text}"
    );
    screenshot(&browser, "overview-silenced", &mut saved).await;

    // The traffic-relative alert: chart with the band and non-empty series, contributors,
    // history. Its page stays after it resolves, so catching it firing once is enough.
    let ratio = eventually("sakura-unit-cost to fire", Duration::from_secs(180), || {
        firing(&base, "sakura-unit-cost", None)
    })
    .await;
    browser
        .goto(&format!("{base}/alerts/{ratio}"))
        .await
        .unwrap();
    assert!(
        count(&browser, "#chart svg.chart").await >= 3,
        "unit cost, spend, traffic"
    );
    let band_points = browser
        .execute(
            "return Array.from(document.querySelectorAll('#chart polygon.band')).map(p => p.getAttribute('points'))",
            vec![],
        )
        .await
        .unwrap();
    let bands: Vec<&str> = band_points
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        bands.iter().any(|p| p.split(' ').count() >= 4),
        "a band polygon with an area: {bands:?}"
    );
    let paths = browser
        .execute(
            "return Array.from(document.querySelectorAll('#chart path.series')).map(p => [p.getAttribute('class'), p.getAttribute('d'), p.getTotalLength()])",
            vec![],
        )
        .await
        .unwrap();
    for class in ["series-cost", "series-numerator", "series-denominator"] {
        assert!(
            paths.as_array().unwrap().iter().any(|p| {
                p[0].as_str().is_some_and(|c| c.contains(class))
                    && p[1].as_str().is_some_and(|d| d.contains('L'))
                    && p[2].as_f64().is_some_and(|len| len > 10.0)
            }),
            "{class} drawn: {paths}"
        );
    }
    assert_eq!(count(&browser, "#chart rect.alert-interval").await, 3);
    let contributors = text_of(&browser, "#contributors table").await;
    assert!(
        contributors.contains("サーバ/プラン/4Core-8GB") && contributors.contains("+¥"),
        "{contributors}"
    );
    let history = text_of(&browser, "#state-history").await;
    assert!(
        history.contains("firing since") && history.contains("UTC"),
        "{history}"
    );
    screenshot(&browser, "alert", &mut saved).await;
    browser.close().await.unwrap();

    // On a phone: nothing scrolls sideways, on every page.
    let phone = session(&driver, &chromium, true).await;
    for (name, path) in [
        ("phone-overview", "/".to_string()),
        ("phone-alert", format!("/alerts/{ratio}")),
        ("phone-alert-budget", format!("/alerts/{budget}")),
        ("phone-rules", "/rules".to_string()),
        ("phone-sources", "/sources".to_string()),
    ] {
        phone.goto(&format!("{base}{path}")).await.unwrap();
        let widths = phone
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth]",
                vec![],
            )
            .await
            .unwrap();
        let (scroll, inner) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
        assert_eq!(inner, PHONE.0, "{path}: the phone viewport");
        assert!(
            scroll <= inner,
            "{path}: the page is {scroll} px wide on a {inner} px screen"
        );
        screenshot(&phone, name, &mut saved).await;
    }
    phone.close().await.unwrap();

    demo.assert_running("spendwatch demo");
    println!(
        "browser test: {} screenshots in {}, {:.1} s",
        saved.len(),
        artefacts_dir().display(),
        started.elapsed().as_secs_f64()
    );
}
