//! `outhook.toml`: every setting that a flag and an environment variable
//! hold, in one file, under the flag's long name (`concurrency = 64`,
//! `allow-network = ["10.0.0.0/8"]`), plus the main keys and the log filter,
//! which only the environment held. The file's path comes from `--config`
//! or `OUTHOOK_CONFIG`; nothing is read otherwise.
//!
//! Precedence is flag, then environment, then file, then default: a value
//! from the file becomes its flag's default before the command line is
//! parsed, so clap's own order (command line, environment, default) does
//! the rest. The settings are found by walking the command line's
//! definition (every argument with an environment variable), so a flag
//! added later is a key of the file without more code.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Command};

/// The environment variable that names the file (the flag is `--config`).
pub const CONFIG_ENV: &str = "OUTHOOK_CONFIG";

/// One setting of the file.
#[derive(Clone)]
pub struct Setting {
    /// Its key in the file: the flag's long name.
    pub key: String,
    /// Its environment variable.
    pub env: String,
    /// A secret: redacted when shown.
    pub secret: bool,
    /// Several values, comma-separated in the environment.
    pub list: bool,
    /// How its values are checked.
    check: Check,
}

#[derive(Clone)]
enum Check {
    /// By the flag's own parser.
    Flag(Box<Arg>),
    /// A main key (base64, 32 bytes).
    MainKey,
    /// A tracing filter (`info,sqlx=warn`).
    LogFilter,
    /// Any text.
    Text,
}

/// The settings that only the environment held, read by the libraries
/// rather than the command line: key, variable, secret, list, check.
fn environment_only_settings() -> [(&'static str, &'static str, bool, bool, Check); 4] {
    [
        ("main-key", "OUTHOOK_MAIN_KEY", true, false, Check::MainKey),
        ("main-key-file", "OUTHOOK_MAIN_KEY_FILE", false, false, Check::Text),
        ("old-main-keys", "OUTHOOK_OLD_MAIN_KEYS", true, true, Check::MainKey),
        ("log", "OUTHOOK_LOG", false, false, Check::LogFilter),
    ]
}

/// Every setting: each argument of `root` and its subcommands that has an
/// environment variable and a long name (but `--config` itself), then the
/// environment-only ones.
pub fn settings(root: &Command) -> Vec<Setting> {
    fn walk(cmd: &Command, out: &mut Vec<Setting>) {
        for arg in cmd.get_arguments() {
            let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            if long == "config" || out.iter().any(|s| s.key == long) {
                continue;
            }
            out.push(Setting {
                key: long.to_owned(),
                env: env.to_string_lossy().into_owned(),
                secret: arg.is_hide_env_values_set(),
                list: arg.get_value_delimiter().is_some(),
                check: Check::Flag(Box::new(arg.clone())),
            });
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    for (key, env, secret, list, check) in environment_only_settings() {
        out.push(Setting {
            key: key.to_owned(),
            env: env.to_owned(),
            secret,
            list,
            check,
        });
    }
    out
}

/// The file's path: `--config FILE` or `--config=FILE` on the command
/// line (before a `--`), else `OUTHOOK_CONFIG`.
pub fn path(args: &[OsString]) -> Option<PathBuf> {
    let mut args = args.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// A file's settings, each as its environment variable would hold it.
pub struct Loaded {
    /// `(key, environment variable, value)`, in the file's order.
    pub values: Vec<(String, String, String)>,
}

/// What is wrong with a file: every problem, each naming its key.
#[derive(Debug)]
pub struct Problems {
    /// The file.
    pub path: PathBuf,
    /// One sentence each.
    pub problems: Vec<String>,
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "settings file {} (--config or OUTHOOK_CONFIG): {}",
            self.path.display(),
            self.problems.join("; ")
        )
    }
}

impl std::error::Error for Problems {}

/// Reads and checks the file at `path` against `settings`: every key must
/// be a setting's and every value valid for it.
pub fn load(path: &Path, settings: &[Setting]) -> Result<Loaded, Problems> {
    let fail = |problems: Vec<String>| Problems {
        path: path.to_owned(),
        problems,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(vec![format!("cannot be read: {e}")]))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| fail(vec![format!("is not TOML: {}", e.to_string().trim_end())]))?;
    let mut values = Vec::new();
    let mut problems = Vec::new();
    for (key, value) in &table {
        if value.is_table() {
            problems.push(format!(
                "`[{key}]` is a table: settings are top-level `key = value` lines, before any table"
            ));
            continue;
        }
        let Some(setting) = settings.iter().find(|s| s.key == key.replace('_', "-")) else {
            problems.push(unknown(key, settings));
            continue;
        };
        match env_form(setting, value).and_then(|v| check(setting, &v).map(|()| v)) {
            Ok(v) => values.push((setting.key.clone(), setting.env.clone(), v)),
            Err(problem) => problems.push(format!("`{key}`: {problem}")),
        }
    }
    if problems.is_empty() {
        Ok(Loaded { values })
    } else {
        Err(fail(problems))
    }
}

/// An unknown key, with the nearest setting's name when one is close.
fn unknown(key: &str, settings: &[Setting]) -> String {
    let near = settings
        .iter()
        .map(|s| (strsim::levenshtein(key, &s.key), &s.key))
        .min()
        .filter(|(d, _)| *d <= 3);
    match near {
        Some((_, name)) => format!("unknown key `{key}` (did you mean `{name}`?)"),
        None => format!("unknown key `{key}`: not a setting (see `outhook config show`)"),
    }
}

/// A TOML value as the environment variable would hold it.
fn env_form(setting: &Setting, value: &toml::Value) -> Result<String, String> {
    fn scalar(value: &toml::Value) -> Result<String, String> {
        match value {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            toml::Value::Datetime(_) => Err("a date is not a value of any setting".into()),
            toml::Value::Array(_) => Err("a list inside a list".into()),
            toml::Value::Table(_) => Err("a table: settings are top-level `key = value` lines".into()),
        }
    }
    match value {
        toml::Value::Array(items) if setting.list => {
            let items = items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?;
            if items.iter().any(|i| i.contains(',')) {
                return Err("a list item holds a comma; give each value as its own item".into());
            }
            Ok(items.join(","))
        }
        toml::Value::Array(_) => Err("takes one value, not a list".into()),
        other => scalar(other),
    }
}

/// Checks `value` (the environment's form) as the setting's reader would.
fn check(setting: &Setting, value: &str) -> Result<(), String> {
    let items: Vec<&str> = if setting.list {
        value.split(',').filter(|v| !v.is_empty()).collect()
    } else {
        vec![value]
    };
    for item in items {
        match &setting.check {
            Check::Flag(arg) => {
                // The flag alone, with the value as its default: clap runs
                // a default through the flag's parser as it would a value.
                let alone = (**arg).clone().env(None).default_value(item.to_owned());
                Command::new("outhook")
                    .arg(alone)
                    .try_get_matches_from(["outhook"])
                    .map_err(|e| clap_problem(&e))?;
            }
            Check::MainKey => {
                outhook_dispatcher::secrets::MainKey::from_base64(item).map_err(|e| e.to_string())?;
            }
            Check::LogFilter => {
                tracing_subscriber::EnvFilter::try_new(item).map_err(|e| format!("not a log filter: {e}"))?;
            }
            Check::Text => {}
        }
    }
    Ok(())
}

/// A clap error's first line, without its `error: ` prefix.
fn clap_problem(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// `cmd` with the file's values as its flags' defaults, in every
/// subcommand: a flag or the environment still wins.
pub fn apply(mut cmd: Command, loaded: &Loaded) -> Command {
    let ids: Vec<(clap::Id, Vec<String>)> = cmd
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let (_, _, value) = loaded.values.iter().find(|(key, _, _)| key == long)?;
            let values = match arg.get_value_delimiter() {
                Some(d) => value.split(d).map(str::to_owned).collect(),
                None => vec![value.clone()],
            };
            Some((arg.get_id().clone(), values))
        })
        .collect();
    for (id, values) in ids {
        cmd = cmd.mut_arg(id, |arg| arg.default_values(values));
    }
    let subcommands: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    for name in subcommands {
        cmd = cmd.mut_subcommand(name, |sub| apply(sub, loaded));
    }
    cmd
}

/// The value of an environment-only setting (`main-key`, `log`, …): its
/// environment variable's, else the file's.
pub fn environment_only(key: &str, settings: &[Setting], loaded: Option<&Loaded>) -> Option<(String, &'static str)> {
    let setting = settings.iter().find(|s| s.key == key)?;
    if let Some(v) = std::env::var(&setting.env).ok().filter(|v| !v.trim().is_empty()) {
        return Some((v, "env"));
    }
    let (_, _, v) = loaded?.values.iter().find(|(k, _, _)| k == key)?;
    Some((v.clone(), "file"))
}

/// One setting as a command line would run with it.
#[derive(serde::Serialize)]
pub struct Shown {
    /// The file's key.
    pub key: String,
    /// The value, as the environment would hold it; secrets redacted;
    /// `None` when unset.
    pub value: Option<String>,
    /// `flag`, `env`, `file`, `default` or `unset`.
    pub source: &'static str,
}

/// The settings that the command line `matches` (parsed from `root`, the
/// file applied) runs with, with where each comes from.
pub fn shown(root: &Command, matches: &ArgMatches, settings: &[Setting], loaded: Option<&Loaded>) -> Vec<Shown> {
    let in_file = |key: &str| loaded.is_some_and(|l| l.values.iter().any(|(k, _, _)| k == key));
    let mut out: Vec<Shown> = Vec::new();
    let mut level = Some((root.clone(), matches.clone()));
    while let Some((cmd, matches)) = level.take() {
        for arg in cmd.get_arguments() {
            let Some(setting) = arg.get_long().and_then(|long| settings.iter().find(|s| s.key == long)) else {
                continue;
            };
            if out.iter().any(|s| s.key == setting.key) {
                continue;
            }
            let id = arg.get_id().as_str();
            let value = matches.get_raw(id).map(|raw| {
                raw.map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            });
            let source = match matches.value_source(id) {
                Some(ValueSource::CommandLine) => "flag",
                Some(ValueSource::EnvVariable) => "env",
                Some(ValueSource::DefaultValue) if in_file(&setting.key) => "file",
                Some(ValueSource::DefaultValue) => "default",
                _ => "unset",
            };
            out.push(Shown {
                key: setting.key.clone(),
                value: value.map(|v| redact(setting, v)),
                source,
            });
        }
        level = matches
            .subcommand()
            .and_then(|(name, sub)| cmd.find_subcommand(name).map(|c| (c.clone(), sub.clone())));
    }
    for setting in settings.iter().filter(|s| !matches!(s.check, Check::Flag(_))) {
        let (value, source) = match environment_only(&setting.key, settings, loaded) {
            Some((v, source)) => (Some(redact(setting, v)), source),
            None => (None, "unset"),
        };
        out.push(Shown {
            key: setting.key.clone(),
            value,
            source,
        });
    }
    out
}

/// A secret's value as shown: a URL keeps all but its password; anything
/// else is replaced.
fn redact(setting: &Setting, value: String) -> String {
    if !setting.secret {
        return value;
    }
    match url::Url::parse(&value) {
        Ok(mut url) if url.has_host() => {
            if url.password().is_some() {
                // Cannot fail on a URL with a host.
                let _ = url.set_password(Some("REDACTED"));
            }
            url.to_string()
        }
        _ => "REDACTED".to_owned(),
    }
}
