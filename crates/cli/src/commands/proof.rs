//! `piiwatch proof`: the store's signed Merkle checkpoints, and proofs
//! against them that a third party checks without the store.
//!
//! `checkpoint` prints the latest signed checkpoint (a C2SP signed note) or
//! the verifier key; `inclusion` proves that a record is in a signed tree;
//! `consistency` that an older signed tree is a prefix of a newer one;
//! `check` verifies a checkpoint's signature and a proof against it with
//! nothing but the verifier key and the files (see `store::checkpoint`).
//! Nothing here writes to the store.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use store::checkpoint::{self, Checkpoint, Consistency, Inclusion, ProofError, VerifierKey};

use crate::commands::Usage;
use crate::ui::Format;

/// Arguments of `piiwatch proof`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Print the store's latest signed checkpoint (a C2SP signed note), or
    /// with --key its verifier key (the one to hand to third parties).
    Checkpoint(CheckpointArgs),
    /// Prove that a record is in a signed tree: JSON with the record's leaf
    /// data and hash, the tree's size and root, and the audit path.
    Inclusion(InclusionArgs),
    /// Prove that the signed tree of --from records is a prefix of the
    /// signed tree of --to records: JSON.
    Consistency(ConsistencyArgs),
    /// Check a signed checkpoint with a verifier key and, given one, a proof
    /// against it, without the store: what a third party runs. Non-zero
    /// exit with the reason when anything fails to check.
    Check(CheckArgs),
}

/// Arguments of `piiwatch proof checkpoint`.
#[derive(clap::Args)]
struct CheckpointArgs {
    /// The store directory.
    #[arg(long)]
    store: PathBuf,
    /// Print the verifier key (`checkpoint.pub`) instead of the checkpoint.
    #[arg(long)]
    key: bool,
    /// The checkpoint of this many records from the store's history
    /// (default: the latest).
    #[arg(long, conflicts_with = "key")]
    size: Option<u64>,
    /// Output format: `table` prints the note as it is signed.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Arguments of `piiwatch proof inclusion`.
#[derive(clap::Args)]
struct InclusionArgs {
    /// The store directory.
    #[arg(long)]
    store: PathBuf,
    /// The record, by its position in the ledger from 0.
    #[arg(long)]
    record: u64,
    /// The size of the signed tree to prove it in (default: the latest checkpoint's).
    #[arg(long)]
    size: Option<u64>,
    /// Output format: `json` is the proof `proof check --inclusion` reads.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
}

/// Arguments of `piiwatch proof consistency`.
#[derive(clap::Args)]
struct ConsistencyArgs {
    /// The store directory.
    #[arg(long)]
    store: PathBuf,
    /// The older signed tree's size.
    #[arg(long)]
    from: u64,
    /// The newer signed tree's size (default: the latest checkpoint's).
    #[arg(long)]
    to: Option<u64>,
    /// Output format: `json` is the proof `proof check --consistency` reads.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
}

/// Arguments of `piiwatch proof check`.
#[derive(clap::Args)]
struct CheckArgs {
    /// The verifier key file (`checkpoint.pub`, as `proof checkpoint --key` prints it).
    #[arg(long)]
    key: PathBuf,
    /// The signed checkpoint (as `proof checkpoint` prints it).
    #[arg(long)]
    checkpoint: PathBuf,
    /// An inclusion proof against the checkpoint.
    #[arg(long, conflicts_with = "consistency")]
    inclusion: Option<PathBuf>,
    /// A consistency proof from --old-checkpoint to the checkpoint.
    #[arg(long, requires = "old_checkpoint")]
    consistency: Option<PathBuf>,
    /// The older signed checkpoint the consistency proof starts from.
    #[arg(long, requires = "consistency")]
    old_checkpoint: Option<PathBuf>,
    /// Output format of the verdict (on standard output).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Runs `piiwatch proof ...`.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    match args.command {
        Command::Checkpoint(a) => show_checkpoint(a, out),
        Command::Inclusion(a) => inclusion(a, out),
        Command::Consistency(a) => consistency(a, out),
        Command::Check(a) => check(a, out),
    }
}

fn is_store(dir: &Path) -> Result<()> {
    if !dir.join("ledger").is_dir() {
        bail!("{} is not a piiwatch store (no ledger/)", dir.display());
    }
    if !dir.join(checkpoint::PUB_FILE).is_file() {
        bail!("{} has no checkpoints yet (they are signed when the store is next opened, by ingest)", dir.display());
    }
    Ok(())
}

/// The signed checkpoint of `size` records (the latest when `None`).
fn signed(store: &Path, size: Option<u64>) -> Result<(String, Checkpoint)> {
    let (note, latest) = checkpoint::latest(store)?;
    match size {
        None => Ok((note, latest)),
        Some(s) if s == latest.size => Ok((note, latest)),
        Some(s) => checkpoint::signed(store, s)?.ok_or_else(|| {
            Usage(format!("no signed checkpoint has {s} records (the latest has {})", latest.size)).into()
        }),
    }
}

fn usage_on_range(e: ProofError) -> anyhow::Error {
    match e {
        ProofError::Range(m) => Usage(m).into(),
        ProofError::Store(e) => e.into(),
    }
}

fn show_checkpoint(a: CheckpointArgs, out: &mut dyn Write) -> Result<()> {
    is_store(&a.store)?;
    let key = checkpoint::verifier_key(&a.store)?;
    let (note, cp) = signed(&a.store, a.size)?;
    match (a.format, a.key) {
        (Format::Json, _) => {
            let v = serde_json::json!({
                "origin": cp.origin, "size": cp.size, "root": checkpoint::encode_hash(&cp.root),
                "note": note, "key": key.to_string(),
            });
            writeln!(out, "{v}")?;
        }
        (Format::Table, true) => writeln!(out, "{key}")?,
        (Format::Table, false) => write!(out, "{note}")?,
    }
    Ok(())
}

fn inclusion(a: InclusionArgs, out: &mut dyn Write) -> Result<()> {
    is_store(&a.store)?;
    let (_, cp) = signed(&a.store, a.size)?;
    if a.record >= cp.size {
        return Err(Usage(format!("record {} is not in the signed tree of {} records", a.record, cp.size)).into());
    }
    let leaves = checkpoint::Leaves::open(&a.store)?;
    let proof = leaves.prove_inclusion(&a.store, &cp.origin, a.record, cp.size).map_err(usage_on_range)?;
    // What is handed out must check: a damaged leaves file fails here, not at the third party.
    proof.check(&cp).with_context(|| format!("the proof built from {} does not check", a.store.display()))?;
    match a.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&proof)?)?,
        Format::Table => {
            writeln!(out, "record {} of the tree of {} records ({})", proof.record, proof.tree_size, proof.origin)?;
            writeln!(out, "root       {}", proof.root)?;
            writeln!(out, "leaf hash  {}", proof.leaf_hash)?;
            for (i, h) in proof.audit_path.iter().enumerate() {
                writeln!(out, "path {i:<5} {h}")?;
            }
        }
    }
    Ok(())
}

fn consistency(a: ConsistencyArgs, out: &mut dyn Write) -> Result<()> {
    is_store(&a.store)?;
    let (_, new) = signed(&a.store, a.to)?;
    let (_, old) = signed(&a.store, Some(a.from))?;
    if old.size == 0 || old.size > new.size {
        return Err(Usage(format!(
            "a consistency proof goes from 1 record or more to as many or more (asked: {} to {})",
            old.size, new.size
        ))
        .into());
    }
    let leaves = checkpoint::Leaves::open(&a.store)?;
    let proof = leaves.prove_consistency(&new.origin, old.size, new.size).map_err(usage_on_range)?;
    proof.check(&old, &new).with_context(|| format!("the proof built from {} does not check", a.store.display()))?;
    match a.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&proof)?)?,
        Format::Table => {
            writeln!(out, "{} records -> {} records ({})", proof.old_size, proof.new_size, proof.origin)?;
            writeln!(out, "old root   {}", proof.old_root)?;
            writeln!(out, "new root   {}", proof.new_root)?;
            for (i, h) in proof.proof.iter().enumerate() {
                writeln!(out, "proof {i:<4} {h}")?;
            }
        }
    }
    Ok(())
}

fn read(path: &Path, what: &str) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))?;
    if bytes.len() > checkpoint::MAX_NOTE {
        bail!("the {what} {} is larger than {} bytes", path.display(), checkpoint::MAX_NOTE);
    }
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("the {what} {} is not UTF-8", path.display()))
}

fn open_checkpoint(path: &Path, key: &VerifierKey, what: &str) -> Result<Checkpoint> {
    Checkpoint::open(&read(path, what)?, key).with_context(|| format!("the {what} {} does not check", path.display()))
}

fn check(a: CheckArgs, out: &mut dyn Write) -> Result<()> {
    let key = VerifierKey::parse(&read(&a.key, "verifier key")?)
        .with_context(|| format!("{} is not a verifier key", a.key.display()))?;
    let cp = open_checkpoint(&a.checkpoint, &key, "checkpoint")?;
    let what = if let Some(p) = &a.inclusion {
        let proof: Inclusion = serde_json::from_str(&read(p, "inclusion proof")?)
            .with_context(|| format!("{} is not an inclusion proof", p.display()))?;
        proof.check(&cp).with_context(|| format!("the inclusion proof {} does not check", p.display()))?;
        format!("record {} is in it", proof.record)
    } else if let (Some(p), Some(o)) = (&a.consistency, &a.old_checkpoint) {
        let old = open_checkpoint(o, &key, "older checkpoint")?;
        let proof: Consistency = serde_json::from_str(&read(p, "consistency proof")?)
            .with_context(|| format!("{} is not a consistency proof", p.display()))?;
        proof.check(&old, &cp).with_context(|| format!("the consistency proof {} does not check", p.display()))?;
        format!("it extends the signed tree of {} records", old.size)
    } else {
        "signature checks".to_owned()
    };
    match a.format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::json!({
                "ok": true, "origin": cp.origin, "size": cp.size,
                "root": checkpoint::encode_hash(&cp.root), "checked": what,
            })
        )?,
        Format::Table => writeln!(out, "ok: {} at {} records: {what}", cp.origin, cp.size)?,
    }
    Ok(())
}
