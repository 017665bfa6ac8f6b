//! The audit page (`/audit`) in a real browser: headless Chromium driven through WebDriver
//! (Debian's `chromium` and `chromium-driver`, `scripts/setup/09-chromium.sh`) through the
//! smart-city scenario's audit: sign in, search the acknowledgement, open its lineage, follow a
//! link to a transaction and back, download the evidence bundle and verify it offline. A
//! screenshot is saved under `$CARGO_TARGET_TMPDIR/audit-page/` for a person to look at.
//!
//! Without the browser the test is skipped loudly, or fails when `TOM_REQUIRE_BROWSER=1` (CI).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

const TOM: &str = env!("CARGO_BIN_EXE_tom");
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tom(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(TOM)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("TOM_TOKEN")
        .env_remove("TOM_GATEWAY")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn serve(data_dir: &Path) -> (Killed, String) {
    let mut child = Command::new(TOM)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("tom serve exited").unwrap();
        if let Some(rest) = line.strip_prefix("TOM gateway listening on ") {
            break rest.split(' ').next().unwrap().to_owned();
        }
    };
    (Killed(child), url)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A WebDriver session over plain HTTP.
struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request.send().await.unwrap();
        let status = reply.status();
        let value: Value = reply.json().await.unwrap();
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {value}"
        );
        value["value"].clone()
    }
    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn go(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }
    /// The first element `css` selects, waiting up to 10 s for it (a page may still be loading
    /// after a click that submitted a form).
    async fn find(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            let reply = self
                .http
                .post(format!("{}/element", self.base))
                .json(&json!({ "using": "css selector", "value": css }))
                .send()
                .await
                .unwrap();
            let ok = reply.status().is_success();
            let v: Value = reply.json().await.unwrap();
            if ok {
                return v["value"][ELEMENT].as_str().unwrap().to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no element {css}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    async fn find_all(&self, css: &str) -> Vec<String> {
        let v = self
            .post(
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_owned())
            .collect()
    }
    async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.get(&format!("/element/{e}/text"))
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }
    async fn attr(&self, element: &str, name: &str) -> String {
        self.get(&format!("/element/{element}/attribute/{name}"))
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
    async fn click(&self, element: &str) {
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }
    async fn type_in(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{e}/value"), json!({ "text": text }))
            .await;
    }
    async fn source(&self) -> String {
        self.get("/source").await.as_str().unwrap().to_owned()
    }
    async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap().to_owned()
    }
    async fn screenshot(&self, path: &Path) {
        let png = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_audits_the_smart_city_incident_in_a_browser() {
    let (Some(chromium), Some(driver)) = (which("chromium"), which("chromedriver")) else {
        let message =
            "chromium and chromedriver are not installed: run scripts/setup/09-chromium.sh";
        if std::env::var("TOM_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("TOM_REQUIRE_BROWSER=1 but {message}");
        }
        eprintln!("SKIPPED an_auditor_audits_the_smart_city_incident_in_a_browser: {message}");
        return;
    };
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("audit-page");
    std::fs::create_dir_all(&out_dir).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();

    // The smart-city scenario on a served gateway.
    let data = dir.path().join("data");
    let (ok, out, err) = tom(&["demo", "install", "--data-dir", data.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let (_server, url) = serve(&data);
    let credentials = data.join("demo-credentials.json");
    let (ok, out, err) = tom(&[
        "demo",
        "smart-city",
        "--gateway",
        &url,
        "--credentials",
        credentials.to_str().unwrap(),
    ]);
    assert!(ok, "{out}\n{err}");
    let ack = out
        .split("Incident audit: how did ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the demo names the acknowledgement")
        .to_owned();
    let tokens: Value =
        serde_json::from_str(&std::fs::read_to_string(&credentials).unwrap()).unwrap();
    let token = tokens["tokens"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(name, _)| name.contains("auditor"))
        .and_then(|(_, t)| t.as_str())
        .expect("the demo has an auditor")
        .to_owned();

    // Anonymous callers get the sign-in form and nothing of the ledger.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        format!("/audit?id={ack}"),
        format!("/audit/evidence/{ack}"),
        "/audit".to_owned(),
    ] {
        let reply = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(reply.status(), 401, "{path}");
        let body = reply.text().await.unwrap();
        assert!(body.contains("name=\"token\""), "{path}: {body}");
        assert!(!body.contains(&ack), "{path} leaks the id: {body}");
    }
    let reply = http
        .get(format!("{url}/audit?id={ack}"))
        .header("Cookie", "tom_audit=tom_0000")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 401);
    // A hostile id never reaches the page (the id grammar refuses it).
    let reply = http
        .get(format!("{url}/audit?id=%3Cscript%3Ealert(1)%3C/script%3E"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    assert!(!reply.text().await.unwrap().contains("<script>"));

    // The browser.
    let port = free_port();
    let driver = Killed(
        Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let driver_url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while http
        .get(format!("{driver_url}/status"))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let session = reqwest::Client::new()
        .post(format!("{driver_url}/session"))
        .json(&json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1800"],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            },
        } } }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let id = session["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no WebDriver session: {session}"))
        .to_owned();
    let b = Browser {
        http: reqwest::Client::new(),
        base: format!("{driver_url}/session/{id}"),
    };
    audit(&b, &url, &ack, &token, &downloads, &out_dir).await;
    let _ = b.call(reqwest::Method::DELETE, "", None).await;
    drop(driver);
}

async fn audit(b: &Browser, url: &str, ack: &str, token: &str, downloads: &Path, out: &Path) {
    // Sign in.
    b.go(&format!("{url}/audit")).await;
    assert!(b.source().await.contains("Sign in"));
    b.type_in("#token", token).await;
    let sign_in = b.find("#sign-in").await;
    b.click(&sign_in).await;
    let who = b.text(".who span").await;
    assert!(who.starts_with("signed in as "), "{who}");

    // Search the acknowledgement.
    b.type_in("#q", ack).await;
    let go = b.find("#go").await;
    b.click(&go).await;
    assert_eq!(b.text("#subject").await, ack);
    let timeline = b.text("#timeline").await;
    assert!(timeline.contains("newest first"), "{timeline}");
    assert!(timeline.contains("PROV-DATA"), "{timeline}");
    let report = b.text("#report").await;
    assert!(
        report.contains(&format!("INCIDENT REPORT: {ack}")),
        "{report}"
    );
    assert!(report.contains("evidence verified"), "{report}");

    // Open the lineage: the SVG has the subject and its inputs, each entity a link.
    let lineage = b.find("a[href='#lineage']").await;
    b.click(&lineage).await;
    let nodes = b.find_all("#lineage-graph a.node-link").await;
    assert!(nodes.len() >= 3, "{} linked nodes", nodes.len());
    let mut hrefs = Vec::new();
    for n in &nodes {
        hrefs.push(b.attr(n, "href").await);
    }
    assert!(
        hrefs
            .iter()
            .any(|h| h.ends_with(&format!("/audit?id={ack}"))),
        "{hrefs:?}"
    );
    let edges = b.find_all("#lineage-graph a[href^='/audit/tx/']").await;
    assert!(!edges.is_empty(), "edge labels link to transactions");
    let svg = b.source().await;
    assert!(
        svg.contains("wasGeneratedBy"),
        "the lineage shows generation"
    );
    b.screenshot(&out.join("audit-page.png")).await;

    // Follow a link: a relation's transaction, then the entity it is about.
    let tx_link = b.find("ul.relations a.tx").await;
    let tx_href = b.attr(&tx_link, "href").await;
    b.click(&tx_link).await;
    assert!(b.url().await.contains("/audit/tx/"), "{tx_href}");
    let tx_id = b.text("#tx-id").await;
    assert!(tx_href.ends_with(&tx_id), "{tx_href} vs {tx_id}");
    let kind = b.text("#record-kind").await;
    assert!(!kind.is_empty());
    b.screenshot(&out.join("audit-transaction.png")).await;
    let subject = b.find("a.subject").await;
    b.click(&subject).await;
    assert!(b.url().await.contains("/audit?id="));
    assert!(!b.text("#subject").await.is_empty());

    // Download the evidence bundle of the acknowledgement and verify it offline.
    b.go(&format!("{url}/audit?id={ack}")).await;
    let download = b.find("#download").await;
    b.click(&download).await;
    let wanted = downloads.join(format!("{ack}.evidence.json"));
    let started = Instant::now();
    while !wanted.is_file() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no download in {}: {:?}",
            downloads.display(),
            std::fs::read_dir(downloads)
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bytes = std::fs::read(&wanted).unwrap();
    let bundle: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(bundle["subject"], ack);
    let verified =
        tom_gateway::evidence::verify(&bytes, &tom_gateway::evidence::Options::default());
    assert!(
        verified.is_ok(),
        "{:?}",
        verified.err().map(|f| f.to_string())
    );

    // Sign out: the page is gone again.
    let sign_out = b.find(".who button").await;
    b.click(&sign_out).await;
    b.go(&format!("{url}/audit?id={ack}")).await;
    let page = b.source().await;
    assert!(page.contains("name=\"token\""));
    assert!(!page.contains("INCIDENT REPORT"));
    eprintln!("screenshots: {}", out.display());
}
