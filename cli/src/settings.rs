//! Settings in one place, as `dask.config` keeps Dask's.
//!
//! Every flag of every command can also be set by an environment variable
//! and in a config file. A flag wins over the environment, the environment
//! over the file, the file over rask's default:
//!
//! - the variable is `RASK_` and the flag's name for the flags every command
//!   takes (`--threads`: `RASK_THREADS`, `--format`: `RASK_FORMAT`), and
//!   `RASK_`, the command and the flag for a command's own (`rask scheduler
//!   --port`: `RASK_SCHEDULER_PORT`, `rask worker --nthreads`:
//!   `RASK_WORKER_NTHREADS`);
//! - the file is `--config FILE` (or `RASK_CONFIG`), else
//!   `$XDG_CONFIG_HOME/rask/config.toml` (`~/.config/rask/config.toml`) when it
//!   exists: the flags every command takes at its top, each command's own in
//!   a table named after it.
//!
//! ```toml
//! format = "csv"
//! memory-limit = "2GiB"
//!
//! [scheduler]
//! port = 8786
//!
//! [worker]
//! nthreads = 2
//! ```
//!
//! `rask config` prints the settings in effect and where each came from.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::builder::BoolishValueParser;
use clap::{Arg, ArgAction, Command};

/// The variable naming the config file, as `--config` does.
pub const CONFIG_VARIABLE: &str = "RASK_CONFIG";

/// What is wrong with the settings, and where.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file could not be read.
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The config file is not TOML.
    #[error("{}: not a TOML file: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What the parser said, with the line.
        message: String,
    },
    /// A setting of the file that no flag has, or a value it cannot take.
    #[error("{}: {place}{key}: {message}", path.display())]
    Setting {
        /// The file.
        path: PathBuf,
        /// `[worker] ` for a command's table; empty at the top.
        place: String,
        /// The setting.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// A config file's settings: those at its top (the flags every command
/// takes) and each command's table.
#[derive(Debug, Default)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The flags every command takes, by flag name.
    top: BTreeMap<String, Vec<String>>,
    /// Each command's flags, by command and flag name.
    tables: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// Where the config file is: `--config FILE` among `args`, else
/// [`CONFIG_VARIABLE`], else the user's `rask/config.toml` if it exists.
/// `None` when there is none; a file named by flag or variable must exist.
pub fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut given = None;
    let mut words = args.iter().skip(1);
    while let Some(word) = words.next() {
        let Some(word) = word.to_str() else { continue };
        if word == "--" {
            break;
        }
        if word == "--config" {
            given = words.next().map(PathBuf::from);
        } else if let Some(path) = word.strip_prefix("--config=") {
            given = Some(PathBuf::from(path));
        }
    }
    given
        .or_else(|| std::env::var_os(CONFIG_VARIABLE).map(PathBuf::from))
        .or_else(|| default_path().filter(|p| p.exists()))
}

/// The config file `args` name (see [`config_path`]), read, and `command`
/// with it and the environment [`apply`]d.
pub fn load(
    command: Command,
    args: &[OsString],
) -> Result<(Command, Option<ConfigFile>), SettingsError> {
    let file = config_path(args)
        .map(|path| ConfigFile::read(&path))
        .transpose()?;
    Ok((apply(command, file.as_ref())?, file))
}

/// `$XDG_CONFIG_HOME/rask/config.toml`, or `~/.config/rask/config.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("rask").join("config.toml"))
}

impl ConfigFile {
    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<Self, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text`, the file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SettingsError> {
        let document: toml_edit::DocumentMut =
            text.parse()
                .map_err(|e: toml_edit::TomlError| SettingsError::Syntax {
                    path: path.to_path_buf(),
                    message: e.to_string().trim_end().to_string(),
                })?;
        let mut file = ConfigFile {
            path: path.to_path_buf(),
            ..Self::default()
        };
        for (key, item) in document.iter() {
            match item {
                toml_edit::Item::Table(table) => {
                    let place = format!("[{key}] ");
                    let mut settings = BTreeMap::new();
                    for (name, item) in table.iter() {
                        let values = file.values(&place, name, item)?;
                        settings.insert(flag_name(name), values);
                    }
                    file.tables.insert(key.to_string(), settings);
                }
                item => {
                    let values = file.values("", key, item)?;
                    file.top.insert(flag_name(key), values);
                }
            }
        }
        Ok(file)
    }

    /// The values of setting `key`, as its flag would take them.
    fn values(
        &self,
        place: &str,
        key: &str,
        item: &toml_edit::Item,
    ) -> Result<Vec<String>, SettingsError> {
        let wrong = |message: &str| self.error(place, key, message.to_string());
        let Some(value) = item.as_value() else {
            return Err(wrong("a table where a value belongs"));
        };
        match value {
            toml_edit::Value::Array(array) => array
                .iter()
                .map(|v| scalar(v).ok_or_else(|| wrong("a list may hold only strings and numbers")))
                .collect(),
            value => scalar(value)
                .map(|v| vec![v])
                .ok_or_else(|| wrong("not a string, number or boolean")),
        }
    }

    fn error(&self, place: &str, key: &str, message: String) -> SettingsError {
        SettingsError::Setting {
            path: self.path.clone(),
            place: place.to_string(),
            key: key.to_string(),
            message,
        }
    }
}

/// A TOML value as a flag's text.
fn scalar(value: &toml_edit::Value) -> Option<String> {
    match value {
        toml_edit::Value::String(s) => Some(s.value().clone()),
        toml_edit::Value::Integer(i) => Some(i.value().to_string()),
        toml_edit::Value::Float(f) => Some(f.value().to_string()),
        toml_edit::Value::Boolean(b) => Some(b.value().to_string()),
        _ => None,
    }
}

/// A setting's name as its flag's: `nthreads`, `memory-limit` (`memory_limit` too).
fn flag_name(key: &str) -> String {
    key.replace('_', "-")
}

/// The variable that sets `flag` of `command` (`None`: every command's).
pub fn variable(command: Option<&str>, flag: &str) -> String {
    let mut name = String::from("RASK_");
    if let Some(command) = command {
        name.push_str(command);
        name.push('_');
    }
    name.push_str(flag);
    name.to_ascii_uppercase().replace('-', "_")
}

/// Whether `arg` is a setting: a named flag a user sets, not help, a hidden
/// switch or `--config` itself.
fn is_setting(arg: &Arg) -> bool {
    arg.get_long().is_some_and(|long| long != "config")
        && !arg.is_positional()
        && !arg.is_hide_set()
        && !matches!(
            arg.get_action(),
            ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
        )
}

/// `command` with every setting reading its environment variable, and the
/// file's settings as defaults; checks each of the file's values as its flag
/// would, and refuses settings no flag has.
pub fn apply(mut command: Command, file: Option<&ConfigFile>) -> Result<Command, SettingsError> {
    let empty = BTreeMap::new();
    let top = file.map_or(&empty, |f| &f.top);
    command = with_settings(command, None, top, file)?;
    let names: Vec<String> = command
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect();
    for name in &names {
        let table = file.and_then(|f| f.tables.get(name)).unwrap_or(&empty);
        let Some(sub) = command.find_subcommand(name).cloned() else {
            continue;
        };
        let sub = with_settings(sub, Some(name), table, file)?;
        command = command.mut_subcommand(name, |_| sub);
    }
    if let Some(file) = file
        && let Some(table) = file.tables.keys().find(|t| !names.contains(t))
    {
        return Err(file.error(
            "",
            &format!("[{table}]"),
            format!(
                "no command is named {table} (the tables: {})",
                names.join(", ")
            ),
        ));
    }
    Ok(command)
}

/// `command` (`name`: `None` for the top) with its settings reading their
/// variables, and `settings` (from `file`) as defaults.
fn with_settings(
    mut command: Command,
    name: Option<&str>,
    settings: &BTreeMap<String, Vec<String>>,
    file: Option<&ConfigFile>,
) -> Result<Command, SettingsError> {
    let place = name.map_or(String::new(), |n| format!("[{n}] "));
    let mut known = BTreeSet::new();
    let args: Vec<Arg> = command
        .get_arguments()
        .filter(|a| is_setting(a))
        .cloned()
        .collect();
    for mut arg in args {
        let Some(long) = arg.get_long().map(str::to_string) else {
            continue;
        };
        known.insert(long.clone());
        let id = arg.get_id().to_string();
        let counts = matches!(arg.get_action(), ArgAction::Count);
        if arg.get_env().is_none() && !counts {
            arg = arg.env(variable(name, &long));
        }
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            // RASK_TIMING=1, =yes, =on as well as =true.
            arg = arg.value_parser(BoolishValueParser::new());
        }
        if let (Some(values), Some(file)) = (settings.get(&long), file) {
            check(&arg, values).map_err(|message| file.error(&place, &long, message))?;
            arg = arg.default_values(values.clone());
        }
        command = command.mut_arg(id, |_| arg);
    }
    if let Some(file) = file
        && let Some(unknown) = settings.keys().find(|k| !known.contains(*k))
    {
        let names: Vec<_> = known.into_iter().collect();
        return Err(file.error(
            &place,
            unknown,
            format!("no such setting (these are: {})", names.join(", ")),
        ));
    }
    Ok(command)
}

/// Whether `arg` takes `values`, as its flag would; why not if it does not.
fn check(arg: &Arg, values: &[String]) -> Result<(), String> {
    let many = matches!(arg.get_action(), ArgAction::Append);
    if values.len() != 1 && !many {
        return Err("takes one value, not a list".into());
    }
    if matches!(arg.get_action(), ArgAction::Count) {
        return values[0]
            .parse::<u8>()
            .map(|_| ())
            .map_err(|_| format!("{:?} is not a count", values[0]));
    }
    // The flag alone, with its parser (switches: true, yes, on, 1, …): what it
    // says of each value.
    let long = arg.get_long().unwrap_or("value").to_string();
    let probe = Arg::new("value")
        .long(long.clone())
        .value_name("VALUE")
        .action(ArgAction::Append)
        .value_parser(arg.get_value_parser().clone());
    let mut words = Vec::new();
    for value in values {
        words.push(format!("--{long}"));
        words.push(value.clone());
    }
    Command::new("rask")
        .no_binary_name(true)
        .arg(probe)
        .try_get_matches_from(words)
        .map(|_| ())
        .map_err(|e| {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").to_string()
        })
}

/// One setting in effect, for `rask config`.
#[derive(Debug, PartialEq, Eq)]
pub struct Effective {
    /// The flag's name.
    pub flag: String,
    /// Its values (none: unset).
    pub values: Vec<String>,
    /// Where they came from: `flag`, `environment RASK_…`, `file PATH`, `default`.
    pub source: String,
    /// Whether the value is a secret not to print.
    pub secret: bool,
}

/// The settings of `command` (`name`: `None` for the top) in effect, with
/// `given` the values of flags given on the command line.
pub fn effective(
    command: &Command,
    name: Option<&str>,
    file: Option<&ConfigFile>,
    given: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Vec<Effective> {
    let settings = file.and_then(|f| match name {
        None => Some(&f.top),
        Some(n) => f.tables.get(n),
    });
    let mut out = Vec::new();
    for arg in command.get_arguments().filter(|a| is_setting(a)) {
        let Some(flag) = arg.get_long().map(str::to_string) else {
            continue;
        };
        let secret = arg.is_hide_env_values_set();
        // The variable clap reads for it, if any (see `apply`).
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let from_env = env
            .as_ref()
            .and_then(std::env::var_os)
            .filter(|v| !v.is_empty())
            .map(|v| vec![v.to_string_lossy().into_owned()]);
        let from_file = settings.and_then(|s| s.get(&flag)).cloned();
        let (values, source) = if let Some(values) = given(arg.get_id().as_str()) {
            (values, "flag".to_string())
        } else if let (Some(values), Some(env)) = (from_env, &env) {
            (values, format!("environment {env}"))
        } else if let Some(values) = from_file {
            let path = file
                .map(|f| f.path.display().to_string())
                .unwrap_or_default();
            (values, format!("file {path}"))
        } else {
            let mut defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            if defaults.is_empty() && matches!(arg.get_action(), ArgAction::SetTrue) {
                defaults.push("false".into());
            }
            (defaults, "default".to_string())
        };
        out.push(Effective {
            flag,
            values,
            source,
            secret,
        });
    }
    out
}

/// `settings` as lines of a config file, each with where it came from.
pub fn render(table: Option<&str>, settings: &[Effective]) -> String {
    let mut text = String::new();
    if let Some(table) = table {
        text.push_str(&format!("\n[{table}]\n"));
    }
    for setting in settings {
        let value = match setting.values.as_slice() {
            _ if setting.secret && !setting.values.is_empty() => "\"(set, not shown)\"".to_string(),
            [] => String::new(),
            [one] => toml_value(one),
            many => format!(
                "[{}]",
                many.iter()
                    .map(|v| toml_value(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let line = match value.is_empty() {
            true => format!("# {} =", setting.flag),
            false => format!("{} = {value}", setting.flag),
        };
        let source = match value.is_empty() {
            true => "unset".to_string(),
            false => setting.source.clone(),
        };
        text.push_str(&format!("{line:<40} # {source}\n"));
    }
    text
}

/// `rask config`: the settings of every command in effect, as a config
/// file would hold them, each with where it came from.
pub fn show(command: &Command, matches: &clap::ArgMatches, file: Option<&ConfigFile>) -> String {
    let sub = matches.subcommand().map(|(_, m)| m).unwrap_or(matches);
    let given = |id: &str| {
        let from_flag = sub.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        from_flag.then(|| {
            sub.get_raw(id)
                .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default()
        })
    };
    let place = match file {
        Some(file) => format!("{}", file.path.display()),
        None => match default_path() {
            Some(path) => format!("none ({} does not exist)", path.display()),
            None => "none".to_string(),
        },
    };
    let mut text = format!(
        "# rask's settings in effect. A flag wins over the environment (RASK_*),\n\
         # the environment over the config file, the file over the default.\n\
         # Config file: {place}\n\n"
    );
    text.push_str(&render(None, &effective(command, None, file, &given)));
    for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
        let name = sub.get_name();
        let own = effective(sub, Some(name), file, &|_| None);
        if !own.is_empty() {
            text.push_str(&render(Some(name), &own));
        }
    }
    text
}

/// `value` as TOML: numbers and booleans bare, the rest quoted.
fn toml_value(value: &str) -> String {
    let bare = value == "true"
        || value == "false"
        || (value.parse::<f64>().is_ok_and(f64::is_finite)
            && value
                .chars()
                .all(|c| c.is_ascii_digit() || ".-+e".contains(c)));
    match bare {
        true => value.to_string(),
        false => toml_edit::Value::from(value).to_string().trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn file(text: &str) -> Result<ConfigFile, SettingsError> {
        ConfigFile::parse(Path::new("rask.toml"), text)
    }

    #[test]
    fn variables_are_named_after_command_and_flag() {
        assert_eq!(variable(None, "memory-limit"), "RASK_MEMORY_LIMIT");
        assert_eq!(variable(Some("worker"), "nthreads"), "RASK_WORKER_NTHREADS");
    }

    #[test]
    fn the_files_values_are_checked_as_their_flags_would_be() {
        let cli = crate::args::Cli::command();
        let bad = file("[worker]\nnthreads = \"many\"\n").unwrap();
        let e = apply(cli.clone(), Some(&bad)).unwrap_err().to_string();
        assert!(e.starts_with("rask.toml: [worker] nthreads: "), "{e}");
        assert!(e.contains("many"), "{e}");
        let unknown = file("treads = 4\n").unwrap();
        let e = apply(cli.clone(), Some(&unknown)).unwrap_err().to_string();
        assert!(e.contains("treads: no such setting"), "{e}");
        assert!(e.contains("threads"), "{e}");
        let table = file("[wrker]\nnthreads = 2\n").unwrap();
        let e = apply(cli.clone(), Some(&table)).unwrap_err().to_string();
        assert!(e.contains("no command is named wrker"), "{e}");
        let list = file("format = [\"csv\", \"json\"]\n").unwrap();
        let e = apply(cli.clone(), Some(&list)).unwrap_err().to_string();
        assert!(e.contains("format: takes one value"), "{e}");
        let e = file("format = \n").unwrap_err().to_string();
        assert!(e.starts_with("rask.toml: not a TOML file: "), "{e}");
        let good = file("memory_limit = \"2GiB\"\n[serve]\nallow-path = [\"/data\", \"/tmp\"]\n");
        apply(cli, Some(&good.unwrap())).unwrap();
    }

    #[test]
    fn values_print_as_toml() {
        assert_eq!(toml_value("4"), "4");
        assert_eq!(toml_value("0.5"), "0.5");
        assert_eq!(toml_value("true"), "true");
        assert_eq!(toml_value("2GiB"), "\"2GiB\"");
        assert_eq!(toml_value("127.0.0.1"), "\"127.0.0.1\"");
        assert_eq!(toml_value(":8787"), "\":8787\"");
    }
}
