//! `schemathesis run --checks all` against the live server's `/openapi.json` on the shipped models: every
//! operation, positive and negative cases, response schemas, status codes, content types, headers and auth.
//! tests/openapi/ holds its settings (two documented statuses its defaults do not know) and the hooks that
//! apply the two cross-field rules JSON Schema cannot state to schema-valid cases.
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::server::Server;

/// Hypothesis examples per operation: enough for well over 500 cases across the 24 operations.
const MAX_EXAMPLES: &str = "40";
const TOKEN: &str = "schemathesis-token";

#[test]
fn schemathesis_all_checks_find_no_failure() {
    let Some(st) = common::test_tool("st") else { return };
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let server = Server::start(&repo.join("models"), &["--admin-token", TOKEN]);
    let settings = repo.join("tests/openapi");
    let scratch = tempfile::tempdir().unwrap(); // hypothesis keeps its example database in the working dir
    let out = Command::new(st)
        .current_dir(scratch.path())
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &settings)
        .env("NO_COLOR", "1")
        .arg("--config-file")
        .arg(settings.join("schemathesis.toml"))
        .args(["run", &format!("{}/openapi.json", server.base), "--checks", "all"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}"), "--max-examples", MAX_EXAMPLES, "--seed", "20261203"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found failures (report above)");
    let summary = report.lines().find(|l| l.contains(" generated, ")).expect("a test-case summary");
    let generated: usize = summary.split_whitespace().next().unwrap().parse().unwrap();
    assert!(summary.contains(&format!("{generated} passed")), "every case passed: {summary}");
    assert!(generated >= 500, "at least 500 cases: {summary}");
    // A warning means part of the document went untested (an unresolvable reference, an unreadable answer).
    assert!(!report.contains("WARNINGS"), "schemathesis warned (report above)");
}
