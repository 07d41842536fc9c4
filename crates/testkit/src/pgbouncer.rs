//! A PgBouncer in transaction mode in front of a test database, on a free
//! 127.0.0.1 port: Debian's `pgbouncer` (installed by `scripts/setup`),
//! configured as the README asks (`server_reset_query = DEALLOCATE ALL`,
//! `server_reset_query_always = 1`). As root it runs as `nobody`, as the
//! PostgreSQL cluster does. It stops when the [`Pooler`] is dropped.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sqlx::postgres::PgConnectOptions;

/// A running PgBouncer.
pub struct Pooler {
    /// The database's URL through the pooler.
    pub url: String,
    /// Its folder (configuration, log).
    pub dir: PathBuf,
    child: Child,
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `pgbouncer` program: on `PATH`, else Debian's `/usr/sbin/pgbouncer`.
pub fn binary() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("pgbouncer"))
        .find(|p| p.is_file());
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/pgbouncer")).filter(|p| p.is_file()))
        .context("`pgbouncer` not found on PATH or in /usr/sbin; install Debian's pgbouncer (scripts/setup does)")
}

impl Pooler {
    /// Starts a PgBouncer in transaction mode in front of `database_url`'s
    /// server, and waits until it takes connections. `pool_size` is the
    /// number of server connections per database.
    pub fn start(database_url: &str, pool_size: u32) -> Result<Self> {
        let options: PgConnectOptions = database_url.parse().context("database URL")?;
        let database = options.get_database().context("the URL names no database")?.to_owned();
        let dir = std::env::temp_dir().join(format!(
            "outhook-pgbouncer-{}-{}",
            std::process::id(),
            crate::postgres::free_port()?
        ));
        std::fs::create_dir_all(&dir)?;
        let port = crate::postgres::free_port()?;
        let config = format!(
            "[databases]\n\
             * = host={host} port={server_port} user={user}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = any\n\
             pool_mode = transaction\n\
             server_reset_query = DEALLOCATE ALL\n\
             server_reset_query_always = 1\n\
             ignore_startup_parameters = extra_float_digits\n\
             max_client_conn = 1000\n\
             default_pool_size = {pool_size}\n\
             logfile = {log}\n",
            host = options.get_host(),
            server_port = options.get_port(),
            user = options.get_username(),
            log = dir.join("pgbouncer.log").display(),
        );
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(&ini, config)?;
        let user = crate::postgres::server_user();
        if let Some((uid, gid)) = user {
            for path in [&dir, &ini] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).context("chown pgbouncer files to nobody")?;
            }
        }
        let mut command = Command::new(binary()?);
        command
            .arg(&ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = user {
            command.uid(uid).gid(gid);
        }
        let child = command.spawn().context("starting pgbouncer")?;
        let pooler = Self {
            url: format!("postgres://{}@127.0.0.1:{port}/{database}", options.get_username()),
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(pooler.dir.join("pgbouncer.log")).unwrap_or_default();
                bail!("pgbouncer did not listen on {port} within 10 s: {log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(pooler)
    }
}
