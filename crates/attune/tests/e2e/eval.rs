//! `attune eval` end to end on a small order file whose answer is worked out
//! by hand, so the evaluation cannot silently drift.
//!
//! Held out (each user's last order): a {1, 4}, b {2, 5}, d {5}; c has one order
//! and is not evaluated. Own most frequent: a [1, 3, 2] (1 twice; 3 more recent
//! than 2), b [1, 2], d [2, 4]. NDCG@10: a 1 / (1 + 1/log2 3), b (1/log2 3) /
//! (1 + 1/log2 3), d 0: mean 1/3. Discovery by popularity: a, who bought 1, 2
//! and 3, is shown 4 first (a hit); 5 was never bought before, so b and d miss.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::process::{Command, Output};

fn eval(args: &[&str]) -> Output {
    let input = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/eval-small.csv");
    Command::new(env!("CARGO_BIN_EXE_attune"))
        .args(["eval", "--input", input])
        .args(args)
        .output()
        .unwrap()
}

fn row<'a>(stdout: &'a str, task: &str, model: &str) -> &'a str {
    let prefix = format!("| {task} | {model} |");
    stdout
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no row {prefix} in\n{stdout}"))
}

#[test]
fn eval_scores_the_held_out_baskets_as_worked_out_by_hand() {
    let output = eval(&[]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("14 lines, 4 users, 5 items, 8 baskets"),
        "{stdout}"
    );
    // NDCG, precision, recall, hit rate, coverage ({1, 2, 3, 4} of 5), users.
    assert_eq!(
        row(&stdout, "next basket", "own-most-frequent"),
        "| next basket | own-most-frequent | 0.3333 | 0.0667 | 0.3333 | 0.6667 | 0.8000 | 3 |"
    );
    let popular = row(&stdout, "discovery", "popularity");
    assert!(
        popular.starts_with("| discovery | popularity | 0.3333 |"),
        "{popular}"
    );
    assert!(popular.ends_with("| 3 |"), "{popular}");
    // Every model runs on both tasks; own-most-frequent cannot discover.
    for model in ["popularity", "tifu", "item-knn", "rp3beta", "ease", "blend"] {
        row(&stdout, "next basket", model);
        row(&stdout, "discovery", model);
    }
    assert!(!stdout.contains("| discovery | own-most-frequent |"));
}

#[test]
fn eval_runs_one_task_and_the_models_asked_for() {
    let output = eval(&[
        "--task",
        "next-basket",
        "--models",
        "blend,own-most-frequent",
    ]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| next")).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(!stdout.contains("| discovery |"));
    // The blend's own items come first, so it finds a's and b's repeat items too.
    assert!(row(&stdout, "next basket", "blend").ends_with("| 3 |"));
}

#[test]
fn eval_refuses_bad_input_and_says_why() {
    let missing = Command::new(env!("CARGO_BIN_EXE_attune"))
        .args(["eval", "--input", "/nonexistent/orders.csv"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot open"));
    let knob = eval(&["--set", "basket_decay=2"]);
    assert!(!knob.status.success());
    assert!(String::from_utf8_lossy(&knob.stderr).contains("basket_decay"));
    let unknown = eval(&["--set", "colour=blue"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown knob"));
}

#[test]
fn the_tuning_split_predicts_the_order_before_the_last() {
    // Only a has three orders: trained on {1, 2}, asked for {1, 3}; own most
    // frequent [1, 2] hits at rank 1: NDCG 1 / (1 + 1/log2 3).
    let output = eval(&["--split", "tuning", "--task", "next-basket"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("second-to-last basket held out"),
        "{stdout}"
    );
    assert_eq!(
        row(&stdout, "next basket", "own-most-frequent"),
        "| next basket | own-most-frequent | 0.6131 | 0.1000 | 0.5000 | 1.0000 | 0.4000 | 1 |"
    );
}
