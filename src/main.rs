//! The `imgforge` binary: parse arguments, call the library, map errors to
//! exit codes (0 ok, 1 failure, 2 usage, 3 verify found a difference, fsck a bad
//! object, bundle verify or install a refused bundle).

mod cli;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let quiet = args.quiet;
    let result = match &args.command {
        cli::Command::Check(c) => {
            imgforge::ops::check(&c.to_options(), quiet).map(|_| ExitCode::SUCCESS)
        }
        cli::Command::Lock {
            common,
            locked,
            explain,
        } => imgforge::ops::lock(&common.to_options(), *locked, quiet)
            .and_then(|lock| match explain {
                Some(p) => imgforge::ops::explain(&lock, p).map(|s| print!("{s}")),
                None => Ok(()),
            })
            .map(|_| ExitCode::SUCCESS),
        cli::Command::Build {
            common,
            build,
            format,
        } => {
            let mut opts = build.to_options(common, quiet);
            opts.json = *format == cli::Format::Json;
            imgforge::ops::build(&opts).map(|_| ExitCode::SUCCESS)
        }
        cli::Command::Verify {
            common,
            build,
            against,
            format,
        } => imgforge::ops::verify(&imgforge::ops::VerifyOptions {
            build: build.to_options(common, quiet),
            against: against.clone(),
            json: *format == cli::Format::Json,
        })
        .map(|same| {
            if same {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }),
        cli::Command::Push(p) => {
            imgforge::ops::push(&p.to_options(), p.format == cli::Format::Json, quiet)
                .map(|_| ExitCode::SUCCESS)
        }
        cli::Command::Update {
            common,
            packages,
            dry_run,
            into,
        } => imgforge::ops::update::update(&imgforge::ops::update::UpdateOptions {
            common: common.to_options(),
            packages: packages.clone(),
            dry_run: *dry_run,
            into: into.clone(),
            quiet,
        })
        .map(|_| ExitCode::SUCCESS),
        cli::Command::Gc {
            trees,
            dry_run,
            max_size,
            cache,
        } => imgforge::ops::gc::gc(&imgforge::ops::gc::GcOptions {
            trees: trees.clone(),
            cache: imgforge::ops::cache_dir(&imgforge::ops::CommonOptions {
                recipes: PathBuf::new(),
                base: None,
                mirror: None,
                apt: true,
                cache: cache.clone(),
            }),
            dry_run: *dry_run,
            max_size: *max_size,
            quiet,
        })
        .map(|_| ExitCode::SUCCESS),
        cli::Command::Fsck { out, cache } => {
            imgforge::ops::fsck::fsck(&imgforge::ops::fsck::FsckOptions {
                out: out.clone(),
                cache: cache.clone(),
                quiet,
            })
            .map(|r| {
                if r.is_clean() {
                    println!("{}", r.render());
                    ExitCode::SUCCESS
                } else {
                    eprintln!("{}", r.render());
                    ExitCode::from(3)
                }
            })
        }
        cli::Command::Attest(cli::AttestCommand::Verify { key, path }) => {
            imgforge::attest::verify::verify(path, key)
                .map(|all| {
                    for v in all {
                        for (name, digest) in &v.subjects {
                            println!(
                                "verified {name} {digest} ({}, key {})",
                                v.envelope.display(),
                                v.keyid
                            );
                        }
                    }
                    ExitCode::SUCCESS
                })
                .map_err(anyhow::Error::from)
        }
        cli::Command::Bundle(b) => bundle(b, quiet),
        cli::Command::Vendor {
            dir,
            sources,
            common,
        } => imgforge::ops::vendor::vendor(&imgforge::ops::vendor::VendorOptions {
            common: common.to_options(),
            dir: dir.clone(),
            sources: *sources,
            quiet,
        })
        .map(|_| ExitCode::SUCCESS),
        cli::Command::Sources {
            out,
            output,
            all,
            common,
        } => imgforge::ops::sources::sources(&imgforge::ops::sources::SourcesOptions {
            common: common.to_options(),
            out: out.clone(),
            dest: output.clone(),
            all: *all,
            quiet,
        })
        .map(|_| ExitCode::SUCCESS),
        cli::Command::Init { dir, sources } => {
            imgforge::ops::init::init(&imgforge::ops::init::InitOptions {
                common: sources.to_options(),
                dir: dir.clone(),
                quiet,
            })
            .map(|_| ExitCode::SUCCESS)
        }
        cli::Command::Add {
            pin,
            packages,
            build,
        } => imgforge::ops::add::add(&pin.to_options(packages, quiet))
            .and_then(|_| match build {
                true => imgforge::ops::build(&pin.build_options(quiet)).map(|_| ()),
                false => Ok(()),
            })
            .map(|_| ExitCode::SUCCESS),
        cli::Command::Remove { pin, packages } => {
            imgforge::ops::remove::remove(&pin.to_options(packages, quiet))
                .map(|_| ExitCode::SUCCESS)
        }
        cli::Command::Query {
            common,
            package,
            file,
            format,
        } => imgforge::ops::query::query(&imgforge::ops::query::QueryOptions {
            common: common.to_options(),
            package: package.clone(),
            file: file.clone(),
        })
        .map(|hits| {
            if *format == cli::Format::Json {
                println!("{}", imgforge::ops::query::render_json(&hits));
            } else {
                print!("{}", imgforge::ops::query::render_text(&hits));
            }
            ExitCode::SUCCESS
        }),
        cli::Command::Completions { shell } => {
            cli::completions(*shell, &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Man { out } => {
            cli::man(out.as_deref(), &mut std::io::stdout()).map(|_| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) if is_refusal(&e) => {
            eprintln!("{}", imgforge::ops::render_error(&e));
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("{}", imgforge::ops::render_error(&e));
            ExitCode::FAILURE
        }
    }
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
