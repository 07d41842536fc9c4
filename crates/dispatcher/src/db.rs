//! All of Outhook's SQL, one file per table (the queue, `delivery`, one
//! file per operation), functions named noun-verb. Writing an attempt's
//! result spans tables and has its own module, `completion`.
//!
//! Queries are checked at run time (`query_as` into typed rows), so building
//! never needs a live database; the integration tests run every one of them.

pub mod api_token;
pub mod attempt;
pub(crate) mod completion;
pub mod delivery;
pub mod endpoint;
pub mod endpoint_connection;
pub mod endpoint_health;
pub mod event_type;
pub mod idempotency;
pub mod outbox;
pub mod server_key;
pub mod signing_key;

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The `db` modules each file (tests left out) of module `name` uses.
    fn uses(dir: &Path, name: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
        let file = dir.join(format!("{name}.rs"));
        let mut texts = Vec::new();
        if file.is_file() {
            texts.push(std::fs::read_to_string(&file).unwrap());
        } else {
            for entry in std::fs::read_dir(dir.join(name)).unwrap() {
                let path = entry.unwrap().path();
                if path.file_name().is_some_and(|n| n != "tests.rs") {
                    texts.push(std::fs::read_to_string(path).unwrap());
                }
            }
        }
        let mut used = BTreeSet::new();
        for text in texts {
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for part in code.split("crate::db::").skip(1) {
                let module: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if module != name && modules.contains(&module) {
                    used.insert(module);
                }
            }
        }
        used
    }

    #[test]
    fn the_database_modules_use_each_other_in_one_direction_only() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/db");
        let modules: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            modules.contains("delivery") && modules.contains("completion"),
            "{modules:?}"
        );
        let graph: BTreeMap<String, BTreeSet<String>> =
            modules.iter().map(|m| (m.clone(), uses(&dir, m, &modules))).collect();
        assert!(
            graph["completion"].contains("delivery"),
            "the walk sees `use` lines: {graph:?}"
        );
        // Depth-first search; a module met again while still open closes a cycle.
        fn visit(
            m: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            open: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) {
            if done.contains(m) {
                return;
            }
            if let Some(at) = open.iter().position(|o| o == m) {
                panic!("the db modules use each other in a circle: {:?} -> {m}", &open[at..]);
            }
            open.push(m.to_owned());
            for next in &graph[m] {
                visit(next, graph, open, done);
            }
            open.pop();
            done.insert(m.to_owned());
        }
        let mut done = BTreeSet::new();
        for m in graph.keys() {
            visit(m, &graph, &mut Vec::new(), &mut done);
        }
    }
}
