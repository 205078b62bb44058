//! Every lesson's command line: the same options, the same `--help`, the same errors.
//!
//! A bad option prints one line on stderr and exits with status 2; `--help` prints the
//! lesson's own description and the options, and exits 0.

use std::ffi::OsString;
use std::process;

/// What a lesson says about itself in `--help`, and where its Python twin lives.
pub struct Lesson {
    /// The topic, kebab-case: the package is `lesson-<name>`.
    pub name: &'static str,
    /// One paragraph: what the lesson shows.
    pub about: &'static str,
    /// The lesson's Python program, for side-by-side runs and measurements.
    pub python: &'static str,
}

/// The options every lesson understands.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// Run the full-size experiment instead of the demonstration.
    pub measure: bool,
    /// With `--measure`: print one JSON object per case instead of the table.
    pub json: bool,
    /// With `--measure`: tiny sizes and one run, to check that every case runs.
    pub quick: bool,
    /// With `--measure`: how many times each case is repeated.
    pub runs: usize,
    /// With `--measure`: leave out the Python cases.
    pub no_python: bool,
    /// Internal: the lesson re-executed itself as a child with this role and arguments
    /// (Python's "spawn" start method). Not for people to type.
    pub child: Option<Vec<String>>,
}

/// Runs per case when `--runs` is not given.
pub const DEFAULT_RUNS: usize = 5;

impl Args {
    /// `full` for a real measurement, `quick` under `--quick` (sizes for a smoke test).
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

impl Lesson {
    /// The package name: `lesson-<name>`.
    pub fn package(&self) -> String {
        format!("lesson-{}", self.name)
    }

    /// Parse this process's arguments; on `--help` print help and exit 0, on a bad
    /// argument print one line on stderr and exit 2.
    pub fn args(&self) -> Args {
        quiet_error_backtraces();
        match self.parse(std::env::args_os().skip(1)) {
            Ok(Parsed::Run(args)) => args,
            Ok(Parsed::Help) => {
                print!("{}", self.help());
                process::exit(0);
            }
            Err(message) => {
                eprintln!("{}: {message} (try --help)", self.package());
                process::exit(2);
            }
        }
    }

    /// The text `--help` prints.
    pub fn help(&self) -> String {
        let package = self.package();
        format!(
            "{package}: {about}\n\n\
             Usage: cargo run -p {package} [-- OPTIONS]\n\
             \x20      cargo run --release -p {package} -- --measure [--json] [--runs N]\n\n\
             Options:\n\
             \x20 --measure    run the full-size experiment: a table of median times (use --release)\n\
             \x20 --json       with --measure: one JSON object per case instead of the table\n\
             \x20 --runs N     with --measure: repeat each case N times (default {DEFAULT_RUNS})\n\
             \x20 --quick      with --measure: tiny sizes and one run, to check that every case runs\n\
             \x20 --no-python  with --measure: leave out the Python cases\n\
             \x20 -h, --help   print this help\n\n\
             The same lesson in Python: python3 {python}\n",
            about = self.about,
            python = self.python,
        )
    }

    fn parse(&self, argv: impl IntoIterator<Item = OsString>) -> Result<Parsed, String> {
        use lexopt::prelude::*;
        let mut args = Args { runs: DEFAULT_RUNS, ..Args::default() };
        let mut runs_given = false;
        let mut parser = lexopt::Parser::from_args(argv);
        while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
            match arg {
                Short('h') | Long("help") => return Ok(Parsed::Help),
                Long("measure") => args.measure = true,
                Long("json") => args.json = true,
                Long("quick") => args.quick = true,
                Long("no-python") => args.no_python = true,
                Long("runs") => {
                    let value = parser.value().map_err(|e| e.to_string())?;
                    let text = value.string().map_err(|e| e.to_string())?;
                    args.runs = match text.parse::<usize>() {
                        Ok(n) if n >= 1 => n,
                        _ => return Err(format!("--runs takes a whole number of 1 or more, not '{text}'")),
                    };
                    runs_given = true;
                }
                Long("child") => {
                    let rest = parser.raw_args().map_err(|e| e.to_string())?;
                    let rest: Vec<String> = rest.map(|a| a.to_string_lossy().into_owned()).collect();
                    if rest.is_empty() {
                        return Err("--child needs a role".into());
                    }
                    args.child = Some(rest);
                }
                _ => return Err(arg.unexpected().to_string()),
            }
        }
        let measure_only = args.json || args.quick || args.no_python || runs_given;
        if measure_only && !args.measure {
            return Err("--json, --runs, --quick and --no-python go with --measure".into());
        }
        if args.quick && !runs_given {
            args.runs = 1;
        }
        Ok(Parsed::Run(args))
    }
}

/// A lesson's errors are messages for the reader, printed by `main` on one line of stderr:
/// no backtrace under them, even where `RUST_BACKTRACE=1` is set (a panic, a bug, still gets
/// its backtrace). anyhow reads `RUST_LIB_BACKTRACE` before `RUST_BACKTRACE`.
fn quiet_error_backtraces() {
    let single = multiproc::proc::thread_count().is_ok_and(|n| n == 1);
    if single && std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: changing the environment is sound only while no other thread may read it,
        // and this process has only this thread (just counted; only this thread could start
        // another).
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

enum Parsed {
    Run(Args),
    Help,
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Lesson = Lesson { name: "demo", about: "a demo", python: "demo.py" };

    fn parse(line: &str) -> Result<Args, String> {
        match L.parse(line.split_whitespace().map(OsString::from))? {
            Parsed::Run(args) => Ok(args),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn options() {
        let a = parse("--measure --json --runs 3").unwrap();
        assert!(a.measure && a.json && a.runs == 3 && !a.quick);
        assert_eq!(parse("--measure --quick").unwrap().runs, 1);
        assert_eq!(parse("").unwrap().runs, DEFAULT_RUNS);
        let c = parse("--child greet alice").unwrap();
        assert_eq!(c.child.unwrap(), ["greet", "alice"]);
    }

    #[test]
    fn errors_are_one_line() {
        for bad in ["--bogus", "--runs", "--runs 0", "--runs x", "--json", "stray", "--child"] {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains('\n'), "{bad}: {e}");
        }
        assert_eq!(parse("-h").unwrap_err(), "help");
    }
}
