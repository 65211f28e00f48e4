//! `serve`: the one binary. Parses the command line, sets up logging, and hands off to the library.
mod cli;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use ensemble_serve::data::Split;
use ensemble_serve::{config, data, features, paths, runtime};

use cli::{Cli, Command, DataCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match dispatch(cli.command.unwrap_or_else(|| Command::Run(Default::default()))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, causes joined; no backtrace for an operator-facing error.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: cli::LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,ort=warn".into());
    // Colour only for a person at a terminal: `serve run > server.log` gets plain text (and NO_COLOR is honoured).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        cli::LogFormat::Text => builder.init(),
        cli::LogFormat::Json => builder.json().init(),
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run(args) => run_server(args),
        Command::Train(args) => run_train(args),
        Command::Export(args) => run_export(&args.run_dir, &args.target, &args.location.data_dir),
        Command::Eval(args) => run_eval(args),
        Command::Data(cmd) => run_data(cmd),
        Command::Health(args) => {
            Ok(ensemble_serve::serve::probe::ready(&args.url, std::time::Duration::from_secs(args.timeout_s))?)
        }
    }
}

fn run_server(args: cli::RunArgs) -> Result<()> {
    let mut cfg: config::ServerConfig = if args.config.is_file() {
        config::load(&args.config)?
    } else {
        tracing::warn!(path = %args.config.display(), "server config not found; using defaults");
        Default::default()
    };
    if let Some(bind) = args.bind {
        cfg.bind = bind;
    }
    if let Some(bind) = args.grpc_bind {
        cfg.grpc_bind = bind;
    }
    if let Some(dir) = args.models_dir {
        cfg.models_dir = dir;
    }
    if let Some(t) = args.admin_token {
        cfg.admin_token = t;
    }
    if let Some(m) = args.default_model {
        cfg.default_model = m;
    }
    if let Some(p) = args.execution_provider {
        cfg.execution_provider = p;
    }
    if let Some(t) = args.threads {
        cfg.intra_op_threads = t;
    }
    if let Some(ratio) = args.batch_cooldown {
        cfg.batch_cooldown = ratio;
    }
    if let Some(on) = args.idle_spin {
        cfg.idle_spin = on;
    }
    if let Some(on) = args.idle_poll {
        cfg.idle_poll = on;
    }
    // Refuse bad batching/routing keys before loading ONNX Runtime or any model.
    ensemble_serve::serve::batch_limits(&cfg)?;
    let library = runtime::resolve_library(args.ort_lib.as_deref().or(cfg.ort_library.as_deref()));
    let env = runtime::init(&library)?;
    tracing::info!(library = %library.display(), "ONNX Runtime loaded");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(ensemble_serve::serve::serve(env, cfg))?;
    Ok(())
}

fn run_data(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Inspect(args) => {
            let mut spec = features::DatasetSpec::load(&args.spec, &args.location.data_dir)?;
            apply_overrides(&mut spec, &args);
            let report = data::inspect::inspect(&spec, !args.quiet)?;
            print!("{}", report.render(&spec));
            Ok(())
        }
        DataCommand::Encode(args) => {
            let spec = features::DatasetSpec::load(&args.spec, &args.location.data_dir)?;
            let root = args.cache_dir.unwrap_or_else(|| paths::cache_dir().join("datasets"));
            let ds = data::Dataset::open(&spec, &root, true)?;
            let state = if ds.from_cache { "up to date" } else { "built" };
            println!("{} ({state}): {}", spec.name, ds.dir.display());
            for p in &ds.parts {
                println!("  {:<5} {:>10} rows  label mean {:.4}  skipped {}", p.part, p.rows, p.label_mean, p.skipped);
            }
            Ok(())
        }
        DataCommand::Build(args) => {
            let (table, ratios) = match args.source {
                cli::RawSource::Frappe => (data::raw::frappe(&args.src, args.seed)?, [0.7, 0.2, 0.1]),
                cli::RawSource::Movielens => (data::raw::movielens_100k(&args.src, args.seed)?, [0.8, 0.1, 0.1]),
            };
            let sizes = data::raw::write_splits(&table, ratios, &args.out)
                .with_context(|| format!("writing splits to {}", args.out.display()))?;
            println!(
                "{} rows → {}: train {} / valid {} / test {}",
                table.rows.len(),
                args.out.display(),
                sizes[0],
                sizes[1],
                sizes[2]
            );
            Ok(())
        }
        DataCommand::Synth(args) => {
            let cfg = data::synth::SynthConfig { rows: args.rows, seed: args.seed, scale: args.scale };
            let start = std::time::Instant::now();
            let ctr = data::synth::generate(&cfg, &args.out)?;
            println!(
                "SYNTHETIC Criteo-shaped data: {} rows → {} (label mean {ctr:.4}) in {:.1} s",
                args.rows,
                args.out.display(),
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

fn run_eval(args: cli::EvalArgs) -> Result<()> {
    let dir = ensemble_serve::eval::artifact_dir(&args.model_dir)?;
    let artifact = ensemble_serve::artifact::Artifact::load(&dir)?;
    let spec_path = args.spec.unwrap_or_else(|| format!("config/datasets/{}.toml", artifact.manifest.dataset).into());
    let mut spec = features::DatasetSpec::load(&spec_path, &args.location.data_dir)
        .with_context(|| format!("dataset spec {}", spec_path.display()))?;
    let part = args.split;
    if let Some(file) = &args.file {
        // The file is scored whole, in place of the split (a one-file spec's row filter no longer applies).
        spec.files.split = None;
        match part {
            Split::Train => spec.files.train = file.clone(),
            Split::Valid => spec.files.valid = Some(file.clone()),
            Split::Test => spec.files.test = Some(file.clone()),
        }
    }
    if let Some(p) = args.on_error {
        spec.on_error = policy(p);
    }
    let library = runtime::resolve_library(args.ort_lib.as_deref());
    let env = runtime::init(&library)?;
    let opts = ensemble_serve::eval::EvalOptions {
        part,
        batch_rows: args.batch_size as usize,
        intra_threads: args.threads,
        progress: !args.quiet,
        other_file: args.file.is_some(),
    };
    let report = ensemble_serve::eval::evaluate(env, &artifact, &spec, &opts)
        .with_context(|| format!("evaluating {}", dir.display()))?;
    print!("{}", report.render());
    if let Some(path) = &args.json {
        let bytes = serde_json::to_vec_pretty(&report)?;
        data::atomic_write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    Ok(())
}

fn policy(p: cli::Policy) -> features::ErrorPolicy {
    match p {
        cli::Policy::Skip => features::ErrorPolicy::Skip,
        cli::Policy::Fail => features::ErrorPolicy::Fail,
    }
}

fn apply_overrides(spec: &mut features::DatasetSpec, args: &cli::InspectArgs) {
    if let Some(t) = &args.train {
        spec.files.train = t.clone();
    }
    if let Some(v) = &args.valid {
        spec.files.valid = Some(v.clone());
    }
    if let Some(t) = &args.test {
        spec.files.test = Some(t.clone());
    }
    if let Some(p) = args.on_error {
        spec.on_error = policy(p);
    }
}

#[cfg(feature = "train")]
fn run_train(args: cli::TrainArgs) -> Result<()> {
    use ensemble_serve::train;
    let mut cfg: config::TrainConfig = config::load(&args.config)?;
    if let Some(d) = args.device {
        cfg.device = d;
    }
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    args.overrides.apply(&mut cfg);
    // Refuse out-of-range keys before reading any data.
    cfg.validate().map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let spec = features::DatasetSpec::load(&cfg.dataset, &args.location.data_dir)?;
    let data = data::Dataset::open(&spec, &paths::cache_dir().join("datasets"), true)?;
    tracing::info!(dataset = %spec.name, rows = data.train.rows, cached = data.from_cache, "training data ready");
    let name = cfg.run_name(&spec.name);
    let outcome = train::train(&cfg, &data, !args.quiet, |e| tracing::info!("{}", train::report::epoch_line(e)))?;
    let dir = args.output.unwrap_or_else(|| std::path::PathBuf::from("runs").join(&name));
    let dir =
        train::report::write_run(&dir, &cfg, &outcome, &data).with_context(|| format!("writing {}", dir.display()))?;
    print!("{}", train::report::markdown(&cfg, &outcome, &data));
    println!("\nrun written to {}", dir.display());
    if !args.no_export {
        run_export(&dir, &args.target, &args.location.data_dir)?;
    }
    Ok(())
}

#[cfg(feature = "train")]
fn run_export(run: &std::path::Path, target: &cli::ExportTarget, data_dir: &std::path::Path) -> Result<()> {
    use ensemble_serve::onnx::Precision;
    let opts = ensemble_serve::export::ExportOptions {
        models_dir: target.models_dir.clone(),
        name: target.model_name.clone(),
        version: target.model_version.clone(),
        ort_library: runtime::resolve_library(target.ort_lib.as_deref()),
        profile_runs: target.profile_runs,
        precisions: if target.no_int8 { vec![Precision::Fp32] } else { vec![Precision::Fp32, Precision::Int8] },
        data_dir: data_dir.to_path_buf(),
        fuse_first_layers: target.fuse_first_layers,
        int8_weights: target.int8_weights,
        int8_activations: target.int8_activations,
        u8_embeddings: target.int8_embeddings,
    };
    let dir = ensemble_serve::export::export_run(run, &opts).with_context(|| format!("exporting {}", run.display()))?;
    println!("artifact written to {}", dir.display());
    Ok(())
}

#[cfg(not(feature = "train"))]
fn run_export(_: &std::path::Path, _: &cli::ExportTarget, _: &std::path::Path) -> Result<()> {
    anyhow::bail!(
        "this binary was built without the `train` feature (no libtorch); build with default features to export"
    )
}

#[cfg(not(feature = "train"))]
fn run_train(_: cli::TrainArgs) -> Result<()> {
    anyhow::bail!(
        "this binary was built without the `train` feature (no libtorch); build with default features to train"
    )
}
