//! `mirror-guard cluster upgrade [--check | --finalize]` and `cluster rollback`.
//!
//! The caller has checked that the cluster's processes are stopped.

use std::io::Write;
use std::path::Path;

use mg_sc::upgrade::{self, Steps, Upgraded};

use crate::error::{CliError, Result};

pub fn run(data_dir: &Path, check: bool, finalize: bool, mut steps: Steps) -> Result<()> {
    let sc = data_dir.join("sc");
    if !sc.exists() {
        return Err(CliError::NoMetadata(data_dir.to_path_buf()));
    }
    if check {
        let report = upgrade::check(&sc)?;
        print!("{}", report.render());
        return if report.upgradable() {
            if report.needs_migration() {
                println!("✓ every object can be upgraded: run `mirror-guard cluster upgrade`");
            } else {
                println!("✓ the metadata is up to date");
            }
            Ok(())
        } else {
            Err(CliError::NotUpgradable)
        };
    }
    if finalize {
        let record = upgrade::finalize(&sc)?;
        println!(
            "✓ upgrade to {} finalized; generation {} pruned",
            record.current, record.previous
        );
        return Ok(());
    }
    let mut stderr = std::io::stderr();
    let outcome = upgrade::upgrade(&sc, &mut steps, |done, total| {
        // A progress bar on stderr, redrawn every 1% or so.
        if total >= 100 && done % (total / 100).max(1) != 0 && done != total {
            return;
        }
        let width = 30;
        let filled = done * width / total.max(1);
        let _ = write!(
            stderr,
            "\rmigrating [{}{}] {done}/{total}",
            "#".repeat(filled),
            ".".repeat(width - filled)
        );
        if done == total {
            let _ = writeln!(stderr);
        }
    })?;
    match outcome {
        Upgraded::UpToDate => println!("✓ the metadata is up to date; nothing to migrate"),
        Upgraded::Migrated {
            previous,
            current,
            objects,
        } => {
            println!(
                "✓ migrated {objects} objects into generation {current}; {previous} is kept as a backup"
            );
            println!(
                "  next: `mirror-guard cluster resume`, then `mirror-guard cluster upgrade --finalize`"
            );
            println!(
                "  (or, before finalizing, `mirror-guard cluster rollback` to return to {previous})"
            );
        }
    }
    Ok(())
}

pub fn rollback(data_dir: &Path) -> Result<()> {
    let record = upgrade::rollback(&data_dir.join("sc"))?;
    println!(
        "✓ rolled back to generation {}; {} removed",
        record.previous, record.current
    );
    println!(
        "  the binary that wrote {} can resume the cluster",
        record.previous
    );
    Ok(())
}
