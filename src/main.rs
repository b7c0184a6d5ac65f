//! The `imgforge` binary: parse arguments, call the library, map errors to
//! exit codes (0 ok, 1 failure, 2 usage, 3 verify found a difference, fsck a bad
//! object, bundle verify or install a refused bundle).

mod cli;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match run(&args.command, args.quiet) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", imgforge::ops::render_error(&e));
            if is_refusal(&e) {
                ExitCode::from(3)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Exit 0 when the command succeeded.
fn done<T>(r: anyhow::Result<T>) -> anyhow::Result<ExitCode> {
    r.map(|_| ExitCode::SUCCESS)
}

/// Exit 0, or 3 when a check found a difference or a bad object.
fn checked(clean: bool) -> ExitCode {
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// One command: its options from the arguments, the library's entry point.
/// A flat dispatch, one arm per command (an options struct and one call),
/// so it runs past 80 lines; anything longer goes into a function below.
fn run(command: &cli::Command, quiet: bool) -> anyhow::Result<ExitCode> {
    use cli::Command as C;
    use imgforge::ops;
    match command {
        C::Check(c) => done(ops::check(&c.to_options(), quiet)),
        C::Lock {
            common,
            locked,
            explain,
        } => done(lock(common, *locked, explain.as_deref(), quiet)),
        C::Build {
            common,
            build,
            format,
        } => {
            let mut opts = build.to_options(common, quiet);
            opts.json = *format == cli::Format::Json;
            done(ops::build(&opts))
        }
        C::Verify {
            common,
            build,
            against,
            format,
        } => ops::verify(&ops::VerifyOptions {
            build: build.to_options(common, quiet),
            against: against.clone(),
            json: *format == cli::Format::Json,
        })
        .map(checked),
        C::Push(p) => done(ops::push(
            &p.to_options(),
            p.format == cli::Format::Json,
            quiet,
        )),
        C::Update {
            common,
            packages,
            dry_run,
            into,
        } => done(ops::update::update(&ops::update::UpdateOptions {
            common: common.to_options(),
            packages: packages.clone(),
            dry_run: *dry_run,
            into: into.clone(),
            quiet,
        })),
        C::Gc {
            trees,
            dry_run,
            max_size,
            cache,
        } => done(gc(trees, *dry_run, *max_size, cache, quiet)),
        C::Fsck { out, cache } => fsck(out, cache, quiet),
        C::Attest(cli::AttestCommand::Verify { key, path }) => attest_verify(path, key),
        C::Bundle(b) => bundle(b, quiet),
        C::Vendor {
            dir,
            sources,
            common,
        } => done(ops::vendor::vendor(&ops::vendor::VendorOptions {
            common: common.to_options(),
            dir: dir.clone(),
            sources: *sources,
            quiet,
        })),
        C::Sources {
            out,
            output,
            all,
            common,
        } => done(ops::sources::sources(&ops::sources::SourcesOptions {
            common: common.to_options(),
            out: out.clone(),
            dest: output.clone(),
            all: *all,
            quiet,
        })),
        C::Init { dir, sources } => done(ops::init::init(&ops::init::InitOptions {
            common: sources.to_options(),
            dir: dir.clone(),
            quiet,
        })),
        C::Add {
            pin,
            packages,
            build,
        } => {
            ops::add::add(&pin.to_options(packages, quiet))?;
            if *build {
                ops::build(&pin.build_options(quiet))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        C::Remove { pin, packages } => done(ops::remove::remove(&pin.to_options(packages, quiet))),
        C::Query {
            common,
            package,
            file,
            format,
        } => query(common, package, file, *format),
        C::Completions { shell } => {
            cli::completions(*shell, &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        C::Man { out } => done(cli::man(out.as_deref(), &mut std::io::stdout())),
    }
}

/// `imgforge lock [--explain PACKAGE]`.
fn lock(
    common: &cli::CommonArgs,
    locked: bool,
    explain: Option<&str>,
    quiet: bool,
) -> anyhow::Result<()> {
    let lock = imgforge::ops::lock(&common.to_options(), locked, quiet)?;
    if let Some(p) = explain {
        print!("{}", imgforge::ops::explain(&lock, p)?);
    }
    Ok(())
}

/// `imgforge gc`: the cache directory as the other commands find it.
fn gc(
    trees: &[PathBuf],
    dry_run: bool,
    max_size: Option<u64>,
    cache: &Option<PathBuf>,
    quiet: bool,
) -> anyhow::Result<()> {
    use imgforge::ops::{self, gc};
    gc::gc(&gc::GcOptions {
        trees: trees.to_vec(),
        cache: ops::cache_dir(&ops::CommonOptions {
            recipes: PathBuf::new(),
            base: None,
            mirror: None,
            apt: true,
            cache: cache.clone(),
        }),
        dry_run,
        max_size,
        quiet,
    })
    .map(|_| ())
}

/// `imgforge fsck`: the report on stdout when clean, else on stderr, exit 3.
fn fsck(out: &Option<PathBuf>, cache: &Option<PathBuf>, quiet: bool) -> anyhow::Result<ExitCode> {
    use imgforge::ops::fsck;
    let r = fsck::fsck(&fsck::FsckOptions {
        out: out.clone(),
        cache: cache.clone(),
        quiet,
    })?;
    if r.is_clean() {
        println!("{}", r.render());
    } else {
        eprintln!("{}", r.render());
    }
    Ok(checked(r.is_clean()))
}

/// `imgforge attest verify`: one line per verified subject.
fn attest_verify(path: &std::path::Path, key: &std::path::Path) -> anyhow::Result<ExitCode> {
    for v in imgforge::attest::verify::verify(path, key)? {
        for (name, digest) in &v.subjects {
            println!(
                "verified {name} {digest} ({}, key {})",
                v.envelope.display(),
                v.keyid
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `imgforge query`: text or JSON on stdout.
fn query(
    common: &cli::CommonArgs,
    package: &Option<String>,
    file: &Option<String>,
    format: cli::Format,
) -> anyhow::Result<ExitCode> {
    use imgforge::ops::query;
    let hits = query::query(&query::QueryOptions {
        common: common.to_options(),
        package: package.clone(),
        file: file.clone(),
    })?;
    if format == cli::Format::Json {
        println!("{}", query::render_json(&hits));
    } else {
        print!("{}", query::render_text(&hits));
    }
    Ok(ExitCode::SUCCESS)
}

/// A bundle that verification refused (exit 3, like fsck), not a failure to run.
fn is_refusal(e: &anyhow::Error) -> bool {
    e.downcast_ref::<imgforge::bundle::BundleError>()
        .is_some_and(|b| b.is_refusal())
}

/// `imgforge bundle [verify|install]`.
fn bundle(b: &cli::BundleArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    match &b.command {
        None => imgforge::ops::bundle::write(&b.to_options(), quiet).map(|_| ExitCode::SUCCESS),
        Some(cli::BundleCommand::Verify { verify, format }) => {
            imgforge::ops::bundle::verify(&verify.to_options(), quiet).map(|r| {
                if *format == cli::Format::Json {
                    let v = imgforge::ops::bundle::to_json(&r);
                    println!(
                        "{}",
                        String::from_utf8_lossy(&imgforge::json::to_canonical(&v))
                    );
                } else {
                    println!("{}", imgforge::ops::bundle::describe(&r));
                }
                ExitCode::SUCCESS
            })
        }
        Some(cli::BundleCommand::Install {
            verify,
            to: Some(to),
            registry,
            jobs,
            format,
            ..
        }) => {
            let opts = imgforge::bundle::registry::RegistryOptions {
                verify: verify.to_options(),
                connect: registry.to_connect(to),
                jobs: *jobs,
            };
            let json = *format == cli::Format::Json;
            imgforge::ops::bundle::install_to(&opts, json, quiet).map(|_| ExitCode::SUCCESS)
        }
        Some(cli::BundleCommand::Inventory {
            from,
            output,
            registry,
            ..
        }) => {
            use imgforge::bundle::inventory::{InventoryOptions, Source};
            let opts = InventoryOptions {
                from: match from {
                    Some(f) => Source::Registry(registry.to_connect(f)),
                    None => Source::Docker("docker".into()),
                },
                dest: output.clone(),
            };
            imgforge::ops::bundle::inventory(&opts, quiet).map(|_| ExitCode::SUCCESS)
        }
        Some(cli::BundleCommand::Install { verify, .. }) => {
            let opts = imgforge::bundle::install::InstallOptions {
                verify: verify.to_options(),
                docker: "docker".into(),
            };
            imgforge::ops::bundle::install(&opts, quiet).map(|_| ExitCode::SUCCESS)
        }
    }
}
