//! A throwaway PostgreSQL cluster, and a fresh database per test.
//!
//! With `DATABASE_URL` set, databases are created on that server. Without
//! it, the first call starts a private cluster from the local installation
//! (`initdb` and `postgres` on `PATH` or under `/usr/lib/postgresql/*/bin`)
//! on a free 127.0.0.1 port, with durability switched off for speed. As root,
//! where `initdb` refuses to run, the cluster runs as `nobody`. The cluster
//! lives as long as the process: a small shell supervisor stops it and
//! deletes its files when our end of its stdin closes, however we exit.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, PgPool};

/// A PostgreSQL cluster this process started.
pub struct Cluster {
    /// `postgres://postgres@127.0.0.1:{port}`, without a database name.
    pub base_url: String,
    /// The TCP port it listens on.
    pub port: u16,
    /// The cluster's folder (data, log).
    pub dir: PathBuf,
    control: Mutex<ChildStdin>,
    _supervisor: Child,
}

const SUPERVISOR: &str = r#"
dir=$1; shift
run() { postgres -D "$dir/data" "$@" >>"$dir/log" 2>&1 & pid=$!; }
run "$@"
while read -r cmd; do
  case "$cmd" in
    stop) kill -INT "$pid"; wait "$pid" ;;
    crash) kill -QUIT "$pid"; wait "$pid" ;;
    start) run "$@" ;;
  esac
done
kill -INT "$pid" 2>/dev/null; wait "$pid"; rm -rf "$dir"
"#;

/// A PostgreSQL program (`pg_dump`, `initdb`, ...): from `PATH`, else the
/// newest under `/usr/lib/postgresql/*/bin`.
pub fn find_binary(name: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.is_file());
    versions.sort();
    versions.pop().with_context(|| {
        format!(
            "`{name}` not found on PATH or under /usr/lib/postgresql; install PostgreSQL server binaries (.ci/run does)"
        )
    })
}

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// The uid and gid to run the server as: `nobody` when we are root.
pub(crate) fn server_user() -> Option<(u32, u32)> {
    is_root().then_some((65534, 65534))
}

pub(crate) fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Initialises and starts a new cluster in a fresh temporary folder,
    /// with durability off (fsync, synchronous commit, full-page writes):
    /// fast, and fine for data that dies with the test.
    pub fn start() -> Result<Self> {
        Self::start_with(&["fsync=off", "synchronous_commit=off", "full_page_writes=off"])
    }

    /// Like [`Cluster::start`], with these `name=value` server settings
    /// instead of the durability switches (pass none for PostgreSQL's
    /// durable defaults).
    pub fn start_with(settings: &[&str]) -> Result<Self> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let initdb = find_binary("initdb")?;
        let postgres = find_binary("postgres")?;
        let bin_dir = postgres.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "outhook-pg-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let user = server_user();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).context("chown cluster folder to nobody")?;
        }
        let as_user = |command: &mut Command| {
            if let Some((uid, gid)) = user {
                command.uid(uid).gid(gid);
            }
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut paths = vec![bin_dir.clone()];
            paths.extend(std::env::split_paths(&path));
            command.env("PATH", std::env::join_paths(paths).unwrap_or(path));
            command.env("LC_ALL", "C").env_remove("PGDATA");
        };
        let mut init = Command::new(&initdb);
        init.args(["-D"])
            .arg(dir.join("data"))
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_user(&mut init);
        let out = init.output().context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = free_port()?;
        let mut supervisor = Command::new("sh");
        supervisor
            .args(["-c", SUPERVISOR, "sh"])
            .arg(&dir)
            .args(["-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
            .args(settings.iter().flat_map(|s| ["-c", *s]))
            .args(["-c", "max_connections=300", "-c", "shared_buffers=256MB"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_user(&mut supervisor);
        let mut child = supervisor.spawn().context("starting postgres")?;
        let control = child.stdin.take().context("supervisor stdin")?;
        let cluster = Self {
            base_url: format!("postgres://postgres@127.0.0.1:{port}"),
            port,
            dir,
            control: Mutex::new(control),
            _supervisor: child,
        };
        cluster.wait_ready(Duration::from_secs(60))?;
        Ok(cluster)
    }

    fn send(&self, command: &str) -> Result<()> {
        let mut control = self.control.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        writeln!(control, "{command}")?;
        control.flush()?;
        Ok(())
    }

    /// Blocks until the server accepts TCP connections.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = Command::new(find_binary("pg_isready").unwrap_or_else(|_| "pg_isready".into()))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
                bail!("postgres did not start on port {}: {log}", self.port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown) and waits until it is down.
    pub fn stop(&self) -> Result<()> {
        self.send("stop")?;
        self.wait_down()
    }

    /// Stops the server as a crash would (immediate shutdown: no
    /// checkpoint, and WAL still in PostgreSQL's buffers is lost) and waits
    /// until it is down. [`Cluster::start_again`] then runs crash recovery.
    pub fn crash(&self) -> Result<()> {
        self.send("crash")?;
        self.wait_down()
    }

    /// Blocks until the server refuses TCP connections.
    fn wait_down(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            if Instant::now() > deadline {
                bail!("postgres did not stop");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Starts the server again after [`Cluster::stop`] or [`Cluster::crash`].
    pub fn start_again(&self) -> Result<()> {
        self.send("start")?;
        self.wait_ready(Duration::from_secs(60))
    }

    /// Creates a fresh, empty database and returns its URL.
    pub async fn create_database(&self) -> Result<String> {
        create_database_on(&self.base_url).await
    }
}

async fn create_database_on(server_url: &str) -> Result<String> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "outhook_test_{}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        Instant::now().elapsed().subsec_nanos()
    );
    let admin: PgConnectOptions = server_url.parse()?;
    let mut conn = admin
        .clone()
        .database("postgres")
        .connect()
        .await
        .context("connecting to PostgreSQL")?;
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await?;
    Ok(url_with_database(server_url, &name))
}

/// `url` with its database replaced by `name`, query parameters kept.
fn url_with_database(url: &str, name: &str) -> String {
    // postgres://user@host:port[/db][?query]
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// The process-wide cluster, started on first use.
pub fn shared_cluster() -> Result<&'static Cluster> {
    static CLUSTER: OnceLock<std::result::Result<Cluster, String>> = OnceLock::new();
    CLUSTER
        .get_or_init(|| Cluster::start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// A fresh database: on `DATABASE_URL`'s server when set, else on the
/// shared throwaway cluster. Returns its URL.
pub async fn database_url() -> Result<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => create_database_on(&url).await,
        _ => {
            let cluster = tokio::task::spawn_blocking(shared_cluster).await??;
            cluster.create_database().await
        }
    }
}

/// A fresh database and a small pool on it.
pub async fn database() -> Result<(String, PgPool)> {
    let url = database_url().await?;
    let pool = PgPoolOptions::new().max_connections(8).connect(&url).await?;
    Ok((url, pool))
}

/// For examples and benchmarks: a fresh database on `DATABASE_URL`'s server
/// when it is set, else on a new throwaway cluster, returned so the caller
/// keeps it alive as long as it needs the database.
pub async fn database_or_throwaway(settings: &[&'static str]) -> Result<(Option<Cluster>, String)> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Ok((None, create_database_on(&url).await?)),
        _ => {
            let settings = settings.to_vec();
            let cluster = tokio::task::spawn_blocking(move || {
                if settings.is_empty() {
                    Cluster::start()
                } else {
                    Cluster::start_with(&settings)
                }
            })
            .await??;
            let url = cluster.create_database().await?;
            Ok((Some(cluster), url))
        }
    }
}
