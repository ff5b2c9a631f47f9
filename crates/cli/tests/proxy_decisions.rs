//! `tollgate proxy` with `[identity]` and a decision log, through the real binaries on the
//! embedded devnet: a sanctioned buyer's paid request is refused (`tollgate pay` exits 5, the
//! buyer keeps its money) and the refusal is written to the SQLite decision store — without
//! the operator token the buyer sent.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tollgate::server::DecisionResult;
use tollgate_identity::DecisionStore;

mod support;

const TOKEN: &str = "op_token_never_stored_5d1e";

fn tollgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
}

/// `tollgate devnet` as a child process, its facts read from stdout; killed when dropped.
struct DevnetProcess {
    child: std::process::Child,
    facts: serde_json::Value,
}

impl DevnetProcess {
    fn start(write_configs: &Path) -> Self {
        let mut child = tollgate()
            .args(["devnet", "--port", "0", "--write-configs"])
            .arg(write_configs)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut text = String::new();
        let facts = loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                let _ = child.kill();
                panic!("devnet exited before printing its facts: {text}");
            }
            text.push_str(&line);
            if line.trim_end() == "}" {
                break serde_json::from_str(&text).unwrap();
            }
        };
        std::thread::spawn(move || for _ in stdout.lines() {});
        Self { child, facts }
    }
}

impl Drop for DevnetProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_paid_request_is_written_to_the_decision_store() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    let devnet = DevnetProcess::start(&local);
    let seller = devnet.facts["accounts"][9]["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let buyer = devnet.facts["accounts"][1]["address"]
        .as_str()
        .unwrap()
        .to_owned();

    let (_facilitator, facilitator_url) = support::start_facilitator(
        &local.join("facilitator.toml"),
        &[("TOLLGATE_LISTEN", "127.0.0.1:0")],
    );

    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/weather",
        axum::routing::get(|| async { "sunny, 24 degrees" }),
    );
    tokio::spawn(async move { axum::serve(upstream, app).await.unwrap() });

    let gateway_toml = local.join("gateway.toml");
    let init = tollgate()
        .args(["init", "--devnet-json"])
        .arg(local.join("devnet.json"))
        .args(["--pay-to", &seller])
        .args(["--upstream", &upstream_url])
        .args(["--facilitator", &facilitator_url])
        .arg("--output")
        .arg(&gateway_toml)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    // The buyer is on the seller's sanctions list.
    let sanctions = dir.path().join("sanctioned.txt");
    std::fs::write(&sanctions, format!("# test list\n{buyer}\n")).unwrap();
    let store = dir.path().join("decisions.sqlite");
    let mut config = std::fs::read_to_string(&gateway_toml).unwrap();
    config.push_str(&format!(
        "\n[identity]\ndecisions = {{ sqlite = {:?} }}\n[identity.policy]\nrequire_sanctions_clear = true\n[identity.provider]\nsanctions_file = {:?}\n",
        store.display().to_string(),
        sanctions.display().to_string(),
    ));
    std::fs::write(&gateway_toml, config).unwrap();

    let mut proxy = support::Running::spawn(
        tollgate()
            .args(["proxy", "--config"])
            .arg(&gateway_toml)
            .env("TOLLGATE_LISTEN", "127.0.0.1:0"),
    );
    let proxy_url = proxy
        .wait_for_line("tollgate proxy listening on ")
        .split(',')
        .next()
        .unwrap()
        .to_owned();

    let token = devnet.facts["token"]["address"].as_str().unwrap();
    let asset_flag = format!(
        "{}/{}/USDC/6",
        devnet.facts["network"].as_str().unwrap(),
        token
    );
    let mut pay = tollgate();
    pay.arg("pay")
        .arg("--key-file")
        .arg(local.join("payer.key"))
        .args(["--asset", &asset_flag, "--max", "0.01 USDC", "-y"])
        .args([
            "--identity-header",
            "X-Operator-Token=env:TEST_OPERATOR_TOKEN",
        ])
        .args(["--identity-for", &seller])
        .arg("--ledger")
        .arg(dir.path().join("spend.db"))
        .arg(format!("{proxy_url}/weather"))
        .env("TEST_OPERATOR_TOKEN", TOKEN)
        .stdin(Stdio::null());
    let paid = tokio::task::spawn_blocking(move || pay.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&paid.stderr);
    assert_eq!(paid.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("require_sanctions_clear"), "{stderr}");

    // The writer is asynchronous: wait (bounded) for the row.
    let reader = DecisionStore::sqlite(&store).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let rows = reader.recent(10).await.unwrap();
        if !rows.is_empty() {
            break rows;
        }
        assert!(Instant::now() < deadline, "no decision stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rows.len(), 1, "{rows:?}");
    let d = &rows[0].decision;
    assert_eq!(d.payer.to_ascii_lowercase(), buyer.to_ascii_lowercase());
    assert_eq!(d.result, DecisionResult::Refused);
    assert_eq!(d.target, "GET /weather");
    assert_eq!(
        d.network.to_string(),
        devnet.facts["network"].as_str().unwrap()
    );
    assert!(!d.cached);
    assert!(
        d.checks
            .iter()
            .any(|c| c.rule == "require_sanctions_clear" && !c.passed),
        "{d:?}"
    );
    proxy.kill_9();
    let bytes = std::fs::read(&store).unwrap();
    assert!(
        !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
        "the operator token reached the store"
    );
}
