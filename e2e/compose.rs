//! `docker-compose.yml` checked without a Docker engine (docs/deploy.md says what that
//! does and does not cover):
//! - every variable it passes to a Vitrine container is one that container's program
//!   reads (each configuration is loaded from exactly that environment and records the
//!   variables it asks for), loads without error, and every `${VAR}` it takes from
//!   `.env` is listed in `.env.example`;
//! - every URL between containers names a service and a port that service serves, with a
//!   `depends_on` on it; every URL for the browser names a port published by the right
//!   service; binds are on 0.0.0.0 and the healthchecks ask the bound port;
//! - with PostgreSQL, RabbitMQ and an S3 server (Garage here, MinIO in compose), the
//!   programs start from each container's environment with only the addresses and
//!   credentials of the local servers put in (and the databases made by compose's own
//!   PostgreSQL init script), become ready, and carry an upload and an import listing
//!   through the keys compose gives them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value};
use service_kit::Env;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The program a Vitrine container runs, by its image and command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    Storage,
    App,
    ImportApi,
    ImportWorker,
    Web,
    Audit,
}

impl Program {
    fn of(service: &Value) -> Option<Program> {
        let image = service["image"].as_str()?;
        let repo = image.strip_prefix("vitrine/")?.split(':').next()?;
        let command = service["command"][0].as_str();
        Some(match (repo, command) {
            ("storage-service", None) => Program::Storage,
            ("app-service", None) => Program::App,
            ("import-service", Some("import-api")) => Program::ImportApi,
            ("import-service", Some("import-worker")) => Program::ImportWorker,
            ("web", None) => Program::Web,
            ("audit", None) => Program::Audit,
            other => panic!("compose runs {other:?}: a program this test does not know"),
        })
    }

    /// Its bind variable (the address `/readyz` is served on).
    fn bind_var(self) -> &'static str {
        match self {
            Program::Storage => "STORAGE_BIND",
            Program::App => "APP_BIND",
            Program::ImportApi => "IMPORT_BIND",
            Program::ImportWorker => "IMPORT_WORKER_METRICS_BIND",
            Program::Web => "WEB_BIND",
            Program::Audit => "AUDIT_BIND",
        }
    }

    /// `vitrine serve <name>`, and the binary of the same name in the images.
    fn serve_name(self) -> (&'static str, &'static str) {
        match self {
            Program::Storage => ("storage", "storage-service"),
            Program::App => ("app", "app-service"),
            Program::ImportApi => ("import-api", "import-api"),
            Program::ImportWorker => ("import-worker", "import-worker"),
            Program::Web => ("web", "web"),
            Program::Audit => ("audit", "audit"),
        }
    }

    /// Loads the program's configuration from `env`: the variables it asked for.
    fn asked(self, env: &Env) -> BTreeSet<String> {
        let loaded = match self {
            Program::Storage => storage_service::config::StorageConfig::from_env(env).map(drop),
            Program::App => app_service::config::AppConfig::from_env(env).map(drop),
            Program::ImportApi | Program::ImportWorker => {
                import_service::config::ImportConfig::from_env(env).map(drop)
            }
            Program::Web => web::WebConfig::from_env(env).map(drop),
            Program::Audit => audit_service::config::AuditConfig::from_env(env).map(drop),
        };
        if let Err(e) = loaded {
            panic!("{self:?} does not load its compose configuration: {e}");
        }
        let mut asked = env.asked();
        asked.extend(service_kit::telemetry::VARS.map(str::to_owned));
        asked
    }
}

fn compose() -> Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docker-compose.yml"))
        .expect("docker-compose.yml");
    let mut yaml: serde_norway::Value = serde_norway::from_str(&text).expect("YAML");
    yaml.apply_merge().expect("merge keys");
    serde_json::to_value(yaml).expect("as JSON")
}

/// `.env.example`'s variables (the last value of a name wins, as in a `.env` file).
fn env_example() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join(".env.example")).expect("example");
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// `.env` as a user makes it: `.env.example`, then `vitrine keys` and the passwords.
fn dot_env() -> BTreeMap<String, String> {
    let mut env = env_example();
    for (var, kid) in [
        ("APP_STORAGE_KEYS", "app1"),
        ("IMPORT_STORAGE_KEYS", "import1"),
        ("URL_SIGNING_KEYS", "url1"),
        ("AUDIT_KEYS", "audit1"),
        ("AUDIT_ADMIN_KEYS", "admin1"),
    ] {
        env.insert(var.into(), ring(kid).to_env_value());
    }
    env.insert("JWT_HS256_SECRET".into(), random_secret());
    for var in [
        "POSTGRES_PASSWORD",
        "APP_DB_PASSWORD",
        "STORAGE_DB_PASSWORD",
        "IMPORT_DB_PASSWORD",
        "AUDIT_DB_PASSWORD",
        "RABBITMQ_PASSWORD",
        "MINIO_ROOT_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        env.insert(
            var.into(),
            format!("pw-{}", &random_secret()[..12]).replace(['+', '/'], "-"),
        );
    }
    env
}

/// Compose's interpolation, for the forms docker-compose.yml uses: `$$`, `${VAR}`,
/// `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`. Records
/// the names it looked up in `used`.
fn interpolate(
    text: &str,
    env: &BTreeMap<String, String>,
    used: &mut BTreeSet<String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body_and_tail) = after.strip_prefix('{') else {
            return Err(format!("`{text}`: use ${{VAR}}, not a bare $"));
        };
        let end = body_and_tail
            .find('}')
            .ok_or_else(|| format!("`{text}`: unclosed ${{"))?;
        let body = &body_and_tail[..end];
        rest = &body_and_tail[end + 1..];
        let name_end = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let (name, op) = body.split_at(name_end);
        used.insert(name.to_owned());
        let value = env.get(name).map(String::as_str);
        let set_and_not_empty = value.filter(|v| !v.is_empty());
        let replaced = match op {
            "" => value.unwrap_or("").to_owned(),
            _ if op.starts_with(":-") => set_and_not_empty.unwrap_or(&op[2..]).to_owned(),
            _ if op.starts_with('-') => value.unwrap_or(&op[1..]).to_owned(),
            _ if op.starts_with(":?") => set_and_not_empty
                .ok_or_else(|| format!("{name}: {}", &op[2..]))?
                .to_owned(),
            _ if op.starts_with('?') => value
                .ok_or_else(|| format!("{name}: {}", &op[1..]))?
                .to_owned(),
            _ => return Err(format!("`{text}`: unsupported form ${{{body}}}")),
        };
        out.push_str(&replaced);
    }
    out.push_str(rest);
    Ok(out)
}

/// One service's `environment` after interpolation.
fn environment(
    service: &Value,
    env: &BTreeMap<String, String>,
    used: &mut BTreeSet<String>,
) -> BTreeMap<String, String> {
    let Some(map) = service["environment"].as_object() else {
        return BTreeMap::new();
    };
    map.iter()
        .map(|(k, v)| {
            let raw = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            let value = interpolate(&raw, env, used).unwrap_or_else(|e| panic!("{k}: {e}"));
            (k.clone(), value)
        })
        .collect()
}

fn services(compose: &Value) -> &serde_json::Map<String, Value> {
    compose["services"].as_object().expect("services")
}

fn exposed(service: &Value) -> BTreeSet<u16> {
    service["expose"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .map(|p| match p {
                    Value::String(s) => s.parse().expect("expose port"),
                    other => other.as_u64().expect("expose port") as u16,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `(host port, container port)` of each `127.0.0.1:H:C` mapping.
fn published(service: &Value) -> Vec<(u16, u16)> {
    service["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    let text = p.as_str().expect("ports as strings");
                    let parts: Vec<&str> = text.split(':').collect();
                    assert_eq!(
                        parts.len(),
                        3,
                        "`{text}`: publish as ADDRESS:HOST:CONTAINER"
                    );
                    (
                        parts[1].parse().expect("port"),
                        parts[2].parse().expect("port"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every `scheme://…` value in `value` (CORS lists hold several).
fn urls(value: &str) -> Vec<reqwest::Url> {
    value
        .split(',')
        .filter(|part| part.contains("://"))
        .filter_map(|part| reqwest::Url::parse(part.trim()).ok())
        .collect()
}

#[test]
fn compose_passes_each_program_only_variables_it_reads_and_env_example_lists_them() {
    let compose = compose();
    let example = env_example();
    let env = dot_env();
    let mut used = BTreeSet::new();
    let mut checked = BTreeSet::new();
    for (name, service) in services(&compose) {
        let vars = environment(service, &env, &mut used);
        let Some(program) = Program::of(service) else {
            continue;
        };
        checked.insert(format!("{program:?}"));
        let recording = Env::recording(vars.clone());
        let asked = program.asked(&recording);
        let unread: Vec<&String> = vars.keys().filter(|k| !asked.contains(*k)).collect();
        assert!(
            unread.is_empty(),
            "compose passes {name} variables its program never reads: {unread:?}"
        );
        // Whatever a program reads is documented in .env.example.
        let undocumented: Vec<&String> =
            vars.keys().filter(|k| !example.contains_key(*k)).collect();
        assert!(
            undocumented.is_empty(),
            "{name} gets variables .env.example does not list: {undocumented:?}"
        );
    }
    assert_eq!(
        checked,
        [
            "App",
            "Audit",
            "ImportApi",
            "ImportWorker",
            "Storage",
            "Web"
        ]
        .map(String::from)
        .into(),
        "compose runs every Vitrine program"
    );
    let unlisted: Vec<&String> = used.iter().filter(|v| !example.contains_key(*v)).collect();
    assert!(
        unlisted.is_empty(),
        "docker-compose.yml takes from .env variables .env.example does not list: {unlisted:?}"
    );
    // Production by default: the dev issuer is off with .env.example's values.
    let app = environment(&services(&compose)["app"], &env, &mut used);
    assert_eq!(app["AUTH_DEV_LOGIN"], "false");
}

#[test]
fn urls_between_containers_reach_ports_their_targets_serve() {
    let compose = compose();
    let env = dot_env();
    let all = services(&compose);
    // Where browsers go: each public URL names a port published by this service.
    let public = [
        ("STORAGE_PUBLIC_URL", "storage"),
        ("WEB_STORAGE_PUBLIC_URL", "storage"),
        ("WEB_APP_API_URL", "app"),
        ("WEB_IMPORT_API_URL", "import-api"),
        ("CORS_ALLOWED_ORIGINS", "web"),
    ];
    let mut seen_internal = 0;
    for (name, service) in all {
        let vars = environment(service, &env, &mut BTreeSet::new());
        if let Some(program) = Program::of(service) {
            let bind = &vars[program.bind_var()];
            let port: u16 = bind
                .strip_prefix("0.0.0.0:")
                .unwrap_or_else(|| panic!("{name}: {bind} is not on 0.0.0.0"))
                .parse()
                .expect("port");
            assert!(
                exposed(service).contains(&port),
                "{name} exposes its bind port"
            );
            let health = service["healthcheck"]["test"].to_string();
            assert!(
                health.contains(&format!("127.0.0.1:{port}/readyz")),
                "{name}'s healthcheck asks its bind port: {health}"
            );
        }
        for (var, value) in &vars {
            for url in urls(value) {
                let host = url.host_str().expect("host");
                // `s3://bucket` has no port: it names no container.
                let port = url.port_or_known_default();
                if let Some(target) = all.get(host) {
                    let port = port.unwrap_or_else(|| panic!("{name} {var}: no port in {url}"));
                    seen_internal += 1;
                    assert!(
                        exposed(target).contains(&port),
                        "{name} {var}: {host} serves no port {port}"
                    );
                    let condition = service["depends_on"][host]["condition"].as_str();
                    assert!(
                        matches!(
                            condition,
                            Some("service_healthy" | "service_completed_successfully")
                        ) || all[host]["image"] == service["image"],
                        "{name} {var} calls {host} without waiting for it (depends_on)"
                    );
                } else if host == "127.0.0.1" || host == "localhost" {
                    let port = port.expect("port");
                    let (_, owner) = public
                        .iter()
                        .find(|(v, _)| v == var)
                        .unwrap_or_else(|| panic!("{name} {var}: loopback URL in a container"));
                    let target = &all[*owner];
                    assert!(
                        published(target)
                            .iter()
                            .any(|(h, c)| *h == port && exposed(target).contains(c)),
                        "{name} {var}={value}: port {port} is not published by {owner}"
                    );
                }
            }
        }
    }
    assert!(
        seen_internal >= 10,
        "found only {seen_internal} URLs between containers"
    );
}

// ---------------------------------------------------------------- the programs for real

/// The local servers standing in for compose's, and how to put them into a URL.
struct Servers {
    postgres: reqwest::Url,
    amqp: reqwest::Url,
    s3_endpoint: String,
    s3_bucket: String,
    s3_key: String,
    s3_secret: String,
    s3_region: String,
    /// Prefix of the roles and databases the init script makes (`vitrine_test_…_app`).
    db_prefix: String,
}

impl Servers {
    fn from_env(test: &str) -> Option<Servers> {
        use service_kit::testing::*;
        let get = |var| backend_env(var, test);
        Some(Servers {
            postgres: get(TEST_POSTGRES_URL)?.parse().expect("postgres URL"),
            amqp: get(TEST_AMQP_URL)?.parse().expect("amqp URL"),
            s3_endpoint: get(TEST_S3_ENDPOINT)?,
            s3_bucket: get(TEST_S3_BUCKET)?,
            s3_key: get(TEST_S3_ACCESS_KEY_ID)?,
            s3_secret: get(TEST_S3_SECRET_ACCESS_KEY)?,
            s3_region: get(TEST_S3_REGION)?,
            db_prefix: format!(
                "vitrine_test_compose_{}_",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
        })
    }

    /// libpq's variables for the test server, and the PostgreSQL image's names for the
    /// superuser and its database (the init script reads those).
    fn pg_env(&self) -> Vec<(&'static str, String)> {
        let user = self.postgres.username().to_owned();
        vec![
            ("PGHOST", self.postgres.host_str().expect("host").to_owned()),
            ("PGPORT", self.postgres.port().unwrap_or(5432).to_string()),
            ("PGUSER", user.clone()),
            (
                "PGPASSWORD",
                self.postgres.password().unwrap_or("").to_owned(),
            ),
            ("POSTGRES_USER", user),
            (
                "POSTGRES_DB",
                self.postgres.path().trim_start_matches('/').to_owned(),
            ),
        ]
    }

    /// Runs compose's own PostgreSQL init script against the test server.
    fn create_databases(&self, postgres_env: &BTreeMap<String, String>) {
        let status = Command::new("bash")
            .arg(Path::new(ROOT).join("deploy/compose/postgres-init.sh"))
            .envs(self.pg_env())
            .envs(postgres_env)
            .env("VITRINE_DB_PREFIX", &self.db_prefix)
            .status()
            .expect("run postgres-init.sh");
        assert!(status.success(), "postgres-init.sh failed");
    }

    /// A compose URL with the local server's address (and, where compose's users do not
    /// exist here, its credentials) put in.
    fn rewrite(&self, url: &reqwest::Url, local: &BTreeMap<(String, u16), String>) -> reqwest::Url {
        let mut out = url.clone();
        let host = url.host_str().expect("host");
        let port = url.port_or_known_default().expect("port");
        let set_addr = |out: &mut reqwest::Url, from: &reqwest::Url| {
            out.set_host(from.host_str()).expect("host");
            out.set_port(from.port()).expect("port");
        };
        match host {
            "postgres" => {
                // The init script's role and database, prefixed; the test server trusts
                // loopback, so the password is not what is tested here.
                set_addr(&mut out, &self.postgres);
                out.set_username(&format!("{}{}", self.db_prefix, url.username()))
                    .expect("user");
                out.set_path(&format!(
                    "{}{}",
                    self.db_prefix,
                    url.path().trim_start_matches('/')
                ));
            }
            "rabbitmq" => {
                set_addr(&mut out, &self.amqp);
                out.set_username(self.amqp.username()).expect("user");
                out.set_password(self.amqp.password()).expect("password");
            }
            "minio" => out = self.s3_endpoint.parse().expect("S3 endpoint"),
            _ => {
                let addr = local
                    .get(&(host.to_owned(), port))
                    .unwrap_or_else(|| panic!("no local server for {url}"));
                let addr: reqwest::Url = format!("http://{addr}").parse().expect("addr");
                set_addr(&mut out, &addr);
            }
        }
        out
    }
}

struct DropDatabases<'a>(&'a Servers);

impl Drop for DropDatabases<'_> {
    fn drop(&mut self) {
        for service in ["app", "storage", "import", "audit"] {
            let name = format!("{}{service}", self.0.db_prefix);
            let _ = Command::new("psql")
                .envs(self.0.pg_env())
                .args([
                    "-q",
                    "-c",
                    &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                ])
                .args(["-c", &format!("DROP ROLE IF EXISTS \"{name}\"")])
                .status();
        }
    }
}

/// `vitrine serve <program>` (what the test build has), or the images' binaries from
/// `VITRINE_COMPOSE_BIN_DIR` (e.g. target/release) when set.
fn program_command(program: Program) -> Command {
    let (serve, binary) = program.serve_name();
    match std::env::var_os("VITRINE_COMPOSE_BIN_DIR") {
        Some(dir) => Command::new(Path::new(&dir).join(binary)),
        None => {
            let mut command = Command::new(vitrine_bin());
            command.args(["serve", serve]);
            command
        }
    }
}

#[tokio::test]
async fn the_programs_start_from_the_compose_environment_against_real_servers() {
    let test = "the_programs_start_from_the_compose_environment_against_real_servers";
    let Some(servers) = Servers::from_env(test) else {
        return;
    };
    let compose = compose();
    let env = dot_env();
    let all = services(&compose);
    let _cleanup = DropDatabases(&servers);
    servers.create_databases(&environment(&all["postgres"], &env, &mut BTreeSet::new()));

    // Each program's container port, and its replicas, get a local address first.
    let order = [
        "audit",
        "storage",
        "app",
        "import-api",
        "import-worker",
        "web",
    ];
    let mut local: BTreeMap<(String, u16), String> = BTreeMap::new();
    let mut published_local: BTreeMap<u16, String> = BTreeMap::new();
    for name in order {
        let service = &all[name];
        for port in exposed(service) {
            let addr = format!("127.0.0.1:{}", free_port());
            for (host_port, container) in published(service) {
                if container == port {
                    published_local.insert(host_port, addr.clone());
                }
            }
            local.insert((name.to_owned(), port), addr);
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let queue_prefix = format!("compose-{}", uuid::Uuid::new_v4().simple());
    let blob_prefix = format!("compose-{}", uuid::Uuid::new_v4().simple());
    let mut running = BTreeMap::new();
    for name in order {
        let service = &all[name];
        let program = Program::of(service).expect("a Vitrine program");
        let vars = environment(service, &env, &mut BTreeSet::new());
        let replicas = service["deploy"]["replicas"].as_u64().unwrap_or(1);
        for replica in 1..=replicas {
            let mut vars = vars.clone();
            for value in vars.values_mut() {
                for url in urls(value) {
                    let host = url.host_str().expect("host");
                    let new = if all.contains_key(host) {
                        servers.rewrite(&url, &local)
                    } else if let Some(addr) = url
                        .port_or_known_default()
                        .and_then(|port| published_local.get(&port))
                    {
                        format!("http://{addr}").parse().expect("url")
                    } else {
                        continue;
                    };
                    let (old, new) = (url.as_str(), new.as_str());
                    // Url adds a trailing slash to a bare origin; compose's values have none.
                    let (old, new) = match value.contains(old) {
                        true => (old.to_owned(), new.to_owned()),
                        false => (
                            old.trim_end_matches('/').to_owned(),
                            new.trim_end_matches('/').to_owned(),
                        ),
                    };
                    *value = value.replace(&old, &new);
                }
            }
            let bind_var = program.bind_var();
            let port: u16 = vars[bind_var].rsplit(':').next().unwrap().parse().unwrap();
            let bind = if replica == 1 {
                local[&(name.to_owned(), port)].clone()
            } else {
                format!("127.0.0.1:{}", free_port())
            };
            vars.insert(bind_var.to_owned(), bind.clone());
            // The bucket is the test server's, under a fresh prefix; its user's keys.
            if vars.contains_key("BLOB_STORE") {
                vars.insert(
                    "BLOB_STORE".into(),
                    format!("s3://{}/{blob_prefix}", servers.s3_bucket),
                );
                vars.insert("AWS_ACCESS_KEY_ID".into(), servers.s3_key.clone());
                vars.insert("AWS_SECRET_ACCESS_KEY".into(), servers.s3_secret.clone());
                vars.insert("S3_REGION".into(), servers.s3_region.clone());
            }
            if vars.contains_key("QUEUE_URL") {
                vars.insert("IMPORT_QUEUE_PREFIX".into(), queue_prefix.clone());
            }
            let mut command = program_command(program);
            command
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .envs(&vars);
            let label: &'static str = Box::leak(format!("{name}-{replica}").into_boxed_str());
            running.insert(
                label,
                ServiceProcess::spawn(label, command, &bind, dir.path()).await,
            );
        }
    }
    assert_eq!(
        running.len(),
        7,
        "audit, storage, app, import-api, two workers and web"
    );

    // The keys compose hands out fit together: an upload through app and storage, and
    // an import listing through import-api (its seller tokens).
    let http = http_client();
    let app = &running["app-1"].url;
    let refused = send(
        http.post(format!("{app}/auth/token"))
            .json(&json!({"seller_id": "s"})),
    )
    .await;
    assert_error(&refused, 404, "dev-login-disabled");
    let token = hs256_token(
        &env["JWT_HS256_SECRET"],
        Some(DEV_KID),
        &claims("compose-seller"),
    );
    let bytes = png(20_000);
    let ticket = send(
        http.post(format!("{app}/uploads"))
            .bearer_auth(&token)
            .json(&json!({
                "filename": "photo.png",
                "content_type": "image/png",
                "size": bytes.len(),
                "sha256": sha256_hex(&bytes),
            })),
    )
    .await;
    assert_eq!(ticket.0, 201, "{}", ticket.2);
    assert!(
        ticket.2["upload_url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&running["storage-1"].url)),
        "the upload URL is storage's public URL: {}",
        ticket.2
    );
    let put = put_upload(&http, &ticket.2, bytes).await;
    assert_eq!(put.0, 201, "{}", put.2);
    let product = send(
        http.post(format!("{app}/product"))
            .bearer_auth(&token)
            .json(&json!({
                "name": "Compose shoe",
                "description": "",
                "price_minor": 1000,
                "currency": "EUR",
                "image_id": put.2["image_id"],
            })),
    )
    .await;
    assert_eq!(product.0, 201, "{}", product.2);
    let imports = send(
        http.get(format!("{}/imports", running["import-api-1"].url))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(imports.0, 200, "{}", imports.2);
    let _: Value = imports.2;

    // The audit events of that upload and product went through RabbitMQ's `audit`
    // exchange into the audit service, readable with a token of compose's admin keys.
    let admin = shared_signing::KeyRing::parse(&env["AUDIT_ADMIN_KEYS"]).expect("admin keys");
    let operator = audit_service::query::mint_admin_token(
        &admin,
        "compose",
        std::time::Duration::from_secs(600),
    )
    .expect("operator token");
    let audit = &running["audit-1"].url;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let page = send(
            http.get(format!("{audit}/audit?seller_id=compose-seller"))
                .bearer_auth(&operator),
        )
        .await;
        assert_eq!(page.0, 200, "{}", page.2);
        let types: BTreeSet<&str> = page.2["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["type"].as_str())
            .collect();
        let want = [
            "upload.url_issued",
            "upload.accepted",
            "product.created",
            "download.url_issued",
        ];
        if want.iter().all(|t| types.contains(t)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "audit events of the compose upload missing after 60 s: {types:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // The page learns where the APIs are from web's /config.json: the published ports.
    let config = send(http.get(format!("{}/config.json", running["web-1"].url))).await;
    assert_eq!(config.0, 200, "{}", config.2);
    assert_eq!(config.2["app_api_url"], running["app-1"].url.as_str());
    assert_eq!(
        config.2["import_api_url"],
        running["import-api-1"].url.as_str()
    );
    assert_eq!(config.2["storage_url"], running["storage-1"].url.as_str());
    // …and the APIs let that page call them (CORS for the web origin).
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{app}/uploads"))
        .header("origin", running["web-1"].url.as_str())
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .expect("preflight");
    assert_eq!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap_or_default()),
        Some(running["web-1"].url.as_str()),
        "app allows the web origin: {:?}",
        preflight.headers()
    );
}
