//! The `continuum` binary as a user runs it: `serve` (and what it logs), `import`, `migrate`,
//! on SQLite and on PostgreSQL.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_continuum");

fn postgres_url() -> String {
    let admin = std::env::var("CONTINUUM_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("CONTINUUM_TEST_POSTGRES_URL is not set: run the tests with scripts/test")
    });
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let name = format!("continuum_cli_{}_{n}", std::process::id());
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

struct Server {
    child: Child,
    base: String,
    log: mpsc::Receiver<String>,
}

const ADMIN_PASSWORD: &str = "a long admin passphrase for tests";

/// Registers an API client with the CLI (in a database `migrate` creates, as a first start
/// would); returns (client_id, client_secret).
fn add_client(database: &str, scope: &str) -> (String, String) {
    let migrated = Command::new(BIN)
        .args(["migrate", "--database", database])
        .output()
        .unwrap();
    assert!(migrated.status.success());
    let out = Command::new(BIN)
        .args([
            "clients",
            "add",
            "--database",
            database,
            "--name",
            "cli-test",
            "--scope",
            scope,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    (field("client_id:"), field("client_secret:"))
}

fn token(base: &str, id: &str, secret: &str) -> String {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let root = base.trim_end_matches("/fhir");
    let (status, body) = http_with(
        "POST",
        &format!("{root}/auth/token"),
        Some("grant_type=client_credentials"),
        &[
            ("Authorization", &format!("Basic {basic}")),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

impl Server {
    fn start(database: &str) -> Server {
        Self::start_with(database, &[])
    }

    fn start_with(database: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
            .args(extra)
            .env("CONTINUUM_LOG", "info")
            .env("CONTINUUM_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start continuum serve");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut base = None;
        while base.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the server prints where it listens");
            if let Some(rest) = line.strip_prefix("Continuum is listening on ") {
                base = Some(rest.split_whitespace().next().unwrap().to_string());
            }
        }
        Server {
            child,
            base: base.unwrap(),
            log: rx,
        }
    }

    fn logs(&self) -> String {
        std::thread::sleep(Duration::from_millis(300));
        self.log.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http(method: &str, url: &str, body: Option<&str>, token: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    http_with(
        method,
        url,
        body,
        &[
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/fhir+json"),
        ],
    )
}

fn http_with(
    method: &str,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    // a tiny blocking HTTP/1.1 client keeps this test free of an async runtime
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    use std::io::{Read, Write};
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn serve_logs_without_phi(database: &str) {
    let (id, secret) = add_client(database, "system/*.cruds");
    let server = Server::start(database);
    let (status, _) = http(
        "GET",
        &format!("{}/Patient", server.base),
        None,
        "not-a-token",
    );
    assert_eq!(status, 401);
    let tok = token(&server.base, &id, &secret);
    let (status, _) = http(
        "POST",
        &format!("{}/Patient", server.base),
        Some(
            r#"{"resourceType":"Patient","name":[{"family":"Zyxwvutsrq"}],"birthDate":"2010-01-01"}"#,
        ),
        &tok,
    );
    assert_eq!(status, 201);
    let (status, body) = http(
        "GET",
        &format!("{}/Patient?family=Zyxwvutsrq", server.base),
        None,
        &tok,
    );
    assert_eq!(status, 200);
    assert!(body.contains("Zyxwvutsrq"));
    let logs = server.logs();
    assert!(
        logs.contains("request_id"),
        "logs carry request ids: {logs}"
    );
    assert!(
        logs.contains("interaction=\"create\"") || logs.contains("interaction=create"),
        "{logs}"
    );
    assert!(
        !logs.contains("Zyxwvutsrq"),
        "a patient name reached the logs: {logs}"
    );
    assert!(
        !logs.contains("2010-01-01"),
        "a birth date reached the logs: {logs}"
    );
    for secret_text in [secret.as_str(), tok.as_str(), ADMIN_PASSWORD] {
        assert!(
            !logs.contains(secret_text),
            "a secret reached the logs: {logs}"
        );
    }
    // key rotation: tokens signed by the old key keep working, new ones use the new key
    let rotated = Command::new(BIN)
        .args(["keys", "rotate", "--database", database])
        .output()
        .unwrap();
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let (status, _) = http(
        "GET",
        &format!("{}/Patient?family=Zyxwvutsrq", server.base),
        None,
        &tok,
    );
    assert_eq!(status, 200);
    let tok2 = token(&server.base, &id, &secret);
    let kid = |t: &str| {
        use base64::Engine as _;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_ne!(kid(&tok), kid(&tok2));
    let (status, _) = http(
        "GET",
        &format!("{}/Patient?family=Zyxwvutsrq", server.base),
        None,
        &tok2,
    );
    assert_eq!(status, 200);
    let root = server.base.trim_end_matches("/fhir").to_string();
    let (_, jwks) = http_with("GET", &format!("{root}/.well-known/jwks.json"), None, &[]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&jwks).unwrap()["keys"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

fn import_and_migrate(database: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ndjson = dir.path().join("patients.ndjson");
    let mut lines = String::new();
    for i in 0..1200 {
        lines.push_str(&format!("{{\"resourceType\":\"Patient\",\"id\":\"imp-{i}\",\"name\":[{{\"family\":\"Imported{i}\"}}]}}\n"));
    }
    lines.push_str("{\"resourceType\":\"Patient\",\"birthDate\":\"2020-02-30\"}\n");
    std::fs::write(&ndjson, lines).unwrap();
    let tx = dir.path().join("tx.json");
    std::fs::write(
        &tx,
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
          {"fullUrl":"urn:uuid:7e0c1a2b-0000-4000-8000-000000000001","request":{"method":"POST","url":"Organization"},"resource":{"resourceType":"Organization","name":"Imported Clinic"}},
          {"request":{"method":"PUT","url":"Practitioner/imp-dr"},"resource":{"resourceType":"Practitioner","id":"imp-dr"}},
          {"request":{"method":"POST","url":"PractitionerRole"},"resource":{"resourceType":"PractitionerRole","organization":{"reference":"urn:uuid:7e0c1a2b-0000-4000-8000-000000000001"},"practitioner":{"reference":"Practitioner/imp-dr"}}}]}"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["import", "--database", database])
        .arg(&ndjson)
        .arg(&tx)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("imported 1203 resources"),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("1 refused (not imported)"), "{stdout}");
    assert!(
        stderr.contains("patients.ndjson:1201"),
        "the rejected line is named: {stderr}"
    );
    assert!(
        !out.status.success(),
        "a rejected resource makes the import fail"
    );
    // importing again updates in place (ids are kept): stored ids and ids repeated within one
    // file become new versions in file order, new ones are created alongside
    let second = dir.path().join("second.ndjson");
    std::fs::write(
        &second,
        concat!(
            "{\"resourceType\":\"Patient\",\"id\":\"imp-0\",\"name\":[{\"family\":\"Renamed\"}]}\n",
            "{\"resourceType\":\"Patient\",\"id\":\"imp-new\",\"name\":[{\"family\":\"Fresh\"}]}\n",
            "{\"resourceType\":\"Patient\",\"id\":\"imp-new\",\"name\":[{\"family\":\"Fresher\"}]}\n",
            "{\"resourceType\":\"Patient\",\"id\":\"imp-0\",\"name\":[{\"family\":\"Renamed-again\"}]}\n",
            "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"weight\"},\"subject\":{\"reference\":\"Patient/imp-1\"}}\n",
        ),
    )
    .unwrap();
    let again = Command::new(BIN)
        .args(["import", "--database", database])
        .arg(&tx)
        .arg(&second)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let m = Command::new(BIN)
        .args(["migrate", "--database", database])
        .output()
        .unwrap();
    assert!(m.status.success());
    assert!(String::from_utf8_lossy(&m.stdout).contains("schema version"));
    let (id, secret) = add_client(database, "system/*.rs");
    let server = Server::start(database);
    let tok = token(&server.base, &id, &secret);
    let (_, body) = http(
        "GET",
        &format!("{}/Patient?name=imported&_summary=count", server.base),
        None,
        &tok,
    );
    assert!(body.contains("\"total\":1199"), "one was renamed: {body}");
    let (_, body) = http("GET", &format!("{}/Patient/imp-0", server.base), None, &tok);
    assert!(
        body.contains("\"versionId\":\"3\"") && body.contains("Renamed-again"),
        "{body}"
    );
    let (_, body) = http(
        "GET",
        &format!("{}/Patient/imp-new", server.base),
        None,
        &tok,
    );
    assert!(
        body.contains("\"versionId\":\"2\"") && body.contains("Fresher"),
        "{body}"
    );
    let (_, body) = http(
        "GET",
        &format!("{}/Observation?patient=imp-1&code:text=weight", server.base),
        None,
        &tok,
    );
    assert!(body.contains("\"total\":1"), "{body}");
    // the PUT updated in place; the unconditional POST created a second role
    let (_, body) = http(
        "GET",
        &format!("{}/Practitioner/imp-dr", server.base),
        None,
        &tok,
    );
    assert!(body.contains("\"versionId\":\"2\""), "{body}");
    let (_, body) = http(
        "GET",
        &format!("{}/PractitionerRole?practitioner=imp-dr", server.base),
        None,
        &tok,
    );
    assert!(body.contains("\"total\":2"), "{body}");
    // a read-only token cannot write
    let (status, _) = http(
        "POST",
        &format!("{}/Patient", server.base),
        Some(r#"{"resourceType":"Patient"}"#),
        &tok,
    );
    assert_eq!(status, 403);
    // the import and the reads are in the audit trail, and the chain verifies
    let v = Command::new(BIN)
        .args(["audit", "verify", "--database", database])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    assert!(String::from_utf8_lossy(&v.stdout).contains("audit chain intact"));
}

#[test]
fn serve_logs_without_phi_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    serve_logs_without_phi(&format!("sqlite://{}", dir.path().join("c.db").display()));
}

#[test]
fn serve_logs_without_phi_postgres() {
    serve_logs_without_phi(&postgres_url());
}

#[test]
fn import_and_migrate_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    import_and_migrate(&format!("sqlite://{}", dir.path().join("c.db").display()));
}

#[test]
fn import_and_migrate_postgres() {
    import_and_migrate(&postgres_url());
}

/// Runs SQL directly against the audit store, as someone with file or superuser access might:
/// `{e}` names the events table, `{r}` the index.
fn tamper(database: &str, sql: &str) {
    if let Some(path) = database.strip_prefix("sqlite://") {
        let audit = std::path::Path::new(path).with_file_name("c-audit.db");
        let c = rusqlite::Connection::open(audit).unwrap();
        c.execute_batch(
            &sql.replace("{e}", "audit_event")
                .replace("{r}", "audit_ref"),
        )
        .unwrap();
    } else {
        let mut c = postgres::Client::connect(database, postgres::NoTls).unwrap();
        c.batch_execute(
            &sql.replace("{e}", "audit.audit_event")
                .replace("{r}", "audit.audit_ref"),
        )
        .unwrap();
    }
}

fn verify(database: &str) -> (bool, String) {
    let v = Command::new(BIN)
        .args(["audit", "verify", "--database", database])
        .output()
        .unwrap();
    (
        v.status.success(),
        String::from_utf8_lossy(&v.stdout).to_string(),
    )
}

fn broken(database: &str, at: i64, why: &str) {
    let (ok, out) = verify(database);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("BROKEN at record {at} ")) && out.contains(why),
        "expected a break at {at} ({why}): {out}"
    );
}

fn audit_tampering_is_detected(database: &str) {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        let f = dir.path().join(format!("p{i}.ndjson"));
        std::fs::write(
            &f,
            format!("{{\"resourceType\":\"Patient\",\"id\":\"t{i}\"}}\n"),
        )
        .unwrap();
        assert!(
            Command::new(BIN)
                .args(["import", "--database", database])
                .arg(&f)
                .output()
                .unwrap()
                .status
                .success()
        );
    }
    // each import is audited, and so is the identity linkage it runs after loading
    let (ok, out) = verify(database);
    assert!(ok && out.contains("6 records verified"), "{out}");
    // an altered record
    tamper(
        database,
        "UPDATE {e} SET body = REPLACE(body, 'stored 1 resources', 'stored 9 resources') WHERE seq = 3",
    );
    broken(database, 3, "altered");
    tamper(
        database,
        "UPDATE {e} SET body = REPLACE(body, 'stored 9 resources', 'stored 1 resources') WHERE seq = 3",
    );
    assert!(verify(database).0);
    // an altered index (a patient added to, or hidden from, the accounting)
    tamper(
        database,
        "INSERT INTO {r} (kind, value, seq) VALUES ('patient', 'someone', 2)",
    );
    broken(database, 2, "index");
    tamper(database, "DELETE FROM {r} WHERE value = 'someone'");
    assert!(verify(database).0);
    // two records reordered
    tamper(
        database,
        "UPDATE {e} SET seq = -4 WHERE seq = 4; UPDATE {e} SET seq = 4 WHERE seq = 5; UPDATE {e} SET seq = 5 WHERE seq = -4;
         UPDATE {r} SET seq = -4 WHERE seq = 4; UPDATE {r} SET seq = 4 WHERE seq = 5; UPDATE {r} SET seq = 5 WHERE seq = -4;",
    );
    broken(database, 4, "reordered");
    tamper(
        database,
        "UPDATE {e} SET seq = -4 WHERE seq = 4; UPDATE {e} SET seq = 4 WHERE seq = 5; UPDATE {e} SET seq = 5 WHERE seq = -4;
         UPDATE {r} SET seq = -4 WHERE seq = 4; UPDATE {r} SET seq = 4 WHERE seq = 5; UPDATE {r} SET seq = 5 WHERE seq = -4;",
    );
    assert!(verify(database).0);
    // a record inserted after the last, chained to it
    tamper(
        database,
        "INSERT INTO {e} (seq, id, recorded, body, prev_hash, hash) SELECT 7, 'forged', 0, '{}', hash, 'f0' FROM {e} WHERE seq = 6",
    );
    broken(database, 7, "altered");
    tamper(database, "DELETE FROM {e} WHERE seq = 7");
    // a record inserted in the middle (the ones after it renumbered)
    tamper(
        database,
        "UPDATE {e} SET seq = seq + 100 WHERE seq >= 3; UPDATE {e} SET seq = seq - 99 WHERE seq >= 103;
         UPDATE {r} SET seq = seq + 100 WHERE seq >= 3; UPDATE {r} SET seq = seq - 99 WHERE seq >= 103;
         INSERT INTO {e} (seq, id, recorded, body, prev_hash, hash) SELECT 3, 'forged', 0, body, prev_hash, hash FROM {e} WHERE seq = 2;",
    );
    broken(database, 3, "removed, inserted or reordered");
    tamper(
        database,
        "DELETE FROM {e} WHERE id = 'forged'; UPDATE {e} SET seq = seq + 100 WHERE seq >= 4; UPDATE {e} SET seq = seq - 101 WHERE seq >= 104;
         UPDATE {r} SET seq = seq + 100 WHERE seq >= 4; UPDATE {r} SET seq = seq - 101 WHERE seq >= 104;",
    );
    assert!(verify(database).0, "{}", verify(database).1);
    // a record's time column moved (out of a date-filtered accounting)
    tamper(
        database,
        "UPDATE {e} SET recorded = recorded - 86400000 WHERE seq = 2",
    );
    broken(database, 2, "time columns");
    tamper(
        database,
        "UPDATE {e} SET recorded = recorded + 86400000 WHERE seq = 2",
    );
    assert!(verify(database).0);
    // a removed record
    tamper(database, "DELETE FROM {e} WHERE seq = 3");
    broken(database, 4, "removed");
}

#[test]
fn audit_tampering_is_detected_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    audit_tampering_is_detected(&format!("sqlite://{}", dir.path().join("c.db").display()));
}

#[test]
fn audit_tampering_is_detected_postgres() {
    audit_tampering_is_detected(&postgres_url());
}

#[test]
fn first_start_refuses_to_run_open() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("c.db").display());
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
        .env_remove("CONTINUUM_ADMIN_PASSWORD")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut token = None;
    let mut base = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        if let Some(t) = line.split("setup token (valid 24 h): ").nth(1) {
            token = Some(t.trim().to_string());
        }
        if let Some(rest) = line.strip_prefix("Continuum is listening on ") {
            base = Some(
                rest.split_whitespace()
                    .next()
                    .unwrap()
                    .trim_end_matches("/fhir")
                    .to_string(),
            );
            break;
        }
    }
    let (token, root) = (token.expect("a setup token is printed"), base.unwrap());
    // the setup page sets a CSRF cookie; post the form with it
    let (_, page) = http_with("GET", &format!("{root}/setup?token={token}"), None, &[]);
    assert!(page.contains("Create the first administrator"), "{page}");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let cookie = format!("continuum_csrf={csrf}");
    let form = format!("csrf={csrf}&token=wrong&username=root&password=a+very+good+passphrase");
    let (status, _) = http_with(
        "POST",
        &format!("{root}/setup"),
        Some(&form),
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
    );
    assert_eq!(status, 403);
    let form = format!("csrf={csrf}&token={token}&username=root&password=a+very+good+passphrase");
    let (status, body) = http_with(
        "POST",
        &format!("{root}/setup"),
        Some(&form),
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("was created"));
    // the token is used up
    let (status, _) = http_with(
        "POST",
        &format!("{root}/setup"),
        Some(&form),
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
    );
    assert_ne!(status, 200);
    let _ = child.kill();
    let _ = child.wait();
    let list = Command::new(BIN)
        .args(["users", "list", "--database", &database])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("root"));
}

/// Regression: tracing reported failed log writes with `eprintln!`, which panicked once the
/// server's stderr was closed, so every request answered 500.
#[test]
fn a_closed_stderr_does_not_break_requests() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("c.db").display());
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database", &database])
        .env("CONTINUUM_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut base = None;
    {
        let stderr = child.stderr.take().unwrap();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("Continuum is listening on ") {
                base = Some(rest.split_whitespace().next().unwrap().to_string());
                break;
            }
        }
    } // the read end of the pipe closes here
    let base = base.unwrap();
    for _ in 0..3 {
        let (status, _) = http_with("GET", &format!("{base}/metadata"), None, &[]);
        assert_eq!(status, 200);
        let (status, _) = http_with("GET", &format!("{base}/Patient"), None, &[]);
        assert_eq!(status, 401);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn bad_configuration_is_explained() {
    let out = Command::new(BIN)
        .args(["serve", "--database", "mysql://x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported database URL"));
    let out = Command::new(BIN)
        .args(["serve", "--listen", "nowhere"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not HOST:PORT"));
}

/// `continuum import` links the Patients it loaded (the bulk path does not link as it writes):
/// the same child registered twice — after a move — is linked, her twin sister is queued.
#[test]
fn import_links_what_it_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("c.db").display());
    let patient = |id: &str, given: &str, family: &str, line: &str| {
        format!(
            r#"{{"resourceType":"Patient","id":"{id}","name":[{{"family":"{family}","given":["{given}"]}}],"gender":"female","birthDate":"2013-05-02","address":[{{"use":"home","line":["{line}"],"city":"New London","state":"CT","postalCode":"06320"}}]}}"#
        )
    };
    let file = dir.path().join("p.ndjson");
    std::fs::write(
        &file,
        [
            patient("a", "Ana", "Núñez", "12 Ocean Avenue"),
            patient("b", "Ana", "Nunez", "48 Bank Street"),
            patient("t", "Zoe", "Núñez", "12 Ocean Avenue"),
        ]
        .join("\n"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["import", "--database", &database])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("identity linkage over 3 patients")
            && stdout.contains("1 linked, 2 for review"),
        "{stdout}"
    );
}

/// Runs the binary; returns (success, stdout, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn count(database_file: &std::path::Path, rtype: &str) -> i64 {
    let c = rusqlite::Connection::open(database_file).unwrap();
    c.query_row(
        "SELECT COUNT(*) FROM resources WHERE rtype = ?1 AND deleted = 0",
        [rtype],
        |r| r.get(0),
    )
    .unwrap()
}

/// A newcomer's mistakes at the command line are caught, each with words that say what to do.
#[test]
fn account_commands_check_what_they_are_given() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.db");
    let db = format!("sqlite://{}", file.display());
    // an account command never creates a database
    let (ok, _, err) = run(
        &["users", "add", "x", "--role", "auditor", "--database", &db],
        &[],
    );
    assert!(!ok && err.contains("there is no database at"), "{err}");
    assert!(!file.exists());
    let seed = dir.path().join("seed.json");
    std::fs::write(
        &seed,
        r#"{"resourceType":"Bundle","type":"collection","entry":[
          {"resource":{"resourceType":"Organization","id":"cc","name":"Connecticut Children's"}},
          {"resource":{"resourceType":"Patient","id":"p1","birthDate":"2015-01-01"}},
          {"resource":{"resourceType":"RelatedPerson","id":"rp1","patient":{"reference":"Patient/p1"}}}]}"#,
    )
    .unwrap();
    let (ok, out, err) = run(&["import", "--database", &db, seed.to_str().unwrap()], &[]);
    assert!(ok, "{out}{err}");
    let add = |extra: &[&str]| {
        let mut args = vec![
            "clients",
            "add",
            "--database",
            &db,
            "--name",
            "t",
            "--scope",
            "user/*.rs",
        ];
        args.extend_from_slice(extra);
        run(&args, &[])
    };
    let (ok, _, err) = add(&["--role", "coordinator@nowhere"]);
    assert!(!ok, "an organisation that does not exist");
    assert!(err.contains("there is no Organization/nowhere"), "{err}");
    assert!(
        err.contains("the organisations are: cc (Connecticut Children's)"),
        "{err}"
    );
    let (ok, _, err) = add(&["--role", "proxy"]);
    assert!(
        !ok && err.contains("the role proxy needs --fhir-user RelatedPerson/ID"),
        "{err}"
    );
    let (ok, _, err) = add(&["--role", "patient", "--fhir-user", "Patient/nope"]);
    assert!(!ok && err.contains("there is no Patient/nope"), "{err}");
    let (ok, _, err) = add(&[
        "--role",
        "proxy",
        "--fhir-user",
        "RelatedPerson/rp1",
        "--fhir-user",
        "Patient/p1",
    ]);
    assert!(
        !ok && err.contains("does not fit the roles: a proxy is a RelatedPerson"),
        "{err}"
    );
    let (ok, _, err) = add(&["--role", "clinician"]);
    assert!(!ok && err.contains("clinician@ORGANIZATION_ID"), "{err}");
    let (ok, _, err) = add(&["--role", "nurse@cc"]);
    assert!(!ok && err.contains("unknown role 'nurse'"), "{err}");
    // and a right one, its secret also written to a file for curl -u "$(cat FILE)"
    let creds = dir.path().join("parent-client");
    let (ok, out, err) = add(&[
        "--role",
        "proxy",
        "--fhir-user",
        "RelatedPerson/rp1",
        "--credentials-file",
        creds.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("client_id: "))
        .unwrap()
        .to_string();
    let written = std::fs::read_to_string(&creds).unwrap();
    assert!(written.starts_with(&format!("{id}:")) && written.trim_end().len() > id.len() + 20);
    let (_, list, _) = run(&["clients", "list", "--database", &db], &[]);
    let row = list.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(
        row.contains("active") && row.contains("proxy") && row.contains("RelatedPerson/rp1"),
        "{list}"
    );
    let (ok, out, _) = run(&["clients", "disable", &id, "--database", &db], &[]);
    assert!(ok && out.contains("its tokens no longer work"), "{out}");
    let (_, list, _) = run(&["clients", "list", "--database", &db], &[]);
    assert!(
        list.lines()
            .find(|l| l.starts_with(&id))
            .unwrap()
            .contains("disabled")
    );
    let (ok, _, _) = run(&["clients", "enable", &id, "--database", &db], &[]);
    assert!(ok);
    let (ok, _, err) = run(&["clients", "enable", "c-nobody", "--database", &db], &[]);
    assert!(!ok && err.contains("no client 'c-nobody'"), "{err}");
    // users are checked the same way
    let (ok, _, err) = run(
        &["users", "add", "mom", "--role", "proxy", "--database", &db],
        &[],
    );
    assert!(
        !ok && err.contains("needs --fhir-user RelatedPerson/ID"),
        "{err}"
    );

    // the help lists the roles, and link (which opens no database) takes no --database
    let (_, help, _) = run(&["users", "add", "--help"], &[]);
    for role in [
        "alliance-admin",
        "coordinator@ORG",
        "clinician@ORG",
        "referring-clinician@ORG",
        "patient",
        "proxy",
        "auditor",
    ] {
        assert!(help.contains(role), "{role} in: {help}");
    }
    let (_, help, _) = run(&["link", "--help"], &[]);
    assert!(!help.contains("--database"), "{help}");

    // a server running on another database than the one a command opens is pointed out
    let other = dir.path().join("other.db");
    let other_db = format!("sqlite://{}", other.display());
    let server = Server::start(&other_db);
    let listen = server
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/fhir")
        .to_string();
    let env = [("CONTINUUM_LISTEN", listen.as_str())];
    let (ok, _, err) = run(&["clients", "list", "--database", &db], &env);
    assert!(ok);
    assert!(
        err.contains(&format!(
            "the Continuum server on {listen} runs on another database"
        )),
        "{err}"
    );
    let (ok, _, err) = run(&["clients", "list", "--database", &other_db], &env);
    assert!(ok && !err.contains("another database"), "{err}");
}

/// A transaction Bundle is imported whole or not at all; refusals are reported in file order;
/// --dry-run checks everything and writes nothing.
#[test]
fn import_is_all_or_nothing_per_transaction_and_reports_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("i.db");
    let db = format!("sqlite://{}", file.display());
    let tx = dir.path().join("tx.json");
    std::fs::write(
        &tx,
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
          {"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient","name":[{"family":"Whole"}]}},
          {"request":{"method":"POST","url":"Patient"},"resource":{"resourceType":"Patient","gender":"f"}}]}"#,
    )
    .unwrap();
    let nd = dir.path().join("p.ndjson");
    std::fs::write(
        &nd,
        concat!(
            "{\"resourceType\":\"Patient\",\"birthDate\":\"2012-02-30\"}\n",
            "not json\n",
            "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Fine\"}]}\n",
            "{\"resourceType\":\"Patient\",\"birthDate\":\"2999-01-01\"}\n",
        ),
    )
    .unwrap();
    // a dry run: every problem found, nothing written
    let (ok, out, err) = run(
        &[
            "import",
            "--dry-run",
            "--database",
            &db,
            tx.to_str().unwrap(),
            nd.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok, "problems make a dry run fail");
    assert!(
        out.contains("dry run: 1 resources would be imported, 4 refused; nothing was written"),
        "{out}{err}"
    );
    assert_eq!(count(&file, "Patient"), 0);
    let (ok, out, err) = run(
        &[
            "import",
            "--database",
            &db,
            tx.to_str().unwrap(),
            nd.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok);
    assert!(out.contains("imported 1 resources"), "{out}");
    let refusals: Vec<&str> = err.lines().filter(|l| l.starts_with("refused ")).collect();
    assert_eq!(refusals.len(), 4, "{err}");
    assert!(
        refusals[0]
            .contains("tx.json: the transaction was refused and none of its 2 entries imported"),
        "{}",
        refusals[0]
    );
    assert!(
        refusals[0].contains("'f' is not a code of AdministrativeGender"),
        "{}",
        refusals[0]
    );
    assert!(
        refusals[1].contains("p.ndjson:1:") && refusals[1].contains("2012-02-30"),
        "{err}"
    );
    assert!(refusals[2].contains("p.ndjson:2: not JSON"), "{err}");
    assert!(
        refusals[3].contains("p.ndjson:4:") && refusals[3].contains("in the future"),
        "{err}"
    );
    // only the one good NDJSON line: nothing of the refused transaction
    assert_eq!(count(&file, "Patient"), 1);
}

/// Sends one framed HL7 v2 message and reads its acknowledgement's MSA-1 (None when the
/// connection failed).
fn mllp_send(conn: &mut std::net::TcpStream, message: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut frame = vec![0x0b];
    frame.extend_from_slice(message.as_bytes());
    frame.extend_from_slice(&[0x1c, 0x0d]);
    conn.write_all(&frame).ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(&[0x1c, 0x0d]) {
        let n = conn.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let msa = text
        .split('\r')
        .find(|s| s.starts_with("MSA|"))?
        .to_string();
    msa.split('|').nth(1).map(str::to_string)
}

fn kill_admission(i: usize) -> String {
    format!(
        "MSH|^~\\&|EPIC|KC|CONTINUUM|ALLIANCE|20261202101500||ADT^A01^ADT_A01|K-{i}|P|2.5.1\r\
         EVN|A01|20261202101500\r\
         PID|1||K-1^^^KC^MR||Kill^Kim||20120101|F\r\
         PV1|1|I|4N^1^A||||||||||||||||KV-{i}^^^KC^VN\r"
    )
}

/// SIGKILL while messages stream over MLLP: every message acknowledged AA is there after the
/// restart, and none is applied twice (a resend of each is known and changes nothing).
fn acknowledged_messages_survive_sigkill(database: &str) {
    let (id, secret) = add_client(database, "system/*.cruds");
    let started = |db: &str| {
        let server = Server::start_with(db, &["--mllp", "127.0.0.1:0"]);
        let mut mllp = None;
        while mllp.is_none() {
            let line = server
                .log
                .recv_timeout(Duration::from_secs(60))
                .expect("the server prints where MLLP listens");
            if let Some(rest) = line.strip_prefix("HL7 v2 (MLLP) is listening on ") {
                mllp = Some(rest.trim().to_string());
            }
        }
        (server, mllp.unwrap())
    };
    let (mut server, mllp) = started(database);
    let t = token(&server.base, &id, &secret);
    let (status, body) = http(
        "PUT",
        &format!("{}/Organization/kc", server.base),
        Some(
            r#"{"resourceType":"Organization","id":"kc","name":"Kill Children's","identifier":[{"system":"http://continuum-alliance.org/fhir/NamingSystem/hl7-facility","value":"KC"}]}"#,
        ),
        &t,
    );
    assert!(status < 300, "{body}");
    let (status, body) = http(
        "PUT",
        &format!("{}/Patient/kim", server.base),
        Some(
            r#"{"resourceType":"Patient","id":"kim","name":[{"family":"Kill","given":["Kim"]}],"birthDate":"2012-01-01","gender":"female","identifier":[{"system":"urn:mrn:kc","value":"K-1"}]}"#,
        ),
        &t,
    );
    assert!(status < 300, "{body}");
    // two senders stream admissions; the server is killed while they do
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let mut senders = Vec::new();
    for lane in 0..2 {
        let (acked, addr) = (acked.clone(), mllp.clone());
        senders.push(std::thread::spawn(move || {
            let Ok(mut conn) = std::net::TcpStream::connect(&addr) else {
                return;
            };
            for i in (lane..100_000).step_by(2) {
                match mllp_send(&mut conn, &kill_admission(i)).as_deref() {
                    Some("AA") => acked.lock().unwrap().push(i),
                    Some(other) => panic!("message {i} answered {other}"),
                    None => return,
                }
            }
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 60 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.child.kill().expect("SIGKILL the server");
    server.child.wait().unwrap();
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 60, "only {} acknowledged", acked.len());
    drop(server);
    let (server, mllp) = started(database);
    let t = token(&server.base, &id, &secret);
    let total = |query: &str| -> i64 {
        let (status, body) = http(
            "GET",
            &format!("{}/Encounter?{query}&_total=accurate&_count=1", server.base),
            None,
            &t,
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["total"]
            .as_i64()
            .unwrap()
    };
    for i in &acked {
        assert_eq!(
            total(&format!("identifier=urn:visit:kc|KV-{i}")),
            1,
            "acknowledged message K-{i} is there once"
        );
    }
    let before = total("subject=Patient/kim");
    assert!(before >= acked.len() as i64 && before <= acked.len() as i64 + 2);
    let mut conn = std::net::TcpStream::connect(&mllp).unwrap();
    for i in acked.iter().take(20) {
        assert_eq!(
            mllp_send(&mut conn, &kill_admission(*i)).as_deref(),
            Some("AA")
        );
    }
    assert_eq!(
        total("subject=Patient/kim"),
        before,
        "a resend applies nothing twice"
    );
}

#[test]
fn acknowledged_messages_survive_sigkill_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    acknowledged_messages_survive_sigkill(&format!(
        "sqlite://{}",
        dir.path().join("k.db").display()
    ));
}

#[test]
fn acknowledged_messages_survive_sigkill_postgres() {
    acknowledged_messages_survive_sigkill(&postgres_url());
}
