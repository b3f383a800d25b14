//! The web dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`;
//! `.ci/run` installs them): the page loads without credentials, signs in with the cookie
//! typed into its form, and shows the peer a second node created, live over the WebSocket.
//! The screenshot is written to the test's temp dir (and to `$NODED_DASHBOARD_SCREENSHOT`
//! when set, which is how docs/dashboard.png is made).

mod common;

use common::{wait_until, TestNode, DEADLINE};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// W3C WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver on an ephemeral loopback port, killed on drop.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Driver {
    fn start() -> Driver {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: install Debian's chromium and chromium-driver \
                 (apt-get install chromium chromium-driver; .ci/run does)"
            );
        }
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("chromedriver said where it listens")
                .unwrap();
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                break rest.trim_end_matches('.').parse::<u16>().expect("a port");
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Driver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// One WebDriver command; returns its `value`.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut stream = TcpStream::connect(self.addr).expect("connect to chromedriver");
        stream.set_read_timeout(Some(DEADLINE * 3)).unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        // chromedriver keeps the connection open: read the head, then Content-Length bytes.
        let mut reader = BufReader::new(stream);
        let mut length = None;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("a reply header");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let mut body = vec![0u8; length.expect("chromedriver sends Content-Length")];
        reader.read_exact(&mut body).expect("the reply body");
        let body = String::from_utf8_lossy(&body).to_string();
        let json: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"));
        let value = json["value"].clone();
        assert!(
            value.get("error").is_none(),
            "{method} {path} failed: {value}"
        );
        value
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session, closed on drop.
struct Browser<'a> {
    driver: &'a Driver,
    id: String,
}

impl<'a> Browser<'a> {
    fn open(driver: &'a Driver, profile: &std::path::Path) -> Browser<'a> {
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--window-size=1280,1100".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let value = driver.command("POST", "/session", Some(capabilities));
        Browser {
            driver,
            id: value["sessionId"]
                .as_str()
                .expect("a session id")
                .to_string(),
        }
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.driver
            .command(method, &format!("/session/{}{path}", self.id), body)
    }

    fn element(&self, css: &str) -> String {
        let found = self.command(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    fn script(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }
}

impl Drop for Browser<'_> {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.driver
                .command("DELETE", &format!("/session/{}", self.id), None)
        }));
    }
}

#[test]
fn the_dashboard_signs_in_and_shows_the_peer_a_second_node_created() {
    let node = TestNode::start(&[]);
    node.rpc("generate", json!([3])).expect("generate");
    let other = TestNode::start(&["--addnode", &node.p2p_addr().to_string()]);
    let other_id = other.getinfo()["nodeid"].as_str().unwrap().to_string();
    wait_until(DEADLINE, "the nodes to connect", || {
        node.ready_peers().len() == 1
    });

    let scratch = tempfile::tempdir().unwrap();
    let driver = Driver::start();
    let browser = Browser::open(&driver, &scratch.path().join("profile"));
    let page = format!("http://{}/", node.rpc_addr);
    browser.command("POST", "/url", Some(json!({"url": page})));

    // Loaded without credentials: the sign-in form, and no dashboard yet.
    wait_until(DEADLINE, "the sign-in form", || {
        browser.script("return !document.getElementById('login').hidden") == true
    });
    assert_eq!(
        browser.script("return document.getElementById('dashboard').hidden"),
        true
    );

    let input = browser.element("#credentials");
    browser.command(
        "POST",
        &format!("/element/{input}/value"),
        Some(json!({"text": node.cookie})),
    );
    let button = browser.element("#login-button");
    browser.command("POST", &format!("/element/{button}/click"), Some(json!({})));

    // Signed in: the node's own facts, and the peer the second node created.
    let peers_text =
        "const t = document.querySelector('#peers tbody'); return t ? t.innerText : ''";
    wait_until(DEADLINE, "the peer in the dashboard's table", || {
        browser
            .script(peers_text)
            .as_str()
            .unwrap_or("")
            .contains(&other_id)
    });
    // getinfo and getpeerinfo answer in either order: wait for the node's cards too.
    let nodeid = node.getinfo()["nodeid"].clone();
    wait_until(
        DEADLINE,
        "the node id and tip height in their cards",
        || {
            browser.script("return document.getElementById('nodeid').textContent") == nodeid
                && browser.script("return document.getElementById('blocks').textContent") == "3"
        },
    );
    assert_eq!(
        browser.script("return document.getElementById('status').textContent"),
        "live"
    );
    // Live: a block mined now shows up without a reload.
    node.rpc("generate", json!([1])).expect("generate");
    wait_until(DEADLINE, "the new block in the recent blocks", || {
        browser.script("return document.querySelector('#recent-blocks tbody tr td').textContent")
            == "4"
    });

    // No secret kept in the page or its address.
    let url = browser.command("GET", "/url", None);
    assert_eq!(url, page);
    assert_eq!(
        browser.script("return document.getElementById('credentials').value"),
        ""
    );
    let html = browser.script("return document.documentElement.outerHTML");
    let secret = node.cookie.split_once(':').unwrap().1;
    assert!(!html.as_str().unwrap().contains(secret));

    // A bandwidth point needs two polls; wait for them so the picture shows the plot too.
    wait_until(Duration::from_secs(10), "a bandwidth sample", || {
        browser
            .script("return bandwidth.length")
            .as_u64()
            .unwrap_or(0)
            >= 2
    });
    let png = browser.command("GET", "/screenshot", None);
    let png = base64_decode(png.as_str().expect("a base64 screenshot"));
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = scratch.path().join("dashboard.png");
    std::fs::write(&path, &png).unwrap();
    println!(
        "dashboard screenshot: {} ({} bytes)",
        path.display(),
        png.len()
    );
    if let Some(copy) = std::env::var_os("NODED_DASHBOARD_SCREENSHOT") {
        std::fs::write(&copy, &png).unwrap();
        println!("copied to {}", std::path::Path::new(&copy).display());
    }
    drop(browser);
    // Keep the screenshot when asked to look at it.
    if std::env::var_os("NODED_KEEP_SCREENSHOT").is_some() {
        let kept = scratch.keep();
        println!("kept {}", kept.display());
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}
