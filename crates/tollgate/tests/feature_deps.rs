//! What each feature set of the facade compiles, asked of `cargo tree` itself.
//!
//! A seller who talks to a remote facilitator (`default-features = false, features =
//! ["server"]`) must not compile a database client or a chain provider: the paywall knows only
//! `tollgate-core`'s `Facilitator` trait. A dependency added carelessly (a default feature that
//! pulls the whole facilitator back in) fails here instead of silently doubling every seller's
//! build. The README's feature table states the crate count of each feature set; it is
//! recounted here, so it cannot drift from `Cargo.lock`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

const README: &str = include_str!("../../../README.md");
const FACADE_MANIFEST: &str = include_str!("../Cargo.toml");

/// The README's table starts after this line.
const TABLE_MARKER: &str =
    "<!-- feature-table: checked by crates/tollgate/tests/feature_deps.rs -->";

/// Counts are for one platform, whatever machine runs the test: platform-specific
/// dependencies (`windows-sys`, `libc`, …) would otherwise change them.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Crates that mean a database or a chain client is compiled.
const NOT_IN_A_REMOTE_SELLER: &[&str] = &[
    "rusqlite",
    "libsqlite3-sys",
    "tokio-postgres",
    "alloy-provider",
    "revm",
];

/// Which of the facade's features to turn on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FeatureSet {
    /// `tollgate = "0.1"`: the default features.
    Default,
    /// `default-features = false, features = [...]`.
    Only(Vec<String>),
}

impl FeatureSet {
    /// Exactly `features` (in any order).
    fn only<S: AsRef<str>>(features: &[S]) -> Self {
        let mut features: Vec<String> = features.iter().map(|f| f.as_ref().to_owned()).collect();
        features.sort();
        features.dedup();
        Self::Only(features)
    }

    fn args(&self) -> Vec<String> {
        match self {
            Self::Default => Vec::new(),
            Self::Only(features) => vec![
                "--no-default-features".into(),
                "--features".into(),
                features.join(","),
            ],
        }
    }
}

/// The distinct packages (`name vX.Y.Z`) `cargo tree` lists for the facade with `features`,
/// following the dependency edges `edges` (`normal`, `no-dev`, …).
fn cargo_tree(features: &FeatureSet, edges: &str) -> BTreeSet<String> {
    // Cargo tells the tests it runs which cargo it is; `env!` covers a test binary started by
    // hand.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "-p", "tollgate", "-e", edges, "--prefix", "none"])
        .args(["--target", TARGET])
        .args(features.args());
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {:?}: {e}", PathBuf::from(&cargo)));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("cargo tree prints UTF-8");
    let packages: BTreeSet<String> = stdout
        .lines()
        // `[build-dependencies]` and similar headings are not packages.
        .filter(|line| !line.trim().is_empty() && !line.starts_with('['))
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().unwrap_or_default();
            let version = words.next().unwrap_or_default();
            format!("{name} {version}")
        })
        .collect();
    assert!(
        packages.iter().any(|p| p.starts_with("tollgate v")),
        "{command:?} did not list the facade itself:\n{stdout}"
    );
    packages
}

fn names(packages: &BTreeSet<String>) -> BTreeSet<&str> {
    packages
        .iter()
        .map(|p| p.split(' ').next().unwrap_or_default())
        .collect()
}

#[test]
fn a_remote_seller_compiles_no_database_and_no_chain_provider() {
    let server = cargo_tree(&FeatureSet::only(&["server"]), "normal");
    let server_names = names(&server);
    // The paywall and its HTTP facilitator client are there: the tree is the real one.
    for expected in ["tollgate-server", "tollgate-core", "reqwest"] {
        assert!(
            server_names.contains(expected),
            "`server` should compile {expected}: {server_names:?}"
        );
    }
    let found: Vec<&str> = NOT_IN_A_REMOTE_SELLER
        .iter()
        .copied()
        .filter(|name| server_names.contains(name))
        .collect();
    assert!(
        found.is_empty(),
        "`default-features = false, features = [\"server\"]` compiles {found:?}; \
         the paywall must depend only on tollgate-core's `Facilitator` trait \
         (see `cargo tree -p tollgate --no-default-features --features server -i {}`)",
        found.first().copied().unwrap_or_default()
    );

    // The same check sees them when they are there: with the in-process facilitator, the
    // ledger's databases and alloy's provider are compiled.
    let embedded = cargo_tree(&FeatureSet::only(&["server", "facilitator"]), "normal");
    let embedded_names = names(&embedded);
    for expected in ["rusqlite", "tokio-postgres", "alloy-provider"] {
        assert!(
            embedded_names.contains(expected),
            "`server` + `facilitator` should compile {expected}"
        );
    }
}

/// One row of the README's feature table.
#[derive(Debug)]
struct Row {
    /// The row's first cell, as written.
    label: String,
    features: FeatureSet,
    crates: usize,
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The facade's default features, from its manifest.
fn default_features() -> Vec<String> {
    let line = FACADE_MANIFEST
        .lines()
        .find(|l| l.trim_start().starts_with("default = ["))
        .expect("crates/tollgate/Cargo.toml has a `default = [...]` line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Rows look like ``| `server`, `facilitator` | 296 | … |``, or ``| default: `evm` | … |`` for
/// the default features.
fn readme_table() -> Vec<Row> {
    let start = README
        .find(TABLE_MARKER)
        .expect("README.md has the feature table marker");
    let mut rows = Vec::new();
    for line in README[start + TABLE_MARKER.len()..]
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| l.starts_with('|'))
        // The header and the alignment row.
        .skip(2)
    {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert!(
            cells.len() >= 3,
            "README feature table row {line:?}: too few cells"
        );
        let label = cells[0].to_owned();
        let named = backticked(cells[0]);
        let features = if label.starts_with("default") {
            assert_eq!(
                named,
                default_features(),
                "README row {label:?} must name the facade's default features"
            );
            FeatureSet::Default
        } else {
            assert!(!named.is_empty(), "README row {line:?} names no feature");
            FeatureSet::only(&named)
        };
        let crates = cells[1]
            .parse()
            .unwrap_or_else(|e| panic!("README row {line:?}: crate count {:?}: {e}", cells[1]));
        rows.push(Row {
            label,
            features,
            crates,
        });
    }
    rows
}

#[test]
fn readme_feature_table_counts_what_cargo_compiles() {
    let rows = readme_table();
    // The feature sets a user picks are all there.
    for wanted in [
        FeatureSet::only(&["server"]),
        FeatureSet::only(&["server", "facilitator"]),
        FeatureSet::only(&["client", "evm"]),
        FeatureSet::only(&["full"]),
        FeatureSet::Default,
    ] {
        assert!(
            rows.iter().any(|r| r.features == wanted),
            "README feature table has no row for {wanted:?}"
        );
    }
    let mut wrong = Vec::new();
    for row in &rows {
        let counted = cargo_tree(&row.features, "no-dev").len();
        if counted != row.crates {
            wrong.push(format!(
                "{}: README says {}, cargo tree counts {counted}",
                row.label, row.crates
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "README.md's feature table is out of date (distinct packages of `cargo tree -p \
         tollgate -e no-dev --target {TARGET}`); update these rows:\n{}",
        wrong.join("\n")
    );
}
