//! Real proxies from Debian's packages on 127.0.0.1: tinyproxy (HTTP and
//! HTTP CONNECT) and microsocks (SOCKS5), each with a log to read back.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running proxy. It stops when dropped.
pub struct Proxy {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    scheme: &'static str,
    log: PathBuf,
    child: Child,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn fresh_dir(name: &str) -> Result<tempdir::Dir> {
    let dir = std::env::temp_dir().join(format!(
        "outhook-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(tempdir::Dir(dir))
}

impl Proxy {
    /// tinyproxy: plain HTTP requests in absolute form, and HTTP CONNECT
    /// tunnels to any port, from 127.0.0.1 only.
    pub fn tinyproxy() -> Result<Self> {
        let dir = fresh_dir("tinyproxy")?;
        let port = free_port()?;
        let log = dir.0.join("tinyproxy.log");
        let conf = dir.0.join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 1024\n\
                 Allow 127.0.0.1\nDisableViaHeader Yes\n",
                log.display()
            ),
        )?;
        let child = Command::new("tinyproxy")
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("tinyproxy (./scripts/setup installs it)")?;
        Self::ready(Self {
            port,
            scheme: "http",
            log,
            child,
            _dir: dir,
        })
    }

    /// microsocks: SOCKS5 without authentication, its log of connections
    /// kept.
    pub fn microsocks() -> Result<Self> {
        let dir = fresh_dir("microsocks")?;
        let port = free_port()?;
        let log = dir.0.join("microsocks.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new("microsocks")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("microsocks (./scripts/setup installs it)")?;
        Self::ready(Self {
            port,
            scheme: "socks5",
            log,
            child,
            _dir: dir,
        })
    }

    fn ready(mut self) -> Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.try_wait()? {
                bail!("the proxy exited: {status}");
            }
            if Instant::now() > deadline {
                bail!("the proxy did not listen on {} within 10 s", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(self)
    }

    /// Its URL: `http://127.0.0.1:{port}` or `socks5://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
