//! `mirror-guard cluster upgrade [--check | --finalize]`, `cluster
//! rollback` and `cluster migrate-store`, on files or on etcd.
//!
//! The caller has checked that the cluster's processes are stopped (on
//! etcd, the metadata's own checks refuse while an SC leads).

use std::io::Write;
use std::path::Path;

use mg_sc::upgrade::{self, Generations, Steps, Upgraded};

use crate::error::{CliError, Result};

pub fn run(sc: &Generations, check: bool, finalize: bool, mut steps: Steps) -> Result<()> {
    if check {
        let report = upgrade::check(sc)?;
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
        let record = upgrade::finalize(sc)?;
        println!(
            "✓ upgrade to {} finalized; generation {} pruned",
            record.current, record.previous
        );
        return Ok(());
    }
    let mut stderr = std::io::stderr();
    let outcome = upgrade::upgrade(sc, &mut steps, |done, total| {
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

pub fn rollback(sc: &Generations) -> Result<()> {
    let record = upgrade::rollback(sc)?;
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

/// `cluster migrate-store --to etcd://… [--check]`: `switch` records the
/// new store in `cluster.json` once the metadata is current on etcd.
pub fn migrate_store(
    data_dir: &Path,
    to: &str,
    prefix: &str,
    check: bool,
    switch: impl FnOnce(&str) -> Result<()>,
) -> Result<()> {
    let config = mg_sc::etcd::EtcdConfig::parse(to, prefix)
        .map_err(|reason| CliError::Client(format!("--to: {reason}")))?;
    let sc = data_dir.join("sc");
    if !sc.exists() {
        return Err(CliError::NoMetadata(data_dir.to_path_buf()));
    }
    let migration = mg_sc::migrate::to_etcd(&sc, &config, check)?;
    let counts: Vec<String> = migration
        .objects
        .iter()
        .map(|(kind, n)| {
            let (one, many) = match *kind {
                "spu" => ("SPU", "SPUs"),
                "topic" => ("topic", "topics"),
                "partition" => ("partition", "partitions"),
                "mirror" => ("mirror object", "mirror objects"),
                other => (other, other),
            };
            format!("{n} {}", if *n == 1 { one } else { many })
        })
        .collect();
    let at = format!("{to} under {}/{}", config.prefix, migration.generation);
    if !migration.written {
        println!(
            "✓ {} objects ({}) can move to {at}; the prefix is free",
            migration.total(),
            counts.join(", ")
        );
        if migration.leftovers > 0 {
            println!(
                "  {} keys a cut-short migration left there will be written again",
                migration.leftovers
            );
        }
        println!("  nothing was written: run it without --check to migrate");
        return Ok(());
    }
    switch(to)?;
    println!(
        "✓ migrated {} objects ({}) to {at}",
        migration.total(),
        counts.join(", ")
    );
    println!(
        "  cluster.json now names etcd; the files in {} stay as they were (a backup)",
        sc.display()
    );
    println!("  next: `mirror-guard cluster resume`");
    Ok(())
}
