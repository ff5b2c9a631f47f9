//! `tollgate bench`'s Solana section, run as a user runs it: the embedded Solana devnet's
//! `/verify` and `/settle` reported with their ratios to the EVM ones of the same run. A smoke
//! run with tiny counts: the figures are for humans, the test checks the section works, that
//! every settlement landed, and that the ratios are the rates' quotients (no timing bound).

#![cfg(feature = "solana")]

use std::process::Command;

/// One row of the section's table: count, req/s and the ratio to the EVM baseline.
#[derive(Debug)]
struct Row {
    count: usize,
    per_sec: f64,
    ratio: f64,
}

fn row(text: &str, label: &str) -> Row {
    let line = text
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?}: {text}"));
    let fields: Vec<&str> = line[label.len()..].split_whitespace().collect();
    let field = |i: usize| -> &str {
        fields
            .get(i)
            .copied()
            .unwrap_or_else(|| panic!("field {i} of {line:?}"))
    };
    let number = |s: &str| -> f64 { s.parse().unwrap_or_else(|_| panic!("{s:?} in {line:?}")) };
    Row {
        count: number(field(0)) as usize,
        per_sec: number(field(1)),
        ratio: number(field(2).trim_end_matches('x')),
    }
}

#[test]
fn bench_solana_reports_verify_and_settle_as_ratios_to_evm() {
    let payments = 12;
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([
            "bench",
            "--requests",
            "40",
            "--payments",
            "4",
            "--concurrency",
            "4",
            "--settle-payments",
            "0",
            "--identity-rows",
            "0",
            "--discovery-resources",
            "0",
            "--channels",
            "0",
            "--solana",
            &payments.to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("\nSolana (exact, SPL Token"), "{text}");

    let evm_verify = row(&text, "EVM (devnet) POST /verify");
    let evm_settle = row(&text, "EVM (devnet) POST /settle (one tx per payment)");
    let verify = row(&text, "Solana POST /verify");
    let settle = row(&text, "Solana POST /settle (confirmed)");
    // The counts asked for: /verify as many as --requests, /settle --solana payments; the EVM
    // baselines are the run's own (--requests and --payments).
    assert_eq!(
        (
            evm_verify.count,
            evm_settle.count,
            verify.count,
            settle.count
        ),
        (40, 4, 40, payments),
        "{text}"
    );
    for r in [&evm_verify, &evm_settle, &verify, &settle] {
        assert!(r.per_sec > 0.0 && r.ratio > 0.0, "{r:?}: {text}");
    }
    assert!((evm_verify.ratio - 1.0).abs() < 1e-9, "{text}");
    assert!((evm_settle.ratio - 1.0).abs() < 1e-9, "{text}");
    // The ratios are the Solana rates over the EVM rates printed beside them (the rates are
    // printed rounded to whole requests/s, the ratios to 3 decimals).
    for (solana, evm) in [(&verify, &evm_verify), (&settle, &evm_settle)] {
        let low = (solana.per_sec - 0.5).max(0.0) / (evm.per_sec + 0.5) - 0.0005;
        let high = (solana.per_sec + 0.5) / (evm.per_sec - 0.5).max(1e-9) + 0.0005;
        assert!(
            (low..=high).contains(&solana.ratio),
            "{solana:?} vs {evm:?}: {text}"
        );
    }
    // Every settlement answered with success, each with its own transaction, and the payee
    // received exactly that many payments (the section checks the balance on chain).
    assert!(
        text.contains(&format!(
            "Solana settled: {payments} of {payments} payments, each in its own confirmed \
             transaction; payee +{} atomic units",
            payments * 1_000
        )),
        "{text}"
    );
    assert!(
        text.contains("Solana /verify = ") && text.contains("x EVM /settle (EVM on devnet)"),
        "{text}"
    );
}
