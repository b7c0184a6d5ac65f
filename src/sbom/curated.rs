//! Reviewed license decisions, keyed by Debian SOURCE package.
//!
//! Two kinds of entries, each with a written reason from reading the source's
//! `debian/copyright`:
//!
//! * [`CuratedRule`]: for prose (non-DEP-5) copyright files, the SPDX
//!   expression for binary packages built from the source (selected by name
//!   pattern, since one source builds libraries under different terms). A rule
//!   only applies while every `evidence` phrase is still in the copyright text;
//!   if the text changed, detection falls back to text recognition and flags
//!   the package for review.
//! * [`PathDecision`]: for DEP-5 files, whether the files a `Files:` pattern
//!   names end up in the binary packages (overriding the generic rules in
//!   [`crate::sbom::license`]).
//!
//! Patterns: `*` matches any run of characters; otherwise exact.

/// A license decision for binaries of one source package.
#[derive(Debug, Clone, Copy)]
pub struct CuratedRule {
    /// Binary package name patterns this rule covers (`*` wildcard).
    pub binaries: &'static [&'static str],
    /// SPDX expression.
    pub expression: &'static str,
    /// Phrases (normalized: lowercase, single spaces) that must appear in the
    /// copyright file for the rule to apply.
    pub evidence: &'static [&'static str],
    /// Why.
    pub reason: &'static str,
    /// Whether a person should still look at it (partial or low confidence).
    pub review: bool,
}

/// Whether files matching a DEP-5 `Files:` pattern are shipped.
#[derive(Debug, Clone, Copy)]
pub struct PathDecision {
    /// The `Files:` pattern (or a prefix ending in `/`).
    pub pattern: &'static str,
    /// True: shipped (keep the stanza); false: not shipped (drop it).
    pub shipped: bool,
    /// Why.
    pub reason: &'static str,
}

/// Decisions for one source package.
#[derive(Debug, Clone, Copy)]
pub struct CuratedSource {
    /// Source package name pattern (`*` wildcard).
    pub source: &'static str,
    /// Rules for prose copyright files, first match wins.
    pub rules: &'static [CuratedRule],
    /// Path decisions for DEP-5 files.
    pub paths: &'static [PathDecision],
}

/// `*`-wildcard match.
pub fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

/// The curated entry for a source package.
pub fn for_source(source: &str) -> Option<&'static CuratedSource> {
    TABLE.iter().find(|s| glob(s.source, source))
}

impl CuratedSource {
    /// The first rule covering `binary`.
    pub fn rule_for(&self, binary: &str) -> Option<&'static CuratedRule> {
        self.rules
            .iter()
            .find(|r| r.binaries.iter().any(|b| glob(b, binary)))
    }
    /// The decision for a `Files:` pattern, if any.
    pub fn path_decision(&self, pattern: &str) -> Option<&'static PathDecision> {
        self.paths.iter().find(|d| {
            d.pattern == pattern || (d.pattern.ends_with('/') && pattern.starts_with(d.pattern))
        })
    }
}

const GCC_RUNTIME_EVIDENCE: &[&str] = &[
    "the following runtime libraries are licensed under the terms of the gnu general public license (v3 or later) with version 3.1 of the gcc runtime library exception",
];

/// The table.
pub static TABLE: &[CuratedSource] = &[
    CuratedSource {
        source: "base-files",
        rules: &[CuratedRule {
            binaries: &["*"],
            expression: "GPL-2.0-or-later",
            evidence: &["either version 2 of the license, or (at your option) any later version"],
            reason: "The only grant in the file covers the base system files written by Murdock/Perens (SPI copyright): GPL version 2 or any later version. The paragraphs about /usr/share/common-licenses describe license texts shipped verbatim as documents; they are not the package's license.",
            review: false,
        }],
        paths: &[],
    },
    CuratedSource {
        source: "busybox",
        rules: &[CuratedRule {
            binaries: &["*"],
            expression: "GPL-2.0-only",
            evidence: &["version 2 dated june, 1991"],
            reason: "The grant names GPL 'version 2 dated June, 1991' and has no 'or any later version' clause; upstream BusyBox is famously GPLv2-only. The common-licenses/GPL-2 pointer agrees.",
            review: false,
        }],
        paths: &[],
    },
    CuratedSource {
        source: "glibc",
        rules: &[
            CuratedRule {
                binaries: &["libc6", "libc6-i386", "libc6-x32", "libc6-amd64", "libc6.1"],
                expression: "LGPL-2.1-or-later AND BSD-3-Clause AND ISC AND Inner-Net-2.0 AND SunPro",
                evidence: &[
                    "version 2.1 of the license, or (at your option) any later version",
                    "the inner net license, version 2.00",
                    "developed at sunpro",
                ],
                reason: "The shared libraries are LGPL 2.1-or-later ('most of the GNU C library'). Built into the Linux libraries as well: 4.4BSD-derived code, the WIDE rcmd.c and the Sun RPC code (3-clause BSD texts), the ISC portions of the BIND resolver (ISC text), getaddrinfo/getnameinfo (Inner Net License 2.00) and fdlibm-derived libm code (SunPro notice). Moshier's long double code and des_impl.c are LGPL 2.1+ as well. Left out: the GPL-2+ utilities (shipped in libc-bin), the Mach/CMU notices (Hurd only), if_ppp.h (a header in libc6-dev), the Intel IA-64 math (other architecture), libidn notes (libidn no longer in glibc) and notices on test files (Spencer regex tests, PCRE tests, tst-printf). The DEC notice on resolver parts has no verified SPDX id and is not recorded.",
                review: false,
            },
            CuratedRule {
                binaries: &["libc-bin", "libc-dev-bin", "locales", "locales-all", "nscd"],
                expression: "GPL-2.0-or-later AND LGPL-2.1-or-later",
                evidence: &["version 2 of the license, or (at your option) any later version"],
                reason: "The utilities are under 'GPL version 2 of the License, or (at your option) any later version'; they contain LGPL 2.1+ library code.",
                review: true,
            },
            CuratedRule {
                binaries: &["*"],
                expression: "LGPL-2.1-or-later",
                evidence: &["version 2.1 of the license, or (at your option) any later version"],
                reason: "Main grant of the GNU C Library (LGPL 2.1 or later); other notices in the file were not assessed for this binary package.",
                review: true,
            },
        ],
        paths: &[],
    },
    CuratedSource {
        source: "gcc-1*",
        rules: &[
            CuratedRule {
                binaries: &[
                    "libgcc-s*",
                    "libgcc1",
                    "libgcc-*-dev",
                    "libstdc++*",
                    "libgomp*",
                    "libatomic*",
                    "libitm*",
                    "libobjc*",
                    "libgfortran*",
                    "libssp*",
                ],
                expression: "GPL-3.0-or-later WITH GCC-exception-3.1",
                evidence: GCC_RUNTIME_EVIDENCE,
                reason: "The file lists libgcc, libstdc++-v3, libgomp, libatomic, libitm, libobjc, libgfortran and libssp among 'runtime libraries licensed under the GPL (v3 or later) with version 3.1 of the GCC Runtime Library Exception'. Code bundled upstream under other terms (soft-fp, Ryu) is not declared by the copyright file.",
                review: false,
            },
            CuratedRule {
                binaries: &[
                    "libasan*",
                    "liblsan*",
                    "libtsan*",
                    "libubsan*",
                    "libhwasan*",
                ],
                expression: "MIT OR NCSA",
                evidence: &[
                    "the libsanitizer libraries (libasan, liblsan, libtsan, libubsan) are licensed under the following terms",
                ],
                reason: "libsanitizer comes from LLVM compiler-rt, which the file gives under the University of Illinois/NCSA text followed by the MIT text (compiler-rt was dual-licensed). Parts of the runtime linked from libgcc are not assessed.",
                review: true,
            },
            CuratedRule {
                binaries: &["libquadmath*"],
                expression: "LGPL-2.1-or-later AND LGPL-2.0-or-later",
                evidence: &["libquadmath/math"],
                reason: "libquadmath sources carry the libiberty LGPL 2-or-later notice and Moshier's LGPL 2.1-or-later notice.",
                review: true,
            },
            CuratedRule {
                binaries: &["*"],
                expression: "GPL-3.0-or-later",
                evidence: &[
                    "gcc is free software; you can redistribute it and/or modify it under the terms of the gnu general public license as published by the free software foundation; either version 3, or (at your option) any later version",
                ],
                reason: "Compilers, tools and the gcc-N-base documentation package fall under the GCC umbrella grant: GPL version 3 or (at your option) any later version. The copyright file is shared by every binary of the gcc source.",
                review: false,
            },
        ],
        paths: &[],
    },
    CuratedSource {
        source: "python3.*",
        rules: &[
            CuratedRule {
                binaries: &["python3.*-minimal"],
                expression: "Python-2.0 AND BSD-3-Clause AND dtoa AND HPND",
                evidence: &[
                    "python software foundation license version 2",
                    "mersenne twister",
                    "files: python/dtoa.c",
                    "files: modules/syslogmodule.c",
                ],
                reason: "The interpreter is under the Python license stack (PSF 2 / BeOpen / CNRI / CWI, SPDX Python-2.0). Compiled into the binary: the _random Mersenne Twister code (3-clause BSD), Python/dtoa.c (Lucent/David Gay notice = dtoa) and syslogmodule.c / getopt.c (HPND-style permission notices). zlib and expat come from system libraries; unicodeobject.h and dynamic_annotations are headers; Lib/* notices belong to the libpython packages.",
                review: false,
            },
            CuratedRule {
                binaries: &["libpython3.*-minimal"],
                expression: "Python-2.0 AND HPND",
                evidence: &[
                    "python software foundation license version 2",
                    "files: lib/logging/",
                ],
                reason: "The minimal standard library is Python-2.0; it includes logging/* (Vinay Sajip's HPND-style notice) and uu.py (Lance Ellinghouse's HPND-style notice). The OpenSSL paragraph is about a linked library, not this package; the other notices cover modules shipped in libpython3.x-stdlib or not built.",
                review: false,
            },
            CuratedRule {
                binaries: &["*"],
                expression: "Python-2.0",
                evidence: &["python software foundation license version 2"],
                reason: "Main Python license stack; per-module notices not assessed for this binary package.",
                review: true,
            },
        ],
        paths: &[],
    },
    // DEP-5 path decisions.
    CuratedSource {
        source: "bash",
        rules: &[],
        paths: &[
            PathDecision {
                pattern: "debian/clear_console.c",
                shipped: true,
                reason: "built and installed as /usr/bin/clear_console by the Debian packaging",
            },
            PathDecision {
                pattern: "lib/sh/inet_aton.c",
                shipped: false,
                reason: "replacement compiled only when the C library lacks inet_aton; glibc provides it",
            },
            PathDecision {
                pattern: "support/man2html.c",
                shipped: false,
                reason: "build-time helper for generating HTML manuals; not installed",
            },
        ],
    },
    CuratedSource {
        source: "coreutils",
        rules: &[],
        paths: &[PathDecision {
            pattern: "lib/inet_ntop.c",
            shipped: false,
            reason: "gnulib replacement compiled only where the C library lacks inet_ntop; not on glibc",
        }],
    },
    CuratedSource {
        source: "openssl",
        rules: &[],
        paths: &[PathDecision {
            pattern: "external/perl/",
            shipped: false,
            reason: "bundled Text::Template Perl module used by Configure at build time; not installed",
        }],
    },
    CuratedSource {
        source: "zlib",
        rules: &[],
        paths: &[
            PathDecision {
                pattern: "contrib/minizip/",
                shipped: false,
                reason: "minizip is built into the separate libminizip packages",
            },
            PathDecision {
                pattern: "amiga/",
                shipped: false,
                reason: "Amiga build files; not used on Debian",
            },
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches() {
        assert!(glob("python3.*-minimal", "python3.11-minimal"));
        assert!(!glob("python3.*-minimal", "libpython3.11-minimal"));
        assert!(glob("libstdc++*", "libstdc++6"));
    }

    #[test]
    fn every_rule_expression_is_valid_spdx() {
        for s in TABLE {
            for r in s.rules {
                assert!(
                    crate::sbom::license::canonical_expression(r.expression).is_ok(),
                    "{}: {}",
                    s.source,
                    r.expression
                );
                for e in r.evidence {
                    assert_eq!(
                        *e,
                        crate::sbom::text::normalize(e),
                        "evidence must be normalized"
                    );
                }
            }
        }
    }
}
