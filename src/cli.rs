//! Command-line arguments (clap types stay in this file).
//!
//! Each subcommand converts into a plain options struct of [`imgforge::ops`].

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use imgforge::ops;
use std::path::{Path, PathBuf};

/// Reproducible OCI images from pinned Debian packages.
#[derive(Parser, Debug)]
#[command(name = "imgforge", version, about, propagate_version = true)]
pub struct Cli {
    /// Print less (no progress).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Validate recipes: pinning policy, and resolution when a package source is available.
    Check(CommonArgs),
    /// Resolve every image and build stage and write recipes/imgforge.lock.
    Lock {
        #[command(flatten)]
        common: CommonArgs,
        /// Fail (and say what changed) instead of updating the lock.
        #[arg(long)]
        locked: bool,
        /// Then print why PACKAGE is in each image: the chain from the recipe's pin.
        #[arg(long, value_name = "PACKAGE")]
        explain: Option<String>,
    },
    /// Build every image into an OCI layout, with SBOMs and license reports.
    Build {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        build: BuildArgs,
        /// json: print the build metadata (as --metadata-file writes it) on stdout.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Build twice under perturbed conditions (or against a record) and compare bit for bit.
    Verify {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        build: BuildArgs,
        /// Compare one build with this record (written by `imgforge build` as imgforge-record.json).
        #[arg(long, value_name = "FILE")]
        against: Option<PathBuf>,
        /// Output format of the report.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Push the built images to an OCI registry, digests preserved.
    Push(PushArgs),
    /// Move pins to the archive's current versions, rewrite the recipes (comments kept), re-lock, show changelogs.
    Update {
        #[command(flatten)]
        common: CommonArgs,
        /// Only these packages (default: every pinned package).
        #[arg(value_name = "PACKAGE")]
        packages: Vec<String>,
        /// Print what would move, with changelogs; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Update a copy of the tree in DIR (DIR/recipes, DIR/base) and leave RECIPES as is.
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
    },
    /// Remove .deb files from the package store that no given tree's lock references, and build-plan steps the given trees' last builds did not use.
    Gc {
        /// Recipe directories whose imgforge.lock files say what to keep.
        #[arg(default_value = "recipes")]
        trees: Vec<PathBuf>,
        /// Say what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove unreferenced packages (largest first) only until the store is at most this many bytes.
        #[arg(long, value_name = "BYTES")]
        max_size: Option<u64>,
        /// The cache [default: ~/.cache/imgforge].
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
    },
    /// Check offline that an output's blobs and files hash to their names and every reference is present, and that the step store's blobs do (exit 3 on a problem).
    Fsck {
        /// An output directory of `imgforge build`.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// A cache directory: its step store's blobs.
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
    },
    /// Provenance attestations.
    #[command(subcommand)]
    Attest(AttestCommand),
    /// Pack a build output into one file for a site without network (docker
    /// archive + OCI layout + SBOMs, reports, provenance, a signed manifest);
    /// `bundle verify` and `bundle install` at the site.
    Bundle(BundleArgs),
    /// Write every locked .deb into DIR as a flat mirror (Packages + SHA256SUMS) for --mirror DIR.
    Vendor {
        /// The mirror directory to write (empty, new, or an earlier vendor output).
        dir: PathBuf,
        /// Also the verified source packages of every shipped package (Sources + source/), for `imgforge sources --mirror DIR` offline.
        #[arg(long)]
        sources: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Write the complete corresponding source of what a build ships (every package under a GPL/LGPL-style license, or --all): verified source packages, an index image -> binary -> source, and a written offer.
    Sources {
        /// The output directory of `imgforge build`.
        out: PathBuf,
        /// The directory to write, or a FILE ending in .tar (one deterministic tar).
        #[arg(short = 'o', long = "output", value_name = "DIR|FILE")]
        output: PathBuf,
        /// Every shipped package, not only those whose license obliges a source offer.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Start a recipes tree in DIR: a base recipe pinned to the sources' current versions and one example image, commented.
    Init {
        /// The directory (DIR/base/base.toml, DIR/recipes/example.toml); refused if they exist.
        #[arg(default_value = ".")]
        dir: PathBuf,
        #[command(flatten)]
        sources: SourceArgs,
    },
    /// Pin packages in an image's recipe at the sources' newest (or the named) version, re-lock, show what entered.
    Add {
        #[command(flatten)]
        pin: PinArgs,
        /// NAME or NAME=VERSION (a version the sources lack is refused, listing theirs).
        #[arg(value_name = "PACKAGE[=VERSION]", required = true)]
        packages: Vec<String>,
        /// Then build the tree (as `imgforge build RECIPES` with its defaults: out/).
        #[arg(long)]
        build: bool,
    },
    /// Drop pins from an image's recipe, re-lock, show what left.
    Remove {
        #[command(flatten)]
        pin: PinArgs,
        /// Names pinned in the recipe's [packages].
        #[arg(value_name = "PACKAGE", required = true)]
        packages: Vec<String>,
    },
    /// Which images ship a package, at which version, and why (the chain from a recipe's pin), from the lock.
    Query {
        #[command(flatten)]
        common: CommonArgs,
        /// The package, optionally at one version: NAME or NAME=VERSION.
        #[arg(
            long,
            value_name = "NAME[=VERSION]",
            required_unless_present = "file",
            conflicts_with = "file"
        )]
        package: Option<String>,
        /// A path in the images: query the packages that ship it (their .debs from the store, else the sources).
        #[arg(long, value_name = "PATH")]
        file: Option<String>,
        /// Output format (json: on stdout).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print a shell completion script on stdout (e.g. `imgforge completions bash > ~/.local/share/bash-completion/completions/imgforge`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the man pages (imgforge.1 and one per command) into DIR, or print imgforge.1 on stdout.
    Man {
        /// The directory to write the pages into (e.g. ~/.local/share/man/man1).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// Shells `imgforge completions` writes for.
#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// `imgforge completions SHELL`: the script, generated from these definitions.
pub fn completions(shell: Shell, out: &mut dyn std::io::Write) {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut Cli::command(), "imgforge", out);
}

/// `imgforge man [--out DIR]`: the man pages, generated from these
/// definitions; into `dir` (every command's page), else imgforge.1 on `out`.
pub fn man(dir: Option<&Path>, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    use anyhow::Context;
    let cmd = Cli::command();
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| {
                format!(
                    "cannot create {}\nhelp: check permissions, or pass another --out",
                    d.display()
                )
            })?;
            clap_mangen::generate_to(cmd, d).with_context(|| {
                format!(
                    "cannot write the man pages into {}\nhelp: check permissions and free space",
                    d.display()
                )
            })?;
        }
        None => clap_mangen::Man::new(cmd)
            .render(out)
            .context("cannot write the man page to stdout")?,
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum AttestCommand {
    /// Verify signed provenance offline: one DSSE envelope, or every attest/*.dsse.json of a build output.
    Verify {
        /// The public key (PEM SubjectPublicKeyInfo, Ed25519 or ECDSA P-256).
        #[arg(long, value_name = "PUB.pem")]
        key: PathBuf,
        /// A DSSE envelope file or a build output directory.
        #[arg(default_value = "out")]
        path: PathBuf,
    },
}

#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BundleArgs {
    #[command(subcommand)]
    pub command: Option<BundleCommand>,
    /// The output directory of `imgforge build`.
    #[arg(required = true)]
    pub out: Option<PathBuf>,
    /// The bundle file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    pub output: Option<PathBuf>,
    /// Sign the bundle manifest (DSSE) with this PKCS#8 PEM private key (Ed25519 or ECDSA P-256).
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<PathBuf>,
    /// A delta: leave out every layer the previous release holds (its bundle, or its imgforge-bundle.json).
    #[arg(long, value_name = "PREVIOUS")]
    pub since: Option<PathBuf>,
    /// The release's name [default: sha256 of the output's index.json].
    #[arg(long, value_name = "NAME")]
    pub release: Option<String>,
    /// Carry the source packages `imgforge sources OUT -o DIR` wrote, under sources/.
    #[arg(long, value_name = "DIR")]
    pub sources: Option<PathBuf>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum BundleCommand {
    /// Check a bundle offline: every entry against the manifest, the signature, a delta's base (exit 3 when refused).
    Verify {
        #[command(flatten)]
        verify: BundleVerifyArgs,
        /// json: print what was verified as JSON on stdout.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Verify a bundle, then install it: `--docker` runs `docker load`, `--to` puts it into a registry (nothing is written unless it verifies).
    Install {
        #[command(flatten)]
        verify: BundleVerifyArgs,
        /// Load into the docker daemon (`docker load`).
        #[arg(long, required_unless_present = "to", conflicts_with = "to")]
        docker: bool,
        /// Put the images into a registry, HOST[:PORT][/NAMESPACE]: only the blobs it lacks, tags last.
        #[arg(long, value_name = "REGISTRY")]
        to: Option<String>,
        #[command(flatten)]
        registry: BundleRegistryArgs,
        /// Blobs uploaded at once (with --to).
        #[arg(short, long, default_value_t = 4)]
        jobs: usize,
        /// json: print what was installed into the registry as JSON on stdout.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Write what a site holds (docker's images and layer chain IDs, or a registry's images and blobs) for the vendor's next `bundle --since FILE`.
    Inventory {
        /// Ask the docker daemon (`docker image inspect`).
        #[arg(long, required_unless_present = "from", conflicts_with = "from")]
        docker: bool,
        /// List a registry's images under a namespace: HOST[:PORT][/NAMESPACE].
        #[arg(long, value_name = "REGISTRY")]
        from: Option<String>,
        /// The inventory file to write.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        #[command(flatten)]
        registry: BundleRegistryArgs,
    },
}

/// How `bundle install --to` and `bundle inventory --from` reach the registry (as for `push`).
#[derive(Args, Debug, Clone)]
pub struct BundleRegistryArgs {
    /// Use plain HTTP (loopback registries always do).
    #[arg(long)]
    pub plain_http: bool,
    /// Retries of a transient failure (exponential backoff from 250 ms).
    #[arg(long, default_value_t = 4)]
    pub retries: u32,
    /// Directory holding the docker config.json [default: $DOCKER_CONFIG, else ~/.docker].
    #[arg(long, value_name = "DIR")]
    pub docker_config: Option<PathBuf>,
}

impl BundleRegistryArgs {
    pub fn to_connect(&self, destination: &str) -> imgforge::registry::site::Connect {
        imgforge::registry::site::Connect {
            destination: destination.to_string(),
            plain_http: self.plain_http,
            retries: self.retries,
            docker_config: self.docker_config.clone(),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BundleVerifyArgs {
    /// The bundle file.
    pub file: PathBuf,
    /// Require a signature by this public key (PEM SubjectPublicKeyInfo).
    #[arg(long, value_name = "PUB.pem")]
    pub key: Option<PathBuf>,
    /// For a delta: the release it applies on top of (its bundle, or its imgforge-bundle.json).
    #[arg(long, value_name = "PREVIOUS")]
    pub base: Option<PathBuf>,
}

impl BundleVerifyArgs {
    pub fn to_options(&self) -> imgforge::bundle::VerifyOptions {
        imgforge::bundle::VerifyOptions {
            file: self.file.clone(),
            key: self.key.clone(),
            base: self.base.clone(),
        }
    }
}

impl BundleArgs {
    /// The options of writing a bundle (`out` and `output` are required
    /// by clap when there is no subcommand).
    pub fn to_options(&self) -> imgforge::bundle::BundleOptions {
        imgforge::bundle::BundleOptions {
            out: self.out.clone().unwrap_or_default(),
            dest: self.output.clone().unwrap_or_default(),
            sign_key: self.sign_key.clone(),
            since: self.since.clone(),
            release: self.release.clone(),
            sources: self.sources.clone(),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct PushArgs {
    /// The registry and an optional namespace: HOST[:PORT][/NAMESPACE].
    /// Each image goes to NAMESPACE/<name>:<tag>.
    #[arg(long, value_name = "REGISTRY")]
    pub to: String,
    /// The OCI layout written by `imgforge build`.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Push only this image (by name; repeatable).
    #[arg(long = "image", value_name = "NAME")]
    pub images: Vec<String>,
    /// Use plain HTTP (loopback registries always do).
    #[arg(long)]
    pub plain_http: bool,
    /// Retries of a transient failure (exponential backoff from 250 ms).
    #[arg(long, default_value_t = 4)]
    pub retries: u32,
    /// Blobs uploaded at once.
    #[arg(short, long, default_value_t = 4)]
    pub jobs: usize,
    /// Directory holding the docker config.json [default: $DOCKER_CONFIG, else ~/.docker].
    #[arg(long, value_name = "DIR")]
    pub docker_config: Option<PathBuf>,
    /// Output format of the summary (json: on stdout).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

impl PushArgs {
    pub fn to_options(&self) -> imgforge::registry::PushOptions {
        imgforge::registry::PushOptions {
            layout: self.out.clone(),
            destination: self.to.clone(),
            images: self.images.clone(),
            plain_http: self.plain_http,
            retries: self.retries,
            jobs: self.jobs,
            docker_config: self.docker_config.clone(),
        }
    }
}

/// Where `init` reads the sources' current versions.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// A local package mirror: a flat repository (Packages index) or a directory of .deb files.
    #[arg(long, value_name = "DIR")]
    pub mirror: Option<PathBuf>,
    /// Never read the host's apt configuration.
    #[arg(long)]
    pub no_apt: bool,
    /// Cache: verified archive indexes [default: ~/.cache/imgforge].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

/// The recipe `add` and `remove` edit.
#[derive(Args, Debug, Clone)]
pub struct PinArgs {
    /// The image whose recipe is edited (the base's name edits the base recipe).
    #[arg(long, value_name = "NAME")]
    pub image: String,
    /// The recipes directory.
    #[arg(long, default_value = "recipes")]
    pub recipes: PathBuf,
    /// The base recipe [default: <RECIPES>/../base/base.toml].
    #[arg(long, value_name = "FILE")]
    pub base: Option<PathBuf>,
    #[command(flatten)]
    pub sources: SourceArgs,
}

impl PinArgs {
    pub fn to_options(&self, packages: &[String], quiet: bool) -> ops::add::PinOptions {
        ops::add::PinOptions {
            common: ops::CommonOptions {
                recipes: self.recipes.clone(),
                base: self.base.clone(),
                ..self.sources.to_options()
            },
            image: self.image.clone(),
            packages: packages.to_vec(),
            quiet,
        }
    }
}

impl PinArgs {
    /// `imgforge build` of the edited tree, every build option at its default.
    pub fn build_options(&self, quiet: bool) -> ops::BuildOptions {
        let cli = Cli::parse_from(["imgforge", "build"]);
        let Command::Build { build, .. } = cli.command else {
            unreachable!("parsed a build")
        };
        let common = CommonArgs {
            recipes: self.recipes.clone(),
            base: self.base.clone(),
            mirror: self.sources.mirror.clone(),
            no_apt: self.sources.no_apt,
            cache: self.sources.cache.clone(),
        };
        build.to_options(&common, quiet)
    }
}

impl SourceArgs {
    pub fn to_options(&self) -> ops::CommonOptions {
        ops::CommonOptions {
            recipes: PathBuf::from("recipes"),
            base: None,
            mirror: self.mirror.clone(),
            apt: !self.no_apt,
            cache: self.cache.clone(),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// The recipes directory.
    #[arg(default_value = "recipes")]
    pub recipes: PathBuf,
    /// The base recipe [default: <RECIPES>/../base/base.toml].
    #[arg(long, value_name = "FILE")]
    pub base: Option<PathBuf>,
    /// A local package mirror: a flat repository (Packages index) or a directory of .deb files.
    #[arg(long, value_name = "DIR")]
    pub mirror: Option<PathBuf>,
    /// Never read the host's apt configuration (archives then come from base.toml or --mirror).
    #[arg(long)]
    pub no_apt: bool,
    /// Cache: package store, verified archive indexes, build-stage results [default: ~/.cache/imgforge].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct BuildArgs {
    /// Output directory (an OCI image layout).
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Also write one tar that `docker load` accepts and that is an OCI layout.
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
    /// Parallel jobs [default: all cores]. Output bytes never depend on it.
    #[arg(short, long)]
    pub jobs: Option<usize>,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = Compress::Gzip)]
    pub compression: Compress,
    /// Fail if the lock file would change.
    #[arg(long)]
    pub locked: bool,
    /// Do not reuse cached build-stage results.
    #[arg(long)]
    pub no_cache: bool,
    /// Write a --bundle with zstd layers although Docker before 23 cannot load it.
    #[arg(long)]
    pub force: bool,
    /// Write per-image digests, sizes, layer counts and SBOM paths as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Refuse a package whose data.tar has more entries than this.
    #[arg(long, value_name = "N", default_value_t = imgforge::deb::DEFAULT_MAX_ENTRIES)]
    pub max_package_entries: u64,
    /// Layers per image: at most N, packages grouped by source package; or
    /// `single` (one layer for the base's packages, one for each image's).
    #[arg(long, value_name = "N|single", default_value = "16", value_parser = parse_layers)]
    pub layers: ops::LayerPolicy,
    /// Sign each image's provenance (DSSE) with this PKCS#8 PEM private key (Ed25519 or ECDSA P-256).
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// Assemble configure and build-stage roots by unpacking every layer
    /// into a directory, not by mounting shared layer trees with overlayfs
    /// (slower; the output is the same; automatic where mounting is refused).
    #[arg(long)]
    pub unpack_roots: bool,
    /// Where temporary roots and decompressed packages go [default:
    /// /dev/shm when it is a tmpfs with room for them, else beside --out].
    /// The output is the same wherever they go.
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// What runs the steps of [build] stages: `runc` (the local sandbox) or
    /// `buildkit[=ADDR]` (Docker's BuildKit, of the engine at ADDR or
    /// DOCKER_HOST). The output is the same bytes.
    #[arg(long, value_name = "runc|buildkit[=ADDR]", default_value = "runc", value_parser = ops::Executor::parse)]
    pub executor: ops::Executor,
    /// Read step results (layers, configuration, build-stage artifacts,
    /// SBOMs) from this OCI registry repository when the local store lacks
    /// them [default: the base recipe's [cache] from].
    #[arg(long, value_name = "REGISTRY/REPO", value_parser = imgforge::options::check_cache_ref)]
    pub cache_from: Option<String>,
    /// Read step results from this registry repository and upload the ones
    /// this build made [default: the base recipe's [cache] to].
    #[arg(long, value_name = "REGISTRY/REPO", value_parser = imgforge::options::check_cache_ref)]
    pub cache_to: Option<String>,
    /// Ignore the base recipe's [cache] table (--cache-from/--cache-to still apply).
    #[arg(long)]
    pub no_remote_cache: bool,
}

fn parse_layers(s: &str) -> Result<ops::LayerPolicy, String> {
    if s == "single" {
        return Ok(ops::LayerPolicy::Single);
    }
    match s.parse::<usize>() {
        Ok(n) if n >= 4 => Ok(ops::LayerPolicy::Budget(n)),
        _ => Err(format!(
            "{s:?}: expected `single` or a layer budget of at least 4 (the base needs a root, packages, files and configuration)"
        )),
    }
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum Compress {
    Gzip,
    Zstd,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

impl CommonArgs {
    pub fn to_options(&self) -> ops::CommonOptions {
        ops::CommonOptions {
            recipes: self.recipes.clone(),
            base: self.base.clone(),
            mirror: self.mirror.clone(),
            apt: !self.no_apt,
            cache: self.cache.clone(),
        }
    }
}

impl BuildArgs {
    pub fn to_options(&self, common: &CommonArgs, quiet: bool) -> ops::BuildOptions {
        ops::BuildOptions {
            common: common.to_options(),
            out: self.out.clone(),
            bundle: self.bundle.clone(),
            jobs: self.jobs,
            compression: match self.compression {
                Compress::Gzip => imgforge::layer::Compression::GZIP,
                Compress::Zstd => imgforge::layer::Compression::ZSTD,
            },
            locked: self.locked,
            use_cache: !self.no_cache,
            quiet,
            force: self.force,
            metadata_file: self.metadata_file.clone(),
            json: false,
            source_date_epoch: None,
            max_package_entries: self.max_package_entries,
            layers: self.layers,
            sign_key: self.sign_key.clone(),
            unpack_roots: self.unpack_roots,
            scratch: self.scratch.clone(),
            executor: self.executor.clone(),
            remote: ops::RemoteCacheOptions {
                from: self.cache_from.clone(),
                to: self.cache_to.clone(),
                ignore_recipe: self.no_remote_cache,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgforge::layer::Compression;

    fn parse_back(o: &ops::BuildOptions) -> ops::BuildOptions {
        let argv = std::iter::once("imgforge".into()).chain(o.to_args());
        let cli = Cli::try_parse_from(argv).expect("to_args parses");
        let Command::Build {
            common,
            build,
            format,
        } = &cli.command
        else {
            panic!("not a build: {:?}", cli.command);
        };
        let mut back = build.to_options(common, cli.quiet);
        back.json = *format == Format::Json;
        back.source_date_epoch = o.source_date_epoch;
        back
    }

    fn defaults() -> ops::BuildOptions {
        let cli = Cli::try_parse_from(["imgforge", "build"]).unwrap();
        let Command::Build { common, build, .. } = &cli.command else {
            unreachable!()
        };
        build.to_options(common, false)
    }

    #[test]
    fn build_options_round_trip_through_their_flags() {
        let d = defaults();
        assert_eq!(parse_back(&d), d);
        let every = ops::BuildOptions {
            common: ops::CommonOptions {
                recipes: "r e c".into(),
                base: Some("b/base.toml".into()),
                mirror: Some("m".into()),
                apt: false,
                cache: Some("c".into()),
            },
            out: "o".into(),
            bundle: Some("x.tar".into()),
            jobs: Some(3),
            compression: Compression::ZSTD,
            locked: true,
            use_cache: false,
            quiet: true,
            force: true,
            metadata_file: Some("meta.json".into()),
            json: true,
            source_date_epoch: Some(7),
            max_package_entries: 1234,
            layers: ops::LayerPolicy::Single,
            sign_key: Some("k.pem".into()),
            unpack_roots: true,
            scratch: Some("s".into()),
            executor: ops::Executor::Buildkit {
                host: Some("ssh://builder".into()),
            },
            remote: ops::RemoteCacheOptions {
                from: Some("127.0.0.1:5000/team/cache".into()),
                to: Some("127.0.0.1:5000/team/cache2".into()),
                ignore_recipe: true,
            },
        };
        assert_eq!(parse_back(&every), every);
        let local = ops::BuildOptions {
            executor: ops::Executor::Buildkit { host: None },
            ..d.clone()
        };
        assert_eq!(parse_back(&local), local);
        let budget = ops::BuildOptions {
            layers: ops::LayerPolicy::Budget(9),
            ..d
        };
        assert_eq!(parse_back(&budget), budget);
    }
}
