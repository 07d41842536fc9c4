//! Starts a throwaway PostgreSQL cluster, prints a fresh database's URL on
//! stdout, and keeps the cluster until its stdin closes; then the cluster
//! stops and its files are deleted. For shell scripts:
//!
//! ```sh
//! coproc PG { cargo run -q -p outhook-testkit --bin throwaway-pg; }
//! read -r DATABASE_URL <&"${PG[0]}"
//! ```

use std::io::{Read, Write};

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let cluster = outhook_testkit::postgres::Cluster::start()?;
    let url = runtime.block_on(cluster.create_database())?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{url}")?;
    stdout.flush()?;
    drop(stdout);
    // Wait for the caller to be done.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(cluster);
    Ok(())
}
