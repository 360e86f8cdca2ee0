//! `TestApp`: the real server on port 0 with a fresh database (a SQLite file in a temporary
//! folder, or a new PostgreSQL database on the server named by `CONTINUUM_TEST_POSTGRES_URL`),
//! with typed request helpers. `both_engines!` runs a test on each engine.

use std::sync::Arc;

use reqwest::header::HeaderMap;
use serde_json::Value;
use store::{DatabaseUrl, Store, StoreOptions};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    /// The HL7 v2 listener's address, when the config turned it on.
    pub mllp: Option<std::net::SocketAddr>,
    pub base: String,
    /// Sends the default identity's token (a backend service with full access).
    pub client: reqwest::Client,
    /// Sends no credentials.
    pub anonymous: reqwest::Client,
    pub store: Store,
    /// The server's background jobs (started with it; run one now with `jobs.run_now`).
    pub jobs: server::jobs::Jobs,
    #[allow(dead_code)]
    pub engine: Engine,
    _dir: Option<tempfile::TempDir>,
    pg_database: Option<(String, String)>,
    shutdown: Option<oneshot::Sender<()>>,
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The first issue's code, when the body is an OperationOutcome.
    pub fn issue_code(&self) -> String {
        let v = self.json();
        assert_eq!(
            v["resourceType"], "OperationOutcome",
            "expected an OperationOutcome, got {}",
            self.text
        );
        v["issue"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// The admin URL of the test PostgreSQL server. Tests fail (never skip) without it.
pub fn postgres_admin_url() -> String {
    std::env::var("CONTINUUM_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!("CONTINUUM_TEST_POSTGRES_URL is not set: run the tests with scripts/test, which starts PostgreSQL")
    })
}

fn admin_sql(url: &str, sql: &str) {
    let url = url.to_string();
    let sql = sql.to_string();
    // the synchronous client must not run on an async runtime thread
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls)
            .expect("connect to the test PostgreSQL");
        c.batch_execute(&sql).expect("admin SQL");
    })
    .join()
    .expect("admin thread");
}

impl TestApp {
    pub async fn spawn(engine: Engine) -> TestApp {
        Self::spawn_with(engine, server::ServerConfig::default()).await
    }

    pub async fn spawn_with(engine: Engine, config: server::ServerConfig) -> TestApp {
        Self::spawn_on(engine, config, Arc::new(care::SystemClock)).await
    }

    /// A server whose store (and token checks) read time from `clock`, which the test moves:
    /// its access tokens last ten years, so that moving the clock by days or years keeps them valid.
    pub async fn spawn_with_clock(
        engine: Engine,
        mut config: server::ServerConfig,
        clock: Arc<dyn care::Clock>,
    ) -> TestApp {
        config.auth.token_seconds = 3660 * 86_400;
        Self::spawn_on(engine, config, clock).await
    }

    async fn spawn_on(
        engine: Engine,
        mut config: server::ServerConfig,
        clock: Arc<dyn care::Clock>,
    ) -> TestApp {
        let (url, dir, pg_database) = match engine {
            Engine::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("test.db");
                (DatabaseUrl::Sqlite(path), Some(dir), None)
            }
            Engine::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("continuum_test_{}", uuid::Uuid::new_v4().simple());
                admin_sql(&admin, &format!("CREATE DATABASE {name}"));
                let (prefix, _) = admin.rsplit_once('/').expect("URL with a database");
                (
                    DatabaseUrl::Postgres(format!("{prefix}/{name}")),
                    None,
                    Some((admin, name)),
                )
            }
        };
        let store = Store::open(
            &url,
            &StoreOptions {
                connections: 3,
                migrate: true,
            },
            clock,
        )
        .expect("open store");
        config.listen = "127.0.0.1:0".parse().unwrap();
        let (listener, addr) = server::bind(config.listen).await.expect("bind");
        if let Some(m) = config.mllp.as_mut() {
            m.listen = "127.0.0.1:0".parse().unwrap();
        }
        let started = server::start(store.clone(), &config).await.expect("app");
        let (app, jobs) = (started.router, started.jobs);
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(server::serve(listener, app, async move {
            let _ = rx.await;
        }));
        let mut app = TestApp {
            addr,
            mllp: started.mllp,
            base: format!("http://{addr}/fhir"),
            client: reqwest::Client::new(),
            anonymous: reqwest::Client::new(),
            store,
            jobs,
            engine,
            _dir: dir,
            pg_database,
            shutdown: Some(tx),
        };
        // by default every request is a backend service with full access
        let token = app.token_for("system/*.cruds", &[], &[]).await;
        app.client = app.client_with(&token);
        app
    }

    /// A server with the HL7 v2 listener on.
    pub async fn spawn_with_mllp(engine: Engine) -> TestApp {
        let config = server::ServerConfig {
            mllp: Some(server::mllp::MllpConfig::new(
                "127.0.0.1:0".parse().unwrap(),
            )),
            ..Default::default()
        };
        Self::spawn_with(engine, config).await
    }

    /// Sends one HL7 v2 message over MLLP on a new connection; the acknowledgement's text.
    pub async fn send_hl7(&self, message: &str) -> String {
        let mut conn = self.mllp_connect().await;
        mllp_exchange(&mut conn, message.as_bytes()).await
    }

    pub async fn mllp_connect(&self) -> tokio::net::TcpStream {
        tokio::net::TcpStream::connect(self.mllp.expect("the MLLP listener is on"))
            .await
            .expect("connect to the MLLP listener")
    }

    /// Registers an API client with these scopes, roles (`clinician@org`) and FHIR identities,
    /// and returns a fresh access token for it.
    pub async fn token_for(&self, scopes: &str, roles: &[&str], fhir_users: &[&str]) -> String {
        self.client_for(scopes, roles, fhir_users).await.1
    }

    /// As `token_for`, also returning the client id (the audit trail names `client:<id>`).
    pub async fn client_for(
        &self,
        scopes: &str,
        roles: &[&str],
        fhir_users: &[&str],
    ) -> (String, String) {
        let client_id = format!("test-{}", uuid::Uuid::new_v4().simple());
        let secret = "test-secret-of-sufficient-length".to_string();
        let record = store::accounts::ClientRecord {
            client_id: client_id.clone(),
            name: "test".into(),
            secret_hash: server::auth::secrets::hash_secret(&secret),
            scopes: scopes.to_string(),
            grants: roles
                .iter()
                .map(|r| server::auth::parse_grant(r).expect("role"))
                .collect(),
            fhir_users: fhir_users.iter().map(|s| s.to_string()).collect(),
            disabled: false,
        };
        self.store
            .write(move |tx| tx.insert_client(&record))
            .await
            .expect("insert client");
        let r = self
            .anonymous
            .post(format!("http://{}/auth/token", self.addr))
            .basic_auth(&client_id, Some(&secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .expect("token request");
        let body: Value = r.json().await.expect("token JSON");
        let token = body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {body}"))
            .to_string();
        (client_id, token)
    }

    /// An HTTP client that sends this bearer token on every request.
    pub fn client_with(&self, token: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("client")
    }

    /// GET with another client (another identity).
    pub async fn get_as(&self, client: &reqwest::Client, path: &str) -> Resp {
        self.send(client.get(self.url(path))).await
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else if path.starts_with('/') {
            format!("http://{}{path}", self.addr)
        } else {
            format!("{}/{path}", self.base)
        }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.expect("request sent");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        Resp {
            status,
            headers,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.client.get(self.url(path))).await
    }

    /// GET of a path outside `/fhir` (`/api/…`), as the default identity.
    pub async fn get_raw(&self, path: &str) -> Resp {
        self.send(self.client.get(format!("http://{}{path}", self.addr)))
            .await
    }

    /// POST without a body to a path outside `/fhir`.
    pub async fn post_raw(&self, path: &str) -> Resp {
        self.send(self.client.post(format!("http://{}{path}", self.addr)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(
            self.client
                .post(self.url(path))
                .header("Content-Type", "application/fhir+json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(
            self.client
                .put(self.url(path))
                .header("Content-Type", "application/fhir+json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.client.delete(self.url(path))).await
    }

    /// Stores a resource under its own id (`PUT Type/id`), asserting it was stored (200 or 201).
    pub async fn upsert(&self, body: serde_json::Value) {
        let path = format!(
            "{}/{}",
            body["resourceType"].as_str().expect("resourceType"),
            body["id"].as_str().expect("id")
        );
        let r = self.put(&path, &body).await;
        assert!(r.status == 200 || r.status == 201, "{path}: {}", r.text);
    }

    /// Creates a resource and returns it as stored.
    pub async fn create(&self, body: Value) -> Value {
        let rt = body["resourceType"]
            .as_str()
            .expect("resourceType")
            .to_string();
        let r = self.post(&rt, &body).await;
        assert_eq!(r.status, 201, "create {rt}: {}", r.text);
        r.json()
    }

    /// Row counts of every table, to prove a rejected request wrote nothing.
    pub async fn row_counts(&self) -> Vec<(String, i64)> {
        self.store
            .read(|tx| tx.row_counts())
            .await
            .expect("row counts")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some((admin, name)) = self.pg_database.take() {
            admin_sql(
                &admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// Runs `async fn $name(app: TestApp)` on SQLite and on PostgreSQL, as `$name::sqlite` and
/// `$name::postgres`.
#[macro_export]
macro_rules! both_engines {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::TestApp::spawn($crate::helpers::Engine::Sqlite).await).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::TestApp::spawn($crate::helpers::Engine::Postgres).await).await
                }
            }
        )*
    };
}

/// Writes one MLLP frame and reads the acknowledgement frame back (its text, CRs as they are).
pub async fn mllp_exchange(conn: &mut tokio::net::TcpStream, message: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut frame = vec![0x0b];
    frame.extend_from_slice(message);
    frame.extend_from_slice(&[0x1c, 0x0d]);
    conn.write_all(&frame).await.expect("send the frame");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(std::time::Duration::from_secs(20), conn.read(&mut buf))
            .await
            .expect("an acknowledgement in time")
            .expect("read");
        assert!(
            n > 0,
            "the listener closed the connection without an acknowledgement"
        );
        got.extend_from_slice(&buf[..n]);
        if got.ends_with(&[0x1c, 0x0d]) {
            break;
        }
    }
    assert_eq!(got[0], 0x0b, "the acknowledgement is framed");
    String::from_utf8(got[1..got.len() - 2].to_vec()).expect("UTF-8 acknowledgement")
}
